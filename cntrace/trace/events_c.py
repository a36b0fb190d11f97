"""Python mirror of probes/cntrace_event.h (the C structs shared with the eBPF programs).

Keep the two in step: tests/unit/test_trace_structs.py parses the header and compares every
field's name, type and order with the ctypes structures below.
"""

from __future__ import annotations

import ctypes

CNT_DATA_LEN = 128
CNT_MAGIC = 0x636E5452  # b"cnTR"

CNT_EV_TC_INGRESS = 1
CNT_EV_TC_EGRESS = 2
CNT_EV_DROP = 3

CNT_MATCH_MARKER = 1
CNT_MATCH_ACK = 2
CNT_MATCH_QUOTE = 3
CNT_MATCH_FLOW = 4
CNT_MATCH_ANY = 5

CNT_PROTO_TCP = 1
CNT_PROTO_UDP = 2
CNT_PROTO_ICMP = 4

CNT_CFG_MARKER_DROPS = 1
CNT_CFG_ALL_DROPS = 2

MATCH_NAMES = {
    CNT_MATCH_MARKER: "marker",
    CNT_MATCH_ACK: "ack",
    CNT_MATCH_QUOTE: "icmp-quote",
    CNT_MATCH_FLOW: "flow",
    CNT_MATCH_ANY: "any",
}

u8, u16, u32, u64 = ctypes.c_uint8, ctypes.c_uint16, ctypes.c_uint32, ctypes.c_uint64


class CntConfig(ctypes.Structure):
    _fields_ = [
        ("flags", u32),
        ("netns", u32),
        ("n_markers", u32),
        ("protos", u32),
        ("gen", u32),
        ("pad", u32),
    ]


class CntOffsets(ctypes.Structure):
    _fields_ = [
        ("skb_head", u32),
        ("skb_data", u32),
        ("skb_dev", u32),
        ("skb_len", u32),
        ("skb_mark", u32),
        ("skb_network_header", u32),
        ("dev_ifindex", u32),
        ("dev_nd_net", u32),
        ("net_inum", u32),
        ("tp_skbaddr", u32),
        ("tp_location", u32),
        ("tp_reason", u32),
    ]


class CntMarker(ctypes.Structure):
    _fields_ = [("nonce", u32), ("proto", u8), ("pad", u8 * 3)]


class CntFlow(ctypes.Structure):
    _fields_ = [
        ("saddr", u8 * 16),
        ("daddr", u8 * 16),
        ("sport", u16),
        ("dport", u16),
        ("proto", u8),
        ("family", u8),
        ("pad", u8 * 2),
    ]


class CntFlowVal(ctypes.Structure):
    _fields_ = [("nonce", u32), ("kind", u32)]


class CntEvent(ctypes.Structure):
    _fields_ = [
        ("t_ns", u64),
        ("skb", u64),
        ("location", u64),
        ("kind", u32),
        ("ifindex", u32),
        ("netns", u32),
        ("mark", u32),
        ("reason", u32),
        ("nonce", u32),
        ("seq", u32),
        ("ack", u32),
        ("len", u32),
        ("caplen", u16),
        ("l3off", u16),
        ("sport", u16),
        ("dport", u16),
        ("ip_id", u16),
        ("family", u8),
        ("proto", u8),
        ("is_reply", u8),
        ("tcp_flags", u8),
        ("icmp_type", u8),
        ("icmp_code", u8),
        ("match", u8),
        ("pad", u8 * 3),
        ("saddr", u8 * 16),
        ("daddr", u8 * 16),
        ("data", u8 * CNT_DATA_LEN),
    ]


STRUCTS: dict[str, type[ctypes.Structure]] = {
    "cnt_config": CntConfig,
    "cnt_offsets": CntOffsets,
    "cnt_marker": CntMarker,
    "cnt_flow": CntFlow,
    "cnt_flow_val": CntFlowVal,
    "cnt_event": CntEvent,
}
