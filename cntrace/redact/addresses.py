"""Keyed, prefix-preserving pseudonyms for IP addresses, and keyed pseudonyms for MACs.

Output bit i of an address is input bit i flipped by a keyed hash of bits 0..i-1 (the scheme of
Crypto-PAn): two addresses that share an n-bit prefix share one after mapping too, so subnets,
gateways inside them, routes and NAT rewrites keep their relationships. The first octet (16 bits
for IPv6) is kept, so a private network stays private and multicast stays multicast; loopback,
the unspecified and broadcast addresses are not changed at all. The network and broadcast
addresses of the snapshot's own subnets map to the network and broadcast addresses of the mapped
subnets.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Iterable

IPNet = ipaddress.IPv4Network | ipaddress.IPv6Network

_FIXED = (
    ipaddress.ip_network("127.0.0.0/8"),
    ipaddress.ip_network("224.0.0.0/4"),
    ipaddress.ip_network("0.0.0.0/32"),
    ipaddress.ip_network("255.255.255.255/32"),
    ipaddress.ip_network("::/128"),
    ipaddress.ip_network("::1/128"),
    ipaddress.ip_network("ff00::/8"),
)
_KEEP = ((ipaddress.ip_network("169.254.0.0/16"), 16), (ipaddress.ip_network("100.64.0.0/10"), 10))


class AddressMap:
    def __init__(self, key: bytes, subnets: Iterable[IPNet] = ()) -> None:
        self.key = key
        self._bits: dict[tuple[int, int, int], int] = {}
        self.subnets = sorted(
            {s for s in subnets if s.prefixlen not in (0, s.max_prefixlen)},
            key=lambda s: -s.prefixlen,
        )

    def _flip(self, width: int, i: int, prefix: int) -> int:
        k = (width, i, prefix)
        bit = self._bits.get(k)
        if bit is None:
            h = hashlib.blake2b(f"{width}:{i}:{prefix}".encode(), key=self.key, digest_size=1)
            bit = self._bits[k] = h.digest()[0] & 1
        return bit

    def _raw(self, value: int, width: int, keep: int) -> int:
        out = value
        for i in range(keep, width):
            if self._flip(width, i, value >> (width - i)):
                out ^= 1 << (width - 1 - i)
        return out

    def address(self, text: str) -> str:
        try:
            ip = ipaddress.ip_address(text)
        except ValueError:
            return text
        if any(ip.version == n.version and ip in n for n in _FIXED):
            return text
        for s in self.subnets:
            if ip.version != s.version or ip not in s or s.num_addresses < 4:
                continue
            if ip in (s.network_address, s.broadcast_address):
                mapped = self.network(s)
                return str(
                    mapped.network_address if ip == s.network_address else mapped.broadcast_address
                )
            break
        width = ip.max_prefixlen
        keep = 8 if width == 32 else 16
        for n, k in _KEEP:
            if ip.version == n.version and ip in n:
                keep = k
        value = self._raw(int(ip), width, keep)
        return str(ipaddress.ip_address(value) if width == 32 else ipaddress.IPv6Address(value))

    def network(self, net: IPNet) -> IPNet:
        if any(net.version == n.version and net.subnet_of(n) for n in _FIXED):  # type: ignore[arg-type]
            return net
        width = net.max_prefixlen
        keep = 8 if width == 32 else 16
        mapped = self._raw(int(net.network_address), width, keep)
        return ipaddress.ip_network((mapped, net.prefixlen), strict=False)

    def cidr(self, text: str) -> str:
        addr, _, plen = text.partition("/")
        try:
            net = ipaddress.ip_network(text, strict=False)
        except ValueError:
            return text
        if ipaddress.ip_address(addr) == net.network_address:
            return str(self.network(net))
        return f"{self.address(addr)}/{plen}"


def mac(text: str, key: bytes) -> str:
    """The first octet (its group and local bits) is kept; all-zero and broadcast stay."""
    low = text.lower()
    if low in ("00:00:00:00:00:00", "ff:ff:ff:ff:ff:ff"):
        return low
    first, _, rest = low.partition(":")
    h = hashlib.blake2b(rest.encode(), key=key + b"mac", digest_size=5).digest()
    return first + ":" + ":".join(f"{b:02x}" for b in h)
