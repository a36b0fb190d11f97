"""The mutable state of one packet's walk, and the values of the fields matches read from it.

A field's value depends on the packet as NAT left it, the devices of the current hook and the
connection (its state, its mark, its tuples). ``value`` computes it, masked as the field asks,
and caches it until the packet or the connection changes.
"""

from __future__ import annotations

from cntrace.errors import BadInput
from cntrace.model import Packet
from cntrace.netfilter.model import CT_STATE_BITS, PORT_PROTOS, Netfilter, Rule
from cntrace.netfilter.probe import PREDICTED
from cntrace.netfilter.probe_fields import UNKNOWN, apply_ops, probe_value
from cntrace.netfilter.probe_headers import header_value, proto_num
from cntrace.netfilter.results import Conntrack, NetnsFacts
from cntrace.netfilter.steps import MASK32, Field
from cntrace.netfilter.values import ip_to_int


class State:
    """The mutable state of one packet's walk (kept out of the frozen results)."""

    def __init__(
        self,
        nf: Netfilter,
        packet: Packet,
        facts: NetnsFacts,
        ctstate: str,
        ctmark: int,
        conntrack: Conntrack | None,
        physdev_in: str | None,
        physdev_out: str | None,
    ) -> None:
        self.nf = nf
        self.facts = facts
        self.packet = packet
        self.original = packet
        self.ctstate = ctstate.lower()
        if self.ctstate not in CT_STATE_BITS or self.ctstate in ("snat", "dnat"):
            raise BadInput(
                f"unknown conntrack state {ctstate!r} (new, established, related, invalid, "
                "untracked)"
            )
        self.ctmark = ctmark
        self.conntrack = conntrack
        self.direction = 0
        if conntrack is not None and self.ctstate != "new":
            self.direction = _direction(packet, conntrack)
        self.physdev_in = physdev_in
        self.physdev_out = physdev_out
        self.untracked = self.ctstate == "untracked"
        self.ct_attached = False
        self.nat_done: set[str] = set()  # manip types bound: "dst", "src"
        self.snat = conntrack is not None and _differs_src(conntrack)
        self.dnat = conntrack is not None and _differs_dst(conntrack)
        self.iif: str | None = None
        self.oif: str | None = None
        self.prio = 0
        self.cache: dict[Field, object] = {}
        self.local = _local_ints(facts)
        # The frame around the packet, for the bridge, netdev and arp families (families.py):
        # (source MAC, destination MAC) when known, and the ARP operation of an ARP packet.
        self.ether: tuple[str, str] | None = None
        self.arp_op = 0
        self.probe = PREDICTED
        self.rule: Rule | None = None  # the rule being run (stateful.py reads it)

    def set_packet(self, packet: Packet) -> None:
        self.packet = packet
        self.cache.clear()


# ICMP types that open a connection (nf_conntrack_proto_icmp{,v6}.c valid_new), and the ICMPv6
# neighbour discovery and MLD types conntrack leaves untracked (noct_valid_new).
_ICMP_NEW = {4: frozenset({8, 13, 15, 17}), 6: frozenset({128, 139})}
_ICMP6_UNTRACKED = frozenset({130, 131, 132, 133, 134, 135, 136, 143})


def attach_conntrack(st: State) -> None:
    """Conntrack takes the packet (priority -200). A first packet that is ICMP but not a request
    (a reply, an error with no connection behind it) gets no entry: state INVALID, no ct fields;
    neighbour discovery and MLD are UNTRACKED."""
    p = st.packet
    st.cache.clear()
    if st.ctstate == "new" and p.proto == "icmp" and p.icmp_type is not None:
        if p.family == 6 and p.icmp_type in _ICMP6_UNTRACKED:
            st.untracked = True
            return
        if p.icmp_type not in _ICMP_NEW.get(p.family, frozenset()):
            return
    st.ct_attached = True


def _ct_icmp(st: State, p: Packet, direction: str, what: str) -> object:
    """The "ports" of an ICMP tuple: the echo id as source, type and code as destination
    (nf_conntrack_tuple: src.u.icmp.id, dst.u.icmp.type/code), the reply with the reply type."""
    if what == "sport":
        ident = st.probe.known("icmp.id")
        return ident if ident is not None else UNKNOWN
    t = p.icmp_type if p.icmp_type is not None else -1
    if direction == "reply":
        t = _ICMP_REPLY.get((p.family, t), t)
    return (t << 8) | st.probe.icmp_code if t >= 0 else UNKNOWN


_ICMP_REPLY = {(4, 8): 0, (4, 13): 14, (4, 15): 16, (4, 17): 18, (6, 128): 129, (6, 139): 140}


_LOCAL: dict[int, tuple[NetnsFacts, frozenset[tuple[int, int]]]] = {}


def _local_ints(facts: NetnsFacts) -> frozenset[tuple[int, int]]:
    """The namespace's local addresses as integers, once per facts (every hook's State asks,
    and a host holds an address per port)."""
    seen = _LOCAL.get(id(facts))
    if seen is not None and seen[0] is facts:
        return seen[1]
    out: set[tuple[int, int]] = set()
    for a in facts.local_addresses:
        try:
            out.add(ip_to_int(a))
        except ValueError:
            continue
    if len(_LOCAL) > 64:
        _LOCAL.clear()
    done = frozenset(out)
    _LOCAL[id(facts)] = (facts, done)  # the facts kept: their id cannot be reused meanwhile
    return done


def _direction(p: Packet, ct: Conntrack) -> int:
    o, n = ct.original, ct.nated
    if (p.src, p.dst, p.sport, p.dport) == (o.src, o.dst, o.sport, o.dport):
        return 0
    if (p.src, p.dst, p.sport, p.dport) == (n.dst, n.src, n.dport, n.sport):
        return 1
    return 0


def _differs_src(ct: Conntrack) -> bool:
    return (ct.original.src, ct.original.sport) != (ct.nated.src, ct.nated.sport)


def _differs_dst(ct: Conntrack) -> bool:
    return (ct.original.dst, ct.original.dport) != (ct.nated.dst, ct.nated.dport)


def addr_type(st: State, addr: str, iface: str | None) -> str:
    ver, value = ip_to_int(addr)
    if iface is not None:
        local = addr in st.facts.iface_addresses.get(iface, ())
    else:
        local = (ver, value) in st.local
        if not local and ver == 4 and (value >> 24) == 127:
            local = True
        if not local and ver == 6 and value == 1:
            local = True
    if local:
        return "local"
    if ver == 4:
        if value == MASK32 or addr in st.facts.broadcast_addresses:
            return "broadcast"
        if (value >> 28) == 0xE:
            return "multicast"
    elif (value >> 120) == 0xFF:
        return "multicast"
    return "unicast"


def value(st: State, f: Field) -> object:
    """The field's value for the current packet; None when absent, UNKNOWN when unknowable."""
    cached = st.cache.get(f, st)
    if cached is not st:
        return cached
    v = _compute(st, f)
    if isinstance(v, int):
        if f.ops:
            v = apply_ops(v, f.ops)
        elif f.mask is not None:
            v &= f.mask
    st.cache[f] = v
    return v


def _compute(st: State, f: Field) -> object:
    p = st.packet
    key = f.key
    if p.proto == "arp" or key.startswith(_L2_KEYS):
        return _l2_field(st, key)
    if f.family is not None and f.family != p.family:
        return None
    if f.proto is not None and proto_num(p) != f.proto:
        return None
    if key == "saddr":
        return ip_to_int(p.src)[1]
    if key == "daddr":
        return ip_to_int(p.dst)[1]
    if key == "l4proto":
        return proto_num(p)
    if key in ("sport", "dport"):
        if proto_num(p) not in PORT_PROTOS:
            return None
        return p.sport if key == "sport" else p.dport
    if key == "iifname":
        return st.iif or ""
    if key == "oifname":
        return st.oif or ""
    if key == "mark":
        return p.mark
    if key == "ctmark":
        return st.ctmark
    if key == "ctstate":
        return _ct_state_bit(st)
    if key == "ctstate.x":
        bit = _ct_state_bit(st)
        if bit in (2, 4, 8):  # only tracked connections carry the virtual SNAT/DNAT states
            bit |= (256 if st.snat else 0) | (512 if st.dnat else 0)
        return bit
    if key == "ctstatus":
        status = (16 if st.snat else 0) | (32 if st.dnat else 0)
        if st.ctstate in ("established", "related") and st.conntrack is not None:
            status |= 8 | 2
        return status
    if key == "ctdirection":
        return st.direction
    if key.startswith("fib.") and key.endswith(".type"):
        if not st.facts.known:
            return UNKNOWN
        addr = p.dst if key == "fib.daddr.type" else p.src
        iface = None
        if f.arg == "iif":
            iface = st.iif
        elif f.arg == "oif":
            iface = st.oif
        return addr_type(st, addr, iface)
    if key == "icmp.type":
        return p.icmp_type if p.icmp_type is not None else UNKNOWN
    if key == "icmp.code":
        return st.probe.icmp_code
    if key in ("nfproto", "ethertype"):
        return p.family
    if key == "pkttype":
        t = addr_type(st, p.dst, None) if st.facts.known else "unicast"
        return t if t in ("broadcast", "multicast") else "host"
    if key == "physdev.in":
        return st.physdev_in or ""
    if key == "physdev.out":
        return st.physdev_out or ""
    if key == "physdev.is-in":
        return 1 if st.physdev_in else 0
    if key == "physdev.is-out":
        return 1 if st.physdev_out else 0
    if key == "physdev.is-bridged":
        return 1 if st.physdev_out else 0
    if key.startswith("ct.orig.") or key.startswith("ct.reply."):
        return _ct_tuple(st, key)
    if key.startswith("h:"):
        return header_value(st, f)
    return probe_value(st, key)


_L2_KEYS = ("arp.", "ether.", "ibrname", "obrname")
_ARP_CONSTANTS = {"arp.htype": 1, "arp.ptype": 4, "arp.hlen": 6, "arp.plen": 4}  # Ethernet, IPv4


def _l2_field(st: State, key: str) -> object:
    """A link-layer field, or any field of an ARP packet (which has no IP header or ports)."""
    p = st.packet
    arp = p.proto == "arp"
    if key in ("ibrname", "obrname"):
        dev = st.iif if key == "ibrname" else st.oif
        return st.facts.bridge_of.get(dev or "", "")
    if key in ("ether.saddr", "ether.daddr"):
        return st.ether[key == "ether.daddr"] if st.ether else UNKNOWN
    if key in ("ethertype", "nfproto"):
        return 0x806 if key == "ethertype" else 3  # NFPROTO_ARP
    if key in ("iifname", "oifname"):
        return (st.iif if key == "iifname" else st.oif) or ""
    if key == "mark":
        return p.mark
    if key.startswith(("h:meta.", "h:ct.")):
        return header_value(st, Field(key))
    if not arp or not key.startswith("arp."):
        return None  # an IP field of an ARP packet, or an ARP field of an IP packet: absent
    if key == "arp.op":
        return st.arp_op
    if key in ("arp.sip", "arp.tip"):
        return ip_to_int(p.src if key == "arp.sip" else p.dst)[1]
    if key in ("arp.sha", "arp.tha"):
        if st.ether is None:
            return UNKNOWN
        # A request asks for the target's MAC: its target hardware address is all zeros.
        if key == "arp.tha" and st.arp_op == 1:
            return "00:00:00:00:00:00"
        return st.ether[key == "arp.tha"]
    return _ARP_CONSTANTS.get(key, UNKNOWN)


def _ct_state_bit(st: State) -> int:
    if st.untracked:
        return CT_STATE_BITS["untracked"]
    if not st.ct_attached:
        return CT_STATE_BITS["invalid"]
    return CT_STATE_BITS[st.ctstate]


def _ct_tuple(st: State, key: str) -> object:
    if st.conntrack is not None:
        orig, nated = st.conntrack.original, st.conntrack.nated
    else:
        orig, nated = st.original, st.packet
    _, direction, what = key.split(".")
    if direction == "orig":
        src, dst, sport, dport = orig.src, orig.dst, orig.sport, orig.dport
    else:
        src, dst, sport, dport = nated.dst, nated.src, nated.dport, nated.sport
    if what == "saddr":
        return ip_to_int(src)[1]
    if what == "daddr":
        return ip_to_int(dst)[1]
    num = proto_num(orig)
    if num in (1, 58):
        return _ct_icmp(st, orig, direction, what)
    if num not in PORT_PROTOS and num != 47:
        return 0  # the generic tracker keeps no ports (tuple u.all 0)
    return sport if what == "sport" else dport
