"""Netfilter rule tracing scoped to the probe, through nftables' ``meta nftrace``.

In each namespace on the path cntrace adds a table of its own (``inet cntrace_<pid>_<n>``) whose
chains hook prerouting and output at priority -350, before conntrack and every other table, and
set ``nftrace`` only on packets carrying the marker (or answering the probe). The kernel then
reports every rule those packets match in every nf_tables chain, including the rules iptables-nft
writes, on the NFNLGRP_NFTRACE netlink group, which cntrace reads from a NETLINK_NETFILTER socket
opened inside the namespace. The table is deleted when the trace ends.

Rules of iptables-legacy live outside nf_tables and cannot be traced this way: their TRACE target
logs to the kernel log, which the kernel only writes for non-initial namespaces when the
root-namespace sysctl net.netfilter.nf_log_all_netns is set, and cntrace does not change host
sysctls. Namespaces with legacy tables are reported as not watched for rules.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import socket
import struct
import subprocess
from dataclasses import dataclass

from cntrace.model import Packet
from cntrace.sources import nsenter
from cntrace.trace import nftlib
from cntrace.trace.packet import Parsed, parse_ip, parse_l4

NETLINK_NETFILTER = 12
NFNLGRP_NFTRACE = 9
NFNL_SUBSYS_NFTABLES = 10
NFT_MSG_TRACE = 17
SOL_NETLINK = 270
NETLINK_ADD_MEMBERSHIP = 1

NFTA_TRACE_TABLE = 1
NFTA_TRACE_CHAIN = 2
NFTA_TRACE_RULE_HANDLE = 3
NFTA_TRACE_TYPE = 4
NFTA_TRACE_VERDICT = 5
NFTA_TRACE_ID = 6
NFTA_TRACE_NETWORK_HEADER = 8
NFTA_TRACE_TRANSPORT_HEADER = 9
NFTA_TRACE_IIF = 10
NFTA_TRACE_OIF = 12
NFTA_TRACE_MARK = 14
NFTA_TRACE_NFPROTO = 15
NFTA_TRACE_POLICY = 16
NFTA_VERDICT_CODE = 1
NFTA_VERDICT_CHAIN = 2

TRACE_TYPES = {1: "policy", 2: "return", 3: "rule"}
VERDICTS = {
    0: "drop",
    1: "accept",
    2: "stolen",
    3: "queue",
    4: "repeat",
    5: "stop",
    -1: "continue",
    -2: "break",
    -3: "jump",
    -4: "goto",
    -5: "return",
}
FAMILIES = {1: "inet", 2: "ip", 3: "arp", 5: "netdev", 7: "bridge", 10: "ip6"}
NFPROTO_IPV4, NFPROTO_IPV6 = 2, 10

_ICMP_ERRORS = "{ destination-unreachable, time-exceeded, parameter-problem }"
_ICMP6_ERRORS = "{ destination-unreachable, packet-too-big, time-exceeded, parameter-problem }"
_MAGIC = "0x636e5452"


def can_run() -> tuple[bool, str]:
    if not nftlib.available():
        return False, "neither libnftables nor the nft program is installed"
    try:
        s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
    except OSError as exc:
        return False, f"no netfilter netlink socket: {exc.strerror}"
    s.close()
    if os.geteuid() != 0:
        return False, "adding a trace table needs CAP_NET_ADMIN (run as root)"
    return True, "nftables tracing (meta nftrace) in a temporary table per namespace"


def trace_rules(nonce: int, packet: Packet) -> list[str]:
    """nft rule bodies that set nftrace on the probe, its replies and ICMP errors quoting it."""
    rules: list[str] = []
    if packet.proto == "tcp":
        rules.append(f"tcp flags & (syn | ack) == syn tcp sequence {nonce}")
        rules.append(f"tcp ackseq {(nonce + 1) & 0xFFFFFFFF}")
        rules.append(f"icmp type {_ICMP_ERRORS} @th,256,32 {nonce}")
        rules.append(f"icmpv6 type {_ICMP6_ERRORS} @th,416,32 {nonce}")
    else:
        rules.append(f"@th,64,32 {_MAGIC} @th,96,32 {nonce}")
        rules.append(f"icmp type {_ICMP_ERRORS} @th,288,32 {_MAGIC} @th,320,32 {nonce}")
        rules.append(f"icmpv6 type {_ICMP6_ERRORS} @th,448,32 {_MAGIC} @th,480,32 {nonce}")
        if packet.proto == "udp" and packet.sport:
            # replies without the payload: by the probe's source port (kept by MASQUERADE)
            rules.append(f"meta l4proto udp udp dport {packet.sport}")
    return [f"{r} meta nftrace set 1" for r in rules]


def table_script(table: str, nonce: int, packet: Packet) -> str:
    lines = [
        f"table inet {table} {{",
        "  chain pre { type filter hook prerouting priority -350; policy accept; }",
        "  chain out { type filter hook output priority -350; policy accept; }",
        "}",
    ]
    for rule in trace_rules(nonce, packet):
        lines.append(f"add rule inet {table} pre {rule}")
        lines.append(f"add rule inet {table} out {rule}")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- netlink events


@dataclass(frozen=True, slots=True)
class RawTrace:
    """One NFT_MSG_TRACE message."""

    family: str
    table: str
    chain: str
    handle: int | None
    type: str
    verdict: str | None
    trace_id: int
    nfproto: int
    network: bytes
    transport: bytes
    iif: int | None
    oif: int | None
    mark: int
    t_ns: int


def _nla(data: bytes) -> dict[int, bytes]:
    out: dict[int, bytes] = {}
    pos = 0
    while pos + 4 <= len(data):
        length, kind = struct.unpack_from("<HH", data, pos)
        if length < 4:
            break
        out[kind & 0x3FFF] = data[pos + 4 : pos + length]
        pos += (length + 3) & ~3
    return out


def _verdict(raw: bytes | None) -> str | None:
    if raw is None:
        return None
    attrs = _nla(raw)
    if NFTA_VERDICT_CODE not in attrs:
        return None
    (code,) = struct.unpack("!i", attrs[NFTA_VERDICT_CODE][:4])
    name = VERDICTS.get(code, str(code))
    chain = attrs.get(NFTA_VERDICT_CHAIN)
    if chain:
        name += " " + chain.split(b"\0", 1)[0].decode(errors="replace")
    return name


def _nla_str(a: dict[int, bytes], k: int) -> str:
    return a.get(k, b"").split(b"\0", 1)[0].decode(errors="replace")


def _nla_u32(a: dict[int, bytes], k: int) -> int | None:
    return int(struct.unpack("!I", a[k][:4])[0]) if k in a else None


def parse_trace_messages(data: bytes, t_ns: int) -> list[RawTrace]:
    """Decode the NFT_MSG_TRACE messages in one netlink datagram."""
    out = []
    pos = 0
    while pos + 16 <= len(data):
        length, mtype, _flags, _seq, _pid = struct.unpack_from("<IHHII", data, pos)
        if length < 16:
            break
        payload = data[pos + 16 : pos + length]
        pos += (length + 3) & ~3
        if mtype != (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_TRACE or len(payload) < 4:
            continue
        family = FAMILIES.get(payload[0], str(payload[0]))
        a = _nla(payload[4:])
        s = functools.partial(_nla_str, a)
        u32 = functools.partial(_nla_u32, a)
        handle = struct.unpack("!Q", a[NFTA_TRACE_RULE_HANDLE][:8])[0] if 3 in a else None
        ttype = TRACE_TYPES.get(u32(NFTA_TRACE_TYPE) or 0, "unknown")
        verdict = _verdict(a.get(NFTA_TRACE_VERDICT))
        if ttype == "policy" and NFTA_TRACE_POLICY in a:
            verdict = VERDICTS.get(struct.unpack("!i", a[NFTA_TRACE_POLICY][:4])[0], verdict)
        out.append(
            RawTrace(
                family=family,
                table=s(NFTA_TRACE_TABLE),
                chain=s(NFTA_TRACE_CHAIN),
                handle=handle,
                type=ttype,
                verdict=verdict,
                trace_id=u32(NFTA_TRACE_ID) or 0,
                nfproto=u32(NFTA_TRACE_NFPROTO) or 0,
                network=a.get(NFTA_TRACE_NETWORK_HEADER, b""),
                transport=a.get(NFTA_TRACE_TRANSPORT_HEADER, b""),
                iif=u32(NFTA_TRACE_IIF),
                oif=u32(NFTA_TRACE_OIF),
                mark=u32(NFTA_TRACE_MARK) or 0,
                t_ns=t_ns,
            )
        )
    return out


def trace_packet(t: RawTrace) -> Parsed | None:
    """The packet as netfilter saw it, from the trace's network and transport headers."""
    if not t.network:
        return None
    p = parse_ip(t.network)
    if p is None or not t.transport:
        return p
    return parse_l4(p.family, p.proto, p.src, p.dst, t.transport, ip_id=p.ip_id, length=p.length)


# --------------------------------------------------------------------------- rule text


_HANDLE = re.compile(r"^\s*(?P<rule>.*?)\s*# handle (?P<handle>\d+)\s*$")
_TABLE = re.compile(r"^table (?P<family>\S+) (?P<table>\S+) \{")
_CHAIN = re.compile(r"^\s*chain (?P<chain>\S+) \{")

RuleTexts = dict[tuple[str, str, str], dict[int, tuple[int, str]]]


def parse_ruleset(text: str) -> RuleTexts:
    """(family, table, chain) -> handle -> (1-based position, rule text) from ``nft -a list``."""
    rules: RuleTexts = {}
    family = table = chain = None
    pos = 0
    for line in text.splitlines():
        m = _TABLE.match(line)
        if m:
            family, table, chain = m.group("family"), m.group("table"), None
            continue
        m = _CHAIN.match(line)
        if m and family and table:
            chain, pos = m.group("chain"), 0
            rules.setdefault((family, table, chain), {})
            continue
        stripped = line.strip()
        if chain is None or not family or not table:
            continue
        if stripped.startswith(("type ", "policy ")) or stripped == "}":
            if stripped == "}":
                chain = None
            continue
        m = _HANDLE.match(line)
        if m and m.group("rule"):
            pos += 1
            rules[(family, table, chain)][int(m.group("handle"))] = (pos, m.group("rule"))
    return rules


def ruleset_rules(netns_path: str) -> RuleTexts:
    code, out, _err = nftlib.run(netns_path, "list ruleset", handles=True)
    return parse_ruleset(out) if code == 0 else {}


def parse_iptables_save(text: str) -> dict[tuple[str, str], list[str]]:
    """(table, chain) -> its ``-A`` lines in order."""
    chains: dict[tuple[str, str], list[str]] = {}
    table = ""
    for line in text.splitlines():
        if line.startswith("*"):
            table = line[1:].strip()
        elif line.startswith("-A ") and table:
            chains.setdefault((table, line.split()[1]), []).append(line)
    return chains


def iptables_rules(netns_path: str, family: str) -> dict[tuple[str, str], list[str]]:
    """iptables-nft's view of the namespace, to give its rules in the user's own syntax."""
    tool = {"ip": "iptables-nft-save", "ip6": "ip6tables-nft-save"}.get(family)
    if tool is None or not shutil.which(tool):
        return {}
    proc = subprocess.run(
        nsenter.command_in(netns_path, [tool]), capture_output=True, text=True, check=False
    )
    return parse_iptables_save(proc.stdout)
