/* Shared between the eBPF programs and their Python mirror (cntrace/trace/events_c.py).
 *
 * Any change here must be made there too: tests/unit/test_trace_structs.py compares the two
 * field by field. Only fixed-width types; every struct is padded by hand to a multiple of 8.
 */
#ifndef CNTRACE_EVENT_H
#define CNTRACE_EVENT_H

#define CNT_DATA_LEN 128   /* bytes of the packet copied into a sighting, from its first byte */
#define CNT_MAGIC 0x636e5452 /* "cnTR": first 4 payload bytes of a UDP or ICMP probe */

/* cnt_event.kind */
#define CNT_EV_TC_INGRESS 1
#define CNT_EV_TC_EGRESS 2
#define CNT_EV_DROP 3

/* cnt_event.match: why this packet was reported */
#define CNT_MATCH_MARKER 1 /* it carries the marker (TCP seq, or magic + nonce in the payload) */
#define CNT_MATCH_ACK 2    /* SYN-ACK or RST acknowledging the probe's SYN (ack = nonce + 1) */
#define CNT_MATCH_QUOTE 3  /* an ICMP error quoting the probe */
#define CNT_MATCH_FLOW 4   /* a reply on the probe's flow, by addresses and ports */
#define CNT_MATCH_ANY 5    /* drops mode: every drop */

/* cnt_config.protos */
#define CNT_PROTO_TCP 1
#define CNT_PROTO_UDP 2
#define CNT_PROTO_ICMP 4

/* cnt_config.flags */
#define CNT_CFG_MARKER_DROPS 1 /* report drops of marked packets */
#define CNT_CFG_ALL_DROPS 2    /* report every drop (cntrace drops), filtered by netns */

struct cnt_config {
    __u32 flags;
    __u32 netns;     /* CNT_CFG_ALL_DROPS: only drops in this namespace (0: all) */
    __u32 n_markers; /* markers armed; 0 lets the tc programs return at once */
    __u32 protos;    /* CNT_PROTO_* of the armed probes: other traffic is skipped early */
    __u32 gen;       /* changes with every arming: cnt_ports entries of other values are stale */
    __u32 pad;
};

/* Where to read what, on the running kernel: struct member offsets from BTF and the kfree_skb
 * record layout from tracefs. Filled by the loader; the bytecode itself holds no kernel
 * layout, so one build serves every kernel. */
struct cnt_offsets {
    __u32 skb_head;
    __u32 skb_data;
    __u32 skb_dev;
    __u32 skb_len;
    __u32 skb_mark;
    __u32 skb_network_header;
    __u32 dev_ifindex;
    __u32 dev_nd_net;
    __u32 net_inum;
    __u32 tp_skbaddr;
    __u32 tp_location;
    __u32 tp_reason; /* 0: the record has no reason (kernels before 5.17) */
};

struct cnt_marker {
    __u32 nonce;
    __u8 proto; /* IPPROTO_TCP, IPPROTO_UDP, IPPROTO_ICMP or IPPROTO_ICMPV6 */
    __u8 pad[3];
};

/* A flow as seen at one hop: key of cnt_flows. IPv4 addresses use the first 4 bytes. */
struct cnt_flow {
    __u8 saddr[16];
    __u8 daddr[16];
    __u16 sport;
    __u16 dport;
    __u8 proto;
    __u8 family;
    __u8 pad[2];
};

struct cnt_flow_val {
    __u32 nonce;
    __u32 kind; /* 1: the probe's own direction, 2: its reply direction */
};

struct cnt_event {
    __u64 t_ns;     /* bpf_ktime_get_ns: CLOCK_MONOTONIC */
    __u64 skb;      /* kernel address of the sk_buff */
    __u64 location; /* drops: the freeing function's address */
    __u32 kind;     /* CNT_EV_* */
    __u32 ifindex;
    __u32 netns; /* nsfs inode of the device's namespace (0: unknown) */
    __u32 mark;
    __u32 reason; /* drops: enum skb_drop_reason value */
    __u32 nonce;  /* the marker that matched (0 in drops mode) */
    __u32 seq;
    __u32 ack;
    __u32 len; /* skb->len */
    __u16 caplen;
    __u16 l3off; /* offset of the network header in data */
    __u16 sport; /* host byte order; ICMP echo: the identifier */
    __u16 dport;
    __u16 ip_id;
    __u8 family; /* 4 or 6 (0: not an IP packet) */
    __u8 proto;
    __u8 is_reply;
    __u8 tcp_flags;
    __u8 icmp_type;
    __u8 icmp_code;
    __u8 match; /* CNT_MATCH_* */
    __u8 pad[3];
    __u8 saddr[16];
    __u8 daddr[16];
    __u8 data[CNT_DATA_LEN];
};

#endif
