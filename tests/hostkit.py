"""Small worlds of plain namespaces for the "any namespace can be a host" tests (issue 12).

Each world is a few `ip netns` namespaces under one unique prefix (cntrace-ah<pid>-<role>), built
with iproute2 exactly as a person (or a CNI plugin) would: veths made inside one namespace with
their peer put straight into another, so both ends often share an ifindex. ``World.down`` removes
everything, even after a failure. Connections (``World.connect``) go only to addresses inside
these namespaces (tests/safety.py's GUARD learns them).
"""

from __future__ import annotations

import errno
import os
import socket
import subprocess
from dataclasses import dataclass, field

from safety import GUARD

from cntrace.sources import nsenter


def sh(*argv: str, stdin: str | None = None, check: bool = True) -> str:
    res = subprocess.run(argv, capture_output=True, text=True, input=stdin, check=False)
    if check and res.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {res.stderr.strip()}")
    return res.stdout


@dataclass
class World:
    tag: str
    roles: list[str] = field(default_factory=list)
    listeners: list[socket.socket] = field(default_factory=list)

    def ns(self, role: str) -> str:
        return f"cntrace-ah{self.tag}-{role}"

    def path(self, role: str) -> str:
        return f"/run/netns/{self.ns(role)}"

    def add(self, *roles: str) -> None:
        for role in roles:
            sh("ip", "netns", "add", self.ns(role))
            self.roles.append(role)
            GUARD.own(self.path(role))
            self.ip(role, "link set lo up")
            for k in ("all", "default"):
                self.sysctl(role, f"net.ipv6.conf.{k}.disable_ipv6", 1)

    def ip(self, role: str, args: str) -> str:
        return sh("ip", "-n", self.ns(role), *args.split())

    def run(self, role: str, *argv: str, stdin: str | None = None, check: bool = True) -> str:
        return sh(*nsenter.command_in(self.path(role), list(argv)), stdin=stdin, check=check)

    def sysctl(self, role: str, key: str, value: object) -> None:
        self.run(role, "sysctl", "-qw", f"{key}={value}")

    def veth(self, a: str, a_if: str, b: str, b_if: str) -> None:
        """A veth made inside ``a`` with its peer put straight into ``b`` (no trip via root)."""
        self.ip(a, f"link add {a_if} type veth peer name {b_if} netns {self.ns(b)}")
        self.ip(a, f"link set {a_if} up")
        self.ip(b, f"link set {b_if} up")

    def listen(self, role: str, *ports: int, addr: str = "0.0.0.0") -> None:
        for port in ports:
            s = nsenter.socket_in(self.path(role), socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((addr, port))
            s.listen(16)
            self.listeners.append(s)

    def connect(self, role: str, dst: str, port: int, timeout: float = 0.6) -> str:
        """A real TCP connection from ``role``: delivered | refused | unreachable | timeout."""
        GUARD.check(dst)
        s = nsenter.socket_in(self.path(role), socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(timeout)
        try:
            s.connect((dst, port))
        except TimeoutError:
            return "timeout"
        except OSError as exc:
            if exc.errno == errno.ECONNREFUSED:
                return "refused"
            if exc.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH):
                return "unreachable"
            return f"error {exc.errno}"
        finally:
            s.close()
        return "delivered"

    def pair(self, a: str, b: str, *ports: int) -> None:
        """a a0 ==veth== b0 b, /24s, b listening on ``ports``: the two-namespace world of the
        tests that put rules in b and send from a."""
        self.add("a", "b")
        self.veth("a", "a0", "b", "b0")
        self.ip("a", f"addr add {a}/24 dev a0")
        self.ip("b", f"addr add {b}/24 dev b0")
        self.listen("b", *ports)

    def router(self, cli: str, up: str, dn: str, srv: str) -> None:
        """cli c0 ==veth== up0 rtr dn0 ==veth== s0 srv, /24s, rtr forwarding, default routes
        via rtr: the router chain several tests put rules in."""
        self.add("cli", "rtr", "srv")
        self.veth("rtr", "up0", "cli", "c0")
        self.veth("rtr", "dn0", "srv", "s0")
        self.ip("cli", f"addr add {cli}/24 dev c0")
        self.ip("rtr", f"addr add {up}/24 dev up0")
        self.ip("rtr", f"addr add {dn}/24 dev dn0")
        self.ip("srv", f"addr add {srv}/24 dev s0")
        self.ip("cli", f"route add default via {up}")
        self.ip("srv", f"route add default via {dn}")
        self.sysctl("rtr", "net.ipv4.ip_forward", 1)

    def down(self) -> None:
        for s in self.listeners:
            s.close()
        self.listeners.clear()
        for role in self.roles:
            subprocess.run(["ip", "netns", "del", self.ns(role)], capture_output=True, check=False)
            GUARD.disown(self.path(role))
        self.roles.clear()


def new_world(suffix: str) -> World:
    return World(f"{os.getpid() % 100000}{suffix}")
