"""Header, meta and conntrack fields beyond addresses and ports, as the kernel reads them.

Keys start with ``h:`` (nft_fields.py makes them). The kernel's rules, followed here:

- A header the packet lacks breaks the rule (NFT_BREAK): the value is None, so the match is
  false whatever its operator. ``exists``/``missing`` tests read 0 instead (NFT_EXTHDR_F_PRESENT).
  A probe carries no IPv6 extension headers, IP options, VLAN tag, IPsec, SCTP chunks of a
  TCP/UDP packet; its TCP options are what probe.tcp_options says.
- nft adds a hidden dependency to ``icmp id`` (echo types), ``icmp mtu`` (destination
  unreachable), ``icmp gateway`` (redirect): another type breaks the rule.
- What the sender picks at random (sequence numbers, IDs, checksums over them) is known only
  for a crafted probe (``Probe.header``); otherwise the value says why not (``Why``).
- What no packet decides (the CPU, the route, the socket table, xfrm state) says so with
  ``STATE`` in its reason, so that counts keep it apart from what the packet decides.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cntrace.netfilter.model import PROTO_NUMBERS
from cntrace.netfilter.probe import tcp_flags, tcp_options

if TYPE_CHECKING:
    from cntrace.model import Packet
    from cntrace.netfilter.state import State
    from cntrace.netfilter.steps import Field

STATE = "kernel state, not the packet"


class Why:
    """A value that cannot be known for this packet, with the reason."""

    __slots__ = ("why",)

    def __init__(self, why: str) -> None:
        self.why = why


TCPOPT_KINDS = {
    "eol": 0, "nop": 1, "maxseg": 2, "window": 3, "sack-perm": 4, "sack-permitted": 4,
    "sack": 5, "sack0": 5, "sack1": 5, "sack2": 5, "sack3": 5, "timestamp": 8, "md5sig": 19,
    "mptcp": 30, "fastopen": 34,
}  # fmt: skip
_TCPOPT_LEN = {2: 4, 3: 3, 4: 2, 8: 10}
EXTHDRS = {"hbh": 0, "rt": 43, "rt0": 43, "rt2": 43, "srh": 43, "frag": 44, "dst": 60, "mh": 135}
# nft's hidden icmp type dependencies (src/payload.c): echo for id/sequence, etc.
_ICMP_DEPS = {
    (1, "id"): (0, 8), (1, "sequence"): (0, 8), (1, "mtu"): (3,), (1, "gateway"): (5,),
    (58, "id"): (128, 129), (58, "sequence"): (128, 129), (58, "mtu"): (2,),
    (58, "max-delay"): (130, 131, 132),
}  # fmt: skip
# ARPHRD_* of a device, by the link kind cntrace records.
ARPHRD = {"loopback": 772, "ipip": 768, "ip6tnl": 769, "sit": 776, "gre": 778, "ppp": 512,
          "wireguard": 65534, "tun": 65534}  # fmt: skip
IFTYPES = {"ether": 1, "ppp": 512, "ipip": 768, "ipip6": 769, "loopback": 772, "sit": 776,
           "ipgre": 778}  # fmt: skip


def proto_num(p: Packet) -> int:
    proto = p.proto.lower()
    if proto == "icmp" and p.family == 6:
        return 58
    num = PROTO_NUMBERS.get(proto)
    if num is not None:
        return num
    return int(proto) if proto.isdigit() else -1


def header_value(st: State, f: Field) -> object:
    key = f.key[2:]
    pr = st.probe
    group, _, fld = key.partition(".")
    dep = _ICMP_DEPS.get((f.proto or 1, fld)) if group == "icmp" else None
    if dep is not None and st.packet.icmp_type not in dep:
        return None  # before what the probe knows: its bytes there mean another field
    known = pr.known(key)
    if known is not None:
        return known
    fn = _GROUPS.get(group)
    if fn is not None:
        return fn(st, f, fld)
    return Why(f"{group} {fld} is not known for this packet")


def _tcp(st: State, f: Field, fld: str) -> object:
    flags = tcp_flags(st.probe, st.ctstate)
    if fld == "urgptr" and not flags & 0x20:
        return 0
    if fld == "ackseq" and not flags & 0x10:
        return 0  # Linux sends ack_seq 0 without ACK
    if fld == "reserved":
        return 0
    if fld == "doff":
        opts = tcp_options(st.probe, flags)
        size = sum(_TCPOPT_LEN.get(k, 1) for k in opts if k != 1)
        return 5 + (size + 3) // 4
    return Why(f"tcp {fld}: the sending kernel picks it (known only for a crafted probe)")


def _udp(st: State, f: Field, fld: str) -> object:
    length = st.probe.length
    if fld == "length" and f.key.startswith("h:udp."):
        if length is None:
            return Why("udp length: the probe's length is not known")
        return length - (20 if st.packet.family == 4 else 40)
    return Why(
        f"{f.key[2:].replace('.', ' ')}: covers the payload (known only for a crafted probe)"
    )


def _icmp(st: State, f: Field, fld: str) -> object:
    dep = _ICMP_DEPS.get((f.proto or 1, fld))
    if dep is not None and st.packet.icmp_type not in dep:
        return None
    return Why(f"icmp {fld}: the sender's choice (known only for a crafted probe)")


def _absent(st: State, f: Field, fld: str) -> object:
    """A header the probe never has: VLAN tags (its frames are untagged)."""
    return None


def _other_proto(st: State, f: Field, fld: str) -> object:
    # Reached only for a packet of this protocol (the Field's proto): not a probe cntrace sends.
    return Why(f"{f.key[2:].replace('.', ' ')} is not known for this packet")


def _option_lookup(st: State, f: Field) -> tuple[str, str, bool]:
    name, _, fld = (f.arg or "").partition(".")
    return name, fld, not fld


def _exthdr(st: State, f: Field, _: str) -> object:
    name, fld, exists = _option_lookup(st, f)
    present = st.packet.family == 6 and name == "frag" and st.probe.fragment
    if exists:
        return int(present)
    return Why(f"exthdr {name} {fld} of a fragment is not known") if present else None


def _ipopt(st: State, f: Field, _: str) -> object:
    exists = _option_lookup(st, f)[2]
    return 0 if exists else None  # a probe's IPv4 header has no options (hdrlength 5)


def _tcpopt(st: State, f: Field, _: str) -> object:
    name, fld, exists = _option_lookup(st, f)
    if st.packet.proto != "tcp":
        return 0 if exists else None
    flags = tcp_flags(st.probe, st.ctstate)
    kind = TCPOPT_KINDS.get(name, int(name) if name.isdigit() else -1)
    present = kind in tcp_options(st.probe, flags)
    if exists:
        return int(present)
    if not present:
        return None
    if fld == "kind":
        return kind
    if fld == "length" and kind in _TCPOPT_LEN:
        return _TCPOPT_LEN[kind]
    v = st.probe.known(f"tcpopt.{name}.{fld}")
    if v is not None:
        return v
    if kind == 8 and fld == "tsecr" and not flags & 0x10:
        return 0  # a SYN echoes no timestamp
    return Why(f"tcp option {name} {fld}: the sender's choice (known only for a crafted probe)")


def _sctpchunk(st: State, f: Field, _: str) -> object:
    name, _, exists = _option_lookup(st, f)
    if st.packet.proto != "sctp":
        return 0 if exists else None
    return Why(f"sctp chunk {name}: the chunks of an SCTP probe are not modelled")


def _meta(st: State, f: Field, fld: str) -> object:
    if fld == "priority":
        return st.probe.priority
    if fld in ("secpath", "nftrace", "secmark"):
        return 0  # a cleartext probe, not traced, without a security mark
    if fld in ("iifgroup", "oifgroup", "iiftype", "oiftype"):
        dev = st.iif if fld.startswith("i") else st.oif
        if dev is None:
            return None  # no such device at this hook: the kernel breaks the rule
        if fld.endswith("group"):
            g = st.facts.groups.get(dev)
            return g if g is not None else Why(f"the device group of {dev} is not known")
        if not st.facts.known:
            return Why(f"the type of device {dev} is not known")
        return ARPHRD.get(st.facts.iface_kinds.get(dev, ""), 1 if dev != "lo" else 772)
    if fld == "cgroup":
        if st.iif is not None:
            return None  # not locally generated: no socket
        cg = st.probe.cgroup
        return cg if cg is not None else Why("the sending socket's cgroup is not known")
    if fld in ("sdif", "sdifname"):
        if "vrf" in st.facts.iface_kinds.values() or not st.facts.known:
            return Why("the VRF a packet enters is not modelled")
        return 0 if fld == "sdif" else ""
    if fld == "cpu":
        return Why(f"meta cpu: the CPU that handles the packet ({STATE})")
    if fld == "rtclassid":
        return Why(f"meta rtclassid: the route's realm ({STATE})")
    return Why(f"meta {fld} is not modelled")


def _ct(st: State, f: Field, fld: str) -> object:
    if st.untracked or not st.ct_attached:
        return None  # no connection: the kernel breaks the rule
    p = st.packet
    if fld in ("zone", "label"):
        return 0  # no zone or label unless a rule sets one
    if fld == "helper":
        return None  # no helper attached: nft_ct breaks the rule
    if fld == "protocol":
        return proto_num(p)
    if fld == "l3proto":
        return p.family
    if fld in ("bytes", "packets", "avgpkt"):
        if st.ctstate != "new":
            return Why(f"connbytes: ct {fld} of an existing connection (stateful)")
        if f.arg == "reply":
            return 0
        if fld == "packets":
            return 1  # conntrack counted this first packet before the filter hooks
        if st.probe.length is None:
            return Why(f"ct {fld}: the probe's length is not known")
        return st.probe.length
    if fld == "id":
        return Why(f"ct id: the conntrack entry's id ({STATE})")
    return Why(f"ct {fld} is not modelled")


def _ipsec(st: State, f: Field, _: str) -> object:
    if f.arg == "in":
        return None  # a cleartext probe has no secpath: the kernel breaks the rule
    return Why(f"ipsec out: the xfrm policy of the route ({STATE})")


def _socket(st: State, f: Field, fld: str) -> object:
    if st.iif is None and fld in ("transparent", "mark", "wildcard"):
        return 0  # the probe's own socket: not transparent, no mark, bound by connect
    return Why(f"socket {fld}: the namespace's sockets ({STATE})")


def _osf(st: State, f: Field, fld: str) -> object:
    if st.packet.proto != "tcp" or not tcp_flags(st.probe, st.ctstate) & 0x02:
        return None  # osf reads only TCP SYNs
    return Why(f"osf: the kernel's OS fingerprint table ({STATE})")


def _rt(st: State, f: Field, fld: str) -> object:
    return Why(f"rt {fld}: the route taken ({STATE})")


def _fib(st: State, f: Field, fld: str) -> object:
    return Why(f"fib {fld}: a route lookup ({STATE})")


_GROUPS = {
    "tcp": _tcp, "udp": _udp, "udplite": _udp, "icmp": _icmp, "vlan": _absent,
    "sctp": _other_proto, "dccp": _other_proto, "ah": _other_proto, "esp": _other_proto,
    "comp": _other_proto, "igmp": _other_proto, "ip": _other_proto, "exthdr": _exthdr,
    "ipopt": _ipopt, "tcpopt": _tcpopt, "sctpchunk": _sctpchunk, "meta": _meta, "ct": _ct,
    "ipsec": _ipsec, "socket": _socket, "osf": _osf, "rt": _rt, "fib": _fib,
}  # fmt: skip
