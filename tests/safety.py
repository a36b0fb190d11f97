"""The network-safety guard of the test harness.

Tests may send packets only to loopback and to addresses that live inside network namespaces this
run created (the lab, or containers a test started). ``GUARD`` learns those namespaces as fixtures
create them and refuses every other destination. It is enforced twice: every helper that sends
(``probe``) checks it, and ``install_socket_guard`` patches the test process's sockets so that even
an accidental connect or sendto towards a real address fails loudly.
"""

from __future__ import annotations

import ipaddress
import json
import socket
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any


class DestinationRefused(AssertionError):
    """A test tried to send a packet somewhere it must not."""


def _addresses_of(nspath: str) -> set[str]:
    out = subprocess.run(
        ["nsenter", f"--net={nspath}", "ip", "-j", "addr"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    found: set[str] = set()
    for link in json.loads(out or "[]"):
        for a in link.get("addr_info", []):
            found.add(a["local"])
    return found


@dataclass
class NetGuard:
    """Destinations this run may send to: loopback plus addresses of namespaces it created."""

    netns_paths: set[str] = field(default_factory=set)
    # Addresses that exist only as DNAT rules inside namespaces this run created (a Kubernetes
    # Service range): the packet is rewritten or rejected there, or stays inside the lab.
    virtual: dict[str, ipaddress.IPv4Network | ipaddress.IPv6Network] = field(default_factory=dict)
    _cache: set[str] = field(default_factory=set)

    def own(self, *paths: str) -> None:
        """Record namespaces (by path: /run/netns/x or /proc/PID/ns/net) this run created."""
        self.netns_paths.update(paths)
        self._cache.clear()

    def own_netns(self, *names: str) -> None:
        self.own(*(f"/run/netns/{n}" for n in names))

    def own_virtual(self, owner: str, cidr: str) -> None:
        """A virtual range served by rules in namespace ``owner`` (which this run must own)."""
        if owner not in self.netns_paths:
            raise DestinationRefused(f"network safety: {owner} was not created by this run")
        self.virtual[owner] = ipaddress.ip_network(cidr)

    def disown(self, *paths: str) -> None:
        for p in paths:
            self.virtual.pop(p, None)
        self.netns_paths.difference_update(paths)
        self._cache.clear()

    def allowed(self) -> set[str]:
        if not self._cache:
            for path in list(self.netns_paths):
                try:
                    self._cache |= _addresses_of(path)
                except (OSError, ValueError):
                    continue
        return self._cache

    def check(self, destination: str) -> None:
        ip = ipaddress.ip_address(destination.split("%", maxsplit=1)[0])
        if ip.is_loopback or ip.is_unspecified:
            return
        if any(ip in net for net in self.virtual.values()):
            return
        if destination in self.allowed():
            return
        self._cache.clear()  # addresses may have been added since the last look
        if destination in self.allowed():
            return
        raise DestinationRefused(
            f"network safety: {destination} is neither loopback nor inside a namespace this run "
            "created; tests must not send packets there"
        )


GUARD = NetGuard()


def install_socket_guard() -> None:
    """Make connect/sendto in this process refuse destinations the guard does not allow."""
    base = socket.socket
    if getattr(base, "_cntrace_guarded", False):
        return
    orig_connect = base.connect
    orig_connect_ex = base.connect_ex
    orig_sendto = base.sendto

    def _dest(sock: socket.socket, address: Any) -> None:
        if sock.family in (socket.AF_INET, socket.AF_INET6) and isinstance(address, tuple):
            GUARD.check(str(address[0]))

    def connect(self: socket.socket, address: Any) -> None:
        _dest(self, address)
        orig_connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> int:
        _dest(self, address)
        return orig_connect_ex(self, address)

    def sendto(self: socket.socket, data: Any, *args: Any) -> int:
        if args:
            _dest(self, args[-1])
        return orig_sendto(self, data, *args)  # type: ignore[call-overload,no-any-return]

    base.connect = connect  # type: ignore[method-assign]
    base.connect_ex = connect_ex  # type: ignore[method-assign]
    base.sendto = sendto  # type: ignore[method-assign,assignment]
    base._cntrace_guarded = True  # type: ignore[attr-defined]


# A tiny client run inside the source namespace; prints one word: ok | refused | timeout | <errno>.
_CLIENT = r"""
import socket, sys
proto, ip, port, timeout = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
size = int(sys.argv[5])
payload = b"ping\n" if size <= 0 else b"x" * size
fam = socket.AF_INET6 if ":" in ip else socket.AF_INET
try:
    if proto == "tcp":
        s = socket.create_connection((ip, port), timeout=timeout)
        s.sendall(payload); s.settimeout(timeout)
        data = s.recv(64)
        text = data.decode(errors="replace").strip()
        print(("ok:" + text) if sys.argv[6] == "1" and text else ("ok" if data else "closed"))
    else:
        s = socket.socket(fam, socket.SOCK_DGRAM); s.settimeout(timeout)
        s.connect((ip, port)); s.send(payload)
        got = s.recv(65535)
        print("ok" if len(got) == len(payload) else "short")
except socket.timeout:
    print("timeout")
except ConnectionRefusedError:
    print("refused")
except OSError as e:
    import errno
    print(errno.errorcode.get(e.errno, str(e.errno)).lower())
"""


def probe(
    nspath: str,
    ip: str,
    port: int,
    proto: str = "tcp",
    timeout: float = 2.0,
    size: int = 0,
    echo: bool = False,
) -> str:
    """Open a real connection from inside ``nspath`` to ip:port and say how it ended.

    TCP sends a line and waits for a reply; UDP sends ``size`` bytes (default a short line) and
    expects them echoed back whole. Answers ok | refused | timeout | closed | short | <errno>;
    with ``echo``, a TCP answer is ``ok:<the first line the server sent>``.
    """
    GUARD.check(ip)
    if not any(nspath == p for p in GUARD.netns_paths):
        raise DestinationRefused(
            f"network safety: source namespace {nspath} was not created by this run"
        )
    res = subprocess.run(
        [
            "nsenter",
            f"--net={nspath}",
            sys.executable,
            "-c",
            _CLIENT,
            proto,
            ip,
            str(port),
            str(timeout),
            str(size),
            "1" if echo else "0",
        ],
        capture_output=True,
        text=True,
        timeout=timeout * 3 + 5,
        check=False,
    )
    if res.stdout.strip():
        return res.stdout.strip()
    lines = res.stderr.strip().splitlines()
    return lines[-1] if lines else "error"


def ping(nspath: str, ip: str, timeout: float = 1.0) -> bool:
    """One ICMP echo from inside ``nspath``."""
    GUARD.check(ip)
    res = subprocess.run(
        [
            "nsenter",
            f"--net={nspath}",
            "busybox",
            "ping",
            "-c1",
            "-W",
            str(int(max(timeout, 1))),
            ip,
        ],
        capture_output=True,
        check=False,
    )
    return res.returncode == 0


def own_all(paths: Iterable[str]) -> None:
    GUARD.own(*paths)
