"""Names as the netfilter tools print them: IP protocols, ICMP codes, TCP flags, DSCP classes.

iptables and nft name protocols through the C library's protocol table (``/etc/protocols``); the
copy below is Debian's netbase table (the IANA assignments it names), so a dump reads the same on
any host and the core never opens a system file. Lookups are case-insensitive, as
``getprotobyname`` is for the aliases iptables prints.
"""

from __future__ import annotations

from collections.abc import Sequence

PROTOCOLS = {
    "ip": 0, "hopopt": 0, "icmp": 1, "igmp": 2, "ggp": 3, "ipencap": 4, "st": 5, "tcp": 6,
    "egp": 8, "igp": 9, "pup": 12, "udp": 17, "hmp": 20, "xns-idp": 22, "rdp": 27,
    "iso-tp4": 29, "dccp": 33, "xtp": 36, "ddp": 37, "idpr-cmtp": 38, "ipv6": 41,
    "ipv6-route": 43, "ipv6-frag": 44, "idrp": 45, "rsvp": 46, "gre": 47, "esp": 50, "ah": 51,
    "skip": 57, "ipv6-icmp": 58, "ipv6-nonxt": 59, "ipv6-opts": 60, "rspf": 73, "vmtp": 81,
    "eigrp": 88, "ospf": 89, "ospfigp": 89, "ax.25": 93, "ipip": 94, "etherip": 97, "encap": 98,
    "pim": 103, "ipcomp": 108, "vrrp": 112, "l2tp": 115, "isis": 124, "sctp": 132, "fc": 133,
    "mobility-header": 135, "mobility": 135, "ipv6-mh": 135, "udplite": 136, "mpls-in-ip": 137,
    "manet": 138, "hip": 139, "shim6": 140, "wesp": 141, "rohc": 142, "ethernet": 143,
    # iptables' own aliases and nft's keywords
    "all": 0, "icmpv6": 58, "ipv6-icmp6": 58, "ip6-icmp": 58,
}  # fmt: skip


def protocol_number(name: str | int) -> int | None:
    """A protocol by name or number (0-255), None when neither."""
    if isinstance(name, int):
        return name if 0 <= name <= 255 else None
    key = name.strip().lower()
    if key.isdigit():
        n = int(key)
        return n if n <= 255 else None
    return PROTOCOLS.get(key)


# ICMP codes of destination-unreachable (type 3) and the others nft names.
ICMP_CODES = {
    "net-unreachable": 0, "network-unreachable": 0, "host-unreachable": 1,
    "prot-unreachable": 2, "protocol-unreachable": 2, "port-unreachable": 3,
    "frag-needed": 4, "fragmentation-needed": 4, "source-route-failed": 5,
    "network-unknown": 6, "host-unknown": 7, "host-isolated": 8, "net-prohibited": 9,
    "network-prohibited": 9, "host-prohibited": 10, "TOS-network-unreachable": 11,
    "tos-network-unreachable": 11, "tos-host-unreachable": 12, "admin-prohibited": 13,
    "communication-prohibited": 13, "host-precedence-violation": 14,
    "precedence-cutoff": 15,
}  # fmt: skip
ICMPV6_CODES = {
    "no-route": 0, "admin-prohibited": 1, "beyond-scope": 2, "addr-unreachable": 3,
    "address-unreachable": 3, "port-unreachable": 4, "policy-fail": 5, "reject-route": 6,
}  # fmt: skip
# iptables' names for a type/code pair (``--icmp-type port-unreachable``).
ICMP_TYPE_CODES = {
    "network-unreachable": (3, 0), "host-unreachable": (3, 1), "protocol-unreachable": (3, 2),
    "port-unreachable": (3, 3), "fragmentation-needed": (3, 4), "source-route-failed": (3, 5),
    "network-unknown": (3, 6), "host-unknown": (3, 7), "network-prohibited": (3, 9),
    "host-prohibited": (3, 10), "TOS-network-unreachable": (3, 11),
    "TOS-host-unreachable": (3, 12), "communication-prohibited": (3, 13),
    "host-precedence-violation": (3, 14), "precedence-cutoff": (3, 15),
    "network-redirect": (5, 0), "host-redirect": (5, 1), "TOS-network-redirect": (5, 2),
    "TOS-host-redirect": (5, 3), "ttl-zero-during-transit": (11, 0),
    "ttl-zero-during-reassembly": (11, 1), "ip-header-bad": (12, 0),
    "required-option-missing": (12, 1),
}  # fmt: skip
ICMPV6_TYPE_CODES = {
    "no-route": (1, 0), "communication-prohibited": (1, 1), "beyond-scope": (1, 2),
    "address-unreachable": (1, 3), "port-unreachable": (1, 4), "failed-policy": (1, 5),
    "reject-route": (1, 6), "ttl-zero-during-transit": (3, 0),
    "ttl-zero-during-reassembly": (3, 1), "bad-header": (4, 0),
    "unknown-header-type": (4, 1), "unknown-option": (4, 2),
}  # fmt: skip

TCP_FLAGS = {
    "fin": 0x01, "syn": 0x02, "rst": 0x04, "psh": 0x08, "ack": 0x10, "urg": 0x20,
    "ecn": 0x40, "cwr": 0x80, "all": 0x3F, "none": 0,
}  # fmt: skip

# DSCP class names (nft ``ip dscp cs1``, iptables ``--dscp-class AF11``).
DSCP = {
    "cs0": 0, "cs1": 8, "cs2": 16, "cs3": 24, "cs4": 32, "cs5": 40, "cs6": 48, "cs7": 56,
    "be": 0, "df": 0, "lephb": 1, "af11": 10, "af12": 12, "af13": 14, "af21": 18, "af22": 20,
    "af23": 22, "af31": 26, "af32": 28, "af33": 30, "af41": 34, "af42": 36, "af43": 38,
    "va": 44, "ef": 46,
}  # fmt: skip
ECN = {"not-ect": 0, "ect1": 1, "ect0": 2, "ce": 3}
DAYS = {"sunday": 0, "monday": 1, "tuesday": 2, "wednesday": 3, "thursday": 4, "friday": 5,
        "saturday": 6}  # fmt: skip


def bit_names(spec: str | int | Sequence[object], table: dict[str, int], what: str) -> int:
    """'syn,ack' / ['syn', 'ack'] / 0x12 -> the OR of the bits (ValueError for unknown names)."""
    if isinstance(spec, int):
        return spec
    parts = str(spec).split(",") if isinstance(spec, str) else spec
    bits = 0
    for p in parts:
        if isinstance(p, int):
            bits |= p
            continue
        key = str(p).strip().lower().replace("_", "-")
        if key in table:
            bits |= table[key]
        elif key.startswith("0x") or key.isdigit():
            bits |= int(key, 0)
        else:
            raise ValueError(f"unknown {what} {p!r}")
    return bits
