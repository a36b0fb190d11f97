"""A routed topology for comparing the netfilter evaluator with the kernel (cntrace-nf-k*).

    cli  198.51.100.10, 203.0.113.10 --nfc0 | nfup0 198.51.100.2/24 --
                                   rtr (forwards; the rulesets under test are loaded here)
    srv  172.17.0.2/16  --nfs0 | docker0 172.17.0.1/16 --
    srv2 172.31.1.2/24  --nfs0 | br-934555f6df94 172.31.1.1/24 --

The router's interfaces carry the names of the recorded Docker ruleset (docker0, a br-* bridge),
so that ruleset loads and matches unchanged; they exist only inside these namespaces. IPv6 is
off in all of them (router solicitations would otherwise hit inet chains and move counters).
Every namespace binds UDP listeners on the test ports; a case sends one datagram (no reply, so
exactly one packet crosses the router) and reads back the rule counters and who received what.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from harness import FIXTURES
from safety import GUARD

from cntrace import netfilter
from cntrace.model import Packet, Ruleset
from cntrace.netfilter import NetnsFacts
from cntrace.sources import nsenter

PORTS = (53, 80, 443, 5000, 5003, 5005, 8080, 9000)
CLI, CLI2, RTR_UP, RTR_DK, RTR_BR, SRV, SRV2 = (
    "198.51.100.10",
    "203.0.113.10",
    "198.51.100.2",
    "172.17.0.1",
    "172.31.1.1",
    "172.17.0.2",
    "172.31.1.2",
)
DOCKER_SAVE = (FIXTURES / "rulesets" / "docker-iptables-nft.save").read_text()
# The bridge Docker made for network nfnet1 (172.31.1.0/24) when the fixture was recorded.
BRIDGE = re.findall(r"-s 172\.31\.1\.0/24 ! -o (br-[0-9a-f]+) -j MASQUERADE", DOCKER_SAVE)[0]
IP_PKTINFO = 8


def sh(*args: str, ns: str | None = None, check: bool = True, stdin: str | None = None) -> str:
    cmd = ["nsenter", f"--net=/run/netns/{ns}", *args] if ns else list(args)
    res = subprocess.run(cmd, capture_output=True, text=True, input=stdin, check=False)
    if check and res.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {res.stderr.strip()}")
    return res.stdout


@dataclass(frozen=True)
class Flow:
    """A datagram to send: from which namespace and address, to where, and its walk kind."""

    name: str
    src_ns: str  # cli | srv | srv2 | rtr
    src: str
    dst: str
    kind: str
    iif: str | None
    oif: str | None


FLOWS = (
    Flow("cli->rtr", "cli", CLI, RTR_UP, "input", "nfup0", None),
    Flow("cli->rtr-docker0-addr", "cli", CLI, RTR_DK, "input", "nfup0", None),
    Flow("cli->srv", "cli", CLI, SRV, "forward", "nfup0", "docker0"),
    Flow("cli2->srv", "cli", CLI2, SRV, "forward", "nfup0", "docker0"),
    Flow("cli->srv2", "cli", CLI, SRV2, "forward", "nfup0", BRIDGE),
    Flow("srv->cli2", "srv", SRV, CLI2, "forward", "docker0", "nfup0"),
    Flow("srv->srv2", "srv", SRV, SRV2, "forward", "docker0", BRIDGE),
    Flow("rtr->cli", "rtr", RTR_UP, CLI, "output", None, "nfup0"),
    Flow("rtr->srv", "rtr", RTR_DK, SRV, "output", None, "docker0"),
    Flow("rtr->rtr", "rtr", RTR_UP, RTR_DK, "local-output", None, None),
)


@dataclass
class Received:
    ns: str
    src: str
    sport: int
    dst: str
    dport: int


@dataclass
class Lab:
    tag: str
    socks: dict[str, list[socket.socket]] = field(default_factory=dict)
    owner: dict[str, str] = field(default_factory=dict)  # address -> role

    def ns(self, role: str) -> str:
        return f"cntrace-nf-k{self.tag}-{role}"

    def path(self, role: str) -> str:
        return f"/run/netns/{self.ns(role)}"

    # ------------------------------------------------------------------ lifecycle

    def up(self) -> None:
        self.down()
        for role in ("cli", "rtr", "srv", "srv2"):
            sh("ip", "netns", "add", self.ns(role))
            GUARD.own(self.path(role))
            for k in ("all", "default"):
                sh("sysctl", "-qw", f"net.ipv6.conf.{k}.disable_ipv6=1", ns=self.ns(role))
                sh("sysctl", "-qw", f"net.ipv4.conf.{k}.rp_filter=0", ns=self.ns(role))
            sh("ip", "link", "set", "lo", "up", ns=self.ns(role))
        r = self.ns("rtr")
        self._veth("cli", "nfc0", "nfup0")
        self._veth("srv", "nfs0", "docker0")
        self._veth("srv2", "nfs0", BRIDGE)
        self._addr("cli", "nfc0", f"{CLI}/24", f"{CLI2}/24")
        self._addr("rtr", "nfup0", f"{RTR_UP}/24")
        self._addr("rtr", "docker0", f"{RTR_DK}/16")
        self._addr("rtr", BRIDGE, f"{RTR_BR}/24")
        self._addr("srv", "nfs0", f"{SRV}/16")
        self._addr("srv2", "nfs0", f"{SRV2}/24")
        sh("ip", "route", "add", "default", "via", RTR_UP, ns=self.ns("cli"))
        sh("ip", "route", "add", "default", "via", RTR_DK, ns=self.ns("srv"))
        sh("ip", "route", "add", "default", "via", RTR_BR, ns=self.ns("srv2"))
        sh("ip", "route", "add", "203.0.113.0/24", "via", CLI, ns=r)
        sh("sysctl", "-qw", "net.ipv4.ip_forward=1", ns=r)
        sh("sysctl", "-qw", "net.ipv4.conf.all.send_redirects=0", ns=r)
        for dev in ("nfup0", "docker0", BRIDGE):
            sh("sysctl", "-qw", f"net.ipv4.conf.{dev}.send_redirects=0", ns=r)
        for role, addrs in (
            ("cli", (CLI, CLI2)),
            ("rtr", (RTR_UP, RTR_DK, RTR_BR, "127.0.0.1")),
            ("srv", (SRV,)),
            ("srv2", (SRV2,)),
        ):
            for a in addrs:
                self.owner.setdefault(a, role)
            self.socks[role] = []
            for port in PORTS:
                s = nsenter.socket_in(self.path(role), socket.AF_INET, socket.SOCK_DGRAM)
                s.setsockopt(socket.SOL_IP, IP_PKTINFO, 1)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind(("0.0.0.0", port))
                s.setblocking(False)
                self.socks[role].append(s)
        GUARD.allowed()

    def _veth(self, role: str, inner: str, outer: str) -> None:
        sh(
            "ip", "-n", self.ns("rtr"), "link", "add", outer, "type", "veth", "peer", "name",
            inner, "netns", self.ns(role),
        )  # fmt: skip
        sh("ip", "link", "set", outer, "up", ns=self.ns("rtr"))
        sh("ip", "link", "set", inner, "up", ns=self.ns(role))

    def _addr(self, role: str, dev: str, *cidrs: str) -> None:
        for c in cidrs:
            sh("ip", "addr", "add", c, "dev", dev, ns=self.ns(role))

    def down(self) -> None:
        for socks in self.socks.values():
            for s in socks:
                s.close()
        self.socks.clear()
        for role in ("cli", "rtr", "srv", "srv2"):
            subprocess.run(["ip", "netns", "del", self.ns(role)], capture_output=True, check=False)
            GUARD.disown(self.path(role))

    # ------------------------------------------------------------------ rulesets

    def reset(self) -> None:
        """No rules in any back end of the router, and no connections."""
        r = self.ns("rtr")
        sh("nft", "flush", "ruleset", ns=r)
        if sh("cat", "/proc/net/ip_tables_names", ns=r).strip():
            empty = "".join(
                f"*{t}\n" + "".join(f":{c} ACCEPT [0:0]\n" for c in chains) + "COMMIT\n"
                for t, chains in (
                    ("filter", ("INPUT", "FORWARD", "OUTPUT")),
                    ("nat", ("PREROUTING", "INPUT", "OUTPUT", "POSTROUTING")),
                    ("mangle", ("PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING")),
                    ("raw", ("PREROUTING", "OUTPUT")),
                )
            )
            sh("iptables-legacy-restore", ns=r, stdin=empty)
        sh("conntrack", "-F", ns=r, check=False)

    def load(self, *, iptables_nft: str = "", iptables_legacy: str = "", nft: str = "") -> None:
        r = self.ns("rtr")
        self.reset()
        if iptables_legacy:
            sh("iptables-legacy-restore", ns=r, stdin=iptables_legacy)
        if iptables_nft:
            sh("iptables-nft-restore", ns=r, stdin=iptables_nft)
        if nft:
            sh("nft", "-f", "-", ns=r, stdin=nft)

    def dump(self) -> Ruleset:
        """The router's rulesets as the tools print them, with counters."""
        r = self.ns("rtr")
        legacy = sh("iptables-legacy-save", "-c", ns=r) if self._has_legacy() else None
        text = sh("iptables-nft-save", "-c", ns=r)
        has_nft_tables = any(ln.startswith("*") for ln in text.splitlines())
        return Ruleset(
            iptables_legacy=legacy or None,
            iptables_nft=text if has_nft_tables else None,
            nft_json=sh("nft", "-j", "list", "ruleset", ns=r),
        )

    def _has_legacy(self) -> bool:
        return bool(sh("cat", "/proc/net/ip_tables_names", ns=self.ns("rtr")).strip())

    # ------------------------------------------------------------------ facts and routing

    def facts(self) -> NetnsFacts:
        links = json.loads(sh("ip", "-j", "addr", ns=self.ns("rtr")))
        addrs = {ln["ifname"]: tuple(a["local"] for a in ln.get("addr_info", [])) for ln in links}
        nets = {
            ln["ifname"]: tuple(f"{a['local']}/{a['prefixlen']}" for a in ln.get("addr_info", []))
            for ln in links
        }
        local = frozenset(a for v in addrs.values() for a in v)
        return NetnsFacts(local, addrs, nets)

    def router(self) -> Callable[[Packet], str | None]:
        """Longest-prefix match on the router's main table."""
        routes = json.loads(sh("ip", "-j", "route", ns=self.ns("rtr")))
        table: list[tuple[int, int, str]] = []
        for rt in routes:
            dst = rt["dst"]
            net, _, plen = ("0.0.0.0/0" if dst == "default" else dst).partition("/")
            n = int(plen) if plen else 32
            table.append((n, _ip(net) >> (32 - n) if n else 0, rt["dev"]))
        table.sort(reverse=True)

        def route(p: Packet) -> str | None:
            v = _ip(p.dst)
            for n, net, dev in table:
                if (v >> (32 - n) if n else 0) == net:
                    return dev
            return None

        return route

    # ------------------------------------------------------------------ sending

    def send(self, flow: Flow, sport: int, dport: int, payload: bytes) -> list[Received]:
        """Send one datagram and collect what every listener got within a short wait."""
        GUARD.check(flow.dst)
        s = nsenter.socket_in(self.path(flow.src_ns), socket.AF_INET, socket.SOCK_DGRAM)
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((flow.src, sport))
            try:
                s.sendto(payload, (flow.dst, dport))
            except PermissionError:
                return []  # dropped by this host's own OUTPUT/POSTROUTING rules
        finally:
            s.close()
        got: list[Received] = []
        deadline = time.monotonic() + 0.25
        while time.monotonic() < deadline:
            for role, socks in self.socks.items():
                for sock in socks:
                    while True:
                        try:
                            data, anc, _flags, addr = sock.recvmsg(2048, 64)
                        except BlockingIOError:
                            break
                        if data != payload:
                            continue
                        dst = "?"
                        for level, typ, cdata in anc:
                            if level == socket.SOL_IP and typ == IP_PKTINFO:
                                dst = socket.inet_ntoa(cdata[8:12])
                        got.append(Received(role, addr[0], addr[1], dst, sock.getsockname()[1]))
            if got:
                break
            time.sleep(0.005)
        return got


def _ip(text: str) -> int:
    a, b, c, d = (int(x) for x in text.split("."))
    return (a << 24) | (b << 16) | (c << 8) | d


def counted(nf: netfilter.Netfilter) -> set[tuple[str, ...]]:
    """Rules (and iptables base-chain policies) whose packet counter is non-zero."""
    out: set[tuple[str, ...]] = set()
    for chain in nf.chains():
        if chain.counters and chain.counters[0] > 0:
            out.add((chain.backend, chain.family, chain.table, chain.name, "policy"))
        for rule in chain.rules:
            if rule.counters and rule.counters[0] > 0:
                out.add((rule.backend, rule.family, rule.table, rule.chain, str(rule.position)))
    return out


def countable(nf: netfilter.Netfilter) -> set[tuple[str, ...]]:
    """Rules the kernel keeps a counter for (all iptables rules; nft rules with `counter`)."""
    out: set[tuple[str, ...]] = set()
    for chain in nf.chains():
        if chain.counters is not None:
            out.add((chain.backend, chain.family, chain.table, chain.name, "policy"))
        for rule in chain.rules:
            if rule.counters is not None:
                out.add((rule.backend, rule.family, rule.table, rule.chain, str(rule.position)))
    return out
