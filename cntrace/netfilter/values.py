"""Values shared by both parsers: addresses as integers, symbolic names, and the parse error.

Addresses are parsed by hand for IPv4 (the hot path when a 10,000-rule ruleset is loaded) and with
``ipaddress`` for IPv6. Results are memoised: rulesets repeat the same few addresses thousands of
times.
"""

from __future__ import annotations

import contextlib
import gc
import ipaddress
from collections.abc import Iterator
from functools import lru_cache

from cntrace.errors import BadInput
from cntrace.netfilter.steps import Atom


class RulesetError(BadInput):
    """A ruleset that cannot be parsed; ``line`` is 1-based in the text it came from."""

    def __init__(self, message: str, line: int | None = None, *, source: str = "") -> None:
        where = f"{source}: " if source else ""
        at = f"line {line}: " if line is not None else ""
        super().__init__(f"{where}{at}{message}")
        self.line = line
        self.source = source


@contextlib.contextmanager
def no_gc() -> Iterator[None]:
    """Pause the cyclic garbage collector while a parser allocates its (acyclic) objects: with
    100,000 new objects its generation scans cost more than the parsing itself."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


@lru_cache(maxsize=65536)
def ip_to_int(text: str) -> tuple[int, int]:
    """'10.0.0.1' -> (4, 167772161); raises ValueError on anything else."""
    if ":" not in text:
        parts = text.split(".")
        if len(parts) != 4:
            raise ValueError(f"not an IPv4 address: {text!r}")
        value = 0
        for p in parts:
            if not p.isdigit() or len(p) > 3:
                raise ValueError(f"not an IPv4 address: {text!r}")
            n = int(p)
            if n > 255:
                raise ValueError(f"not an IPv4 address: {text!r}")
            value = (value << 8) | n
        return 4, value
    try:
        return 6, int(ipaddress.IPv6Address(text.split("%", 1)[0]))
    except ipaddress.AddressValueError as exc:
        raise ValueError(f"not an IPv6 address: {text!r}") from exc


@lru_cache(maxsize=65536)
def prefix_atom(text: str) -> tuple[int, Atom]:
    """'10.0.0.0/8', '10.1.2.3', '10.0.0.0/255.0.0.0' -> (version, Atom range)."""
    addr, _, plen = text.partition("/")
    version, value = ip_to_int(addr)
    bits = 32 if version == 4 else 128
    if not plen:
        return version, Atom(value)
    if plen.isdigit():
        n = int(plen)
    else:  # a dotted netmask, as old iptables-save printed non-CIDR masks
        _, mask = ip_to_int(plen)
        n = bin(mask).count("1")
        if mask != ((1 << bits) - 1) ^ ((1 << (bits - n)) - 1):
            raise ValueError(f"non-contiguous netmask {plen!r} is not supported")
    if n > bits:
        raise ValueError(f"prefix length {n} too long in {text!r}")
    if n == bits:
        return version, Atom(value)
    host = (1 << (bits - n)) - 1
    lo = value & ~host
    return version, Atom(lo, lo | host)


def int_address(value: int, version: int) -> str:
    """(167772161, 4) -> '10.0.0.1': an address the evaluator computed, as text again."""
    if version == 6:
        return str(ipaddress.IPv6Address(value))
    return str(ipaddress.IPv4Address(value & 0xFFFFFFFF))


def range_atom(lo_text: str, hi_text: str) -> tuple[int, Atom]:
    v1, lo = ip_to_int(lo_text)
    v2, hi = ip_to_int(hi_text)
    if v1 != v2 or hi < lo:
        raise ValueError(f"bad address range {lo_text}-{hi_text}")
    return v1, Atom(lo, hi)


ICMP_TYPES = {
    "echo-reply": 0,
    "destination-unreachable": 3,
    "source-quench": 4,
    "redirect": 5,
    "echo-request": 8,
    "router-advertisement": 9,
    "router-solicitation": 10,
    "time-exceeded": 11,
    "parameter-problem": 12,
    "timestamp-request": 13,
    "timestamp-reply": 14,
    "info-request": 15,
    "info-reply": 16,
    "address-mask-request": 17,
    "address-mask-reply": 18,
    # iptables aliases
    "ping": 8,
    "pong": 0,
    "any": -1,
}
ICMPV6_TYPES = {
    "destination-unreachable": 1,
    "packet-too-big": 2,
    "time-exceeded": 3,
    "parameter-problem": 4,
    "echo-request": 128,
    "echo-reply": 129,
    "mld-listener-query": 130,
    "mld-listener-report": 131,
    "mld-listener-done": 132,
    "mld-listener-reduction": 132,
    "nd-router-solicit": 133,
    "router-solicitation": 133,
    "nd-router-advert": 134,
    "router-advertisement": 134,
    "nd-neighbor-solicit": 135,
    "neighbour-solicitation": 135,
    "neighbor-solicitation": 135,
    "nd-neighbor-advert": 136,
    "neighbour-advertisement": 136,
    "neighbor-advertisement": 136,
    "nd-redirect": 137,
    "redirect": 137,
    "router-renumbering": 138,
    "ind-neighbor-solicit": 141,
    "ind-neighbor-advert": 142,
    "mld2-listener-report": 143,
    "ping": 128,
    "pong": 129,
    "any": -1,
}
SERVICES = {
    "ftp-data": 20,
    "ftp": 21,
    "ssh": 22,
    "telnet": 23,
    "smtp": 25,
    "domain": 53,
    "bootps": 67,
    "bootpc": 68,
    "tftp": 69,
    "http": 80,
    "kerberos": 88,
    "pop3": 110,
    "ntp": 123,
    "imap": 143,
    "snmp": 161,
    "ldap": 389,
    "https": 443,
    "submission": 587,
    "ldaps": 636,
    "imaps": 993,
    "pop3s": 995,
    "mdns": 5353,
    "dhcpv6-client": 546,
    "dhcpv6-server": 547,
}
PKTTYPES = {"host": "host", "unicast": "host", "broadcast": "broadcast", "multicast": "multicast"}
ADDRTYPES = {
    "UNSPEC": "unspec",
    "UNICAST": "unicast",
    "LOCAL": "local",
    "BROADCAST": "broadcast",
    "ANYCAST": "anycast",
    "MULTICAST": "multicast",
    "BLACKHOLE": "blackhole",
    "UNREACHABLE": "unreachable",
    "PROHIBIT": "prohibit",
    "THROW": "throw",
    "NAT": "nat",
    "XRESOLVE": "xresolve",
}


def port_number(value: str | int) -> int:
    """A port as a number, accepting the service names nft and iptables may print."""
    if isinstance(value, int):
        n = value
    elif value.isdigit():
        n = int(value)
    elif value in SERVICES:
        n = SERVICES[value]
    else:
        raise ValueError(f"unknown port or service {value!r}")
    if not 0 <= n <= 65535:
        raise ValueError(f"port {n} out of range")
    return n


def int_value(text: str | int) -> int:
    """0x4000, 16384, '16384' -> int."""
    if isinstance(text, bool):
        raise ValueError("expected a number")
    if isinstance(text, int):
        return text
    return int(text, 0)
