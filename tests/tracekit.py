"""A small routed topology for live-tracing tests, in namespaces of its own (cntrace-tr-*).

    cli (10.77.1.2) --trc0/trr0-- rtr --trr1/trs0-- srv (203.0.113.2)

rtr forwards with iptables-nft: MASQUERADE out of trr1 (srv has no route back to 10.77.1.0/24,
so replies only come back through NAT) and DNAT 10.77.1.1:8080 -> 203.0.113.2:80. srv listens
on TCP 80 (the kernel answers SYNs, no accept needed) and runs a UDP echo on 53; TCP 82 and
UDP 54 are closed.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

from safety import GUARD

from cntrace.sources import nsenter
from cntrace.trace.events import TraceTarget

CLI_IP, RTR_IN, RTR_OUT, SRV_IP = "10.77.1.2", "10.77.1.1", "203.0.113.1", "203.0.113.2"
CLI_IP6, RTR_IN6, RTR_OUT6, SRV_IP6 = (
    "2001:db8:1::2",
    "2001:db8:1::1",
    "2001:db8:2::1",
    "2001:db8:2::2",
)


def sh(*args: str, ns: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    cmd = ["nsenter", f"--net=/run/netns/{ns}", *args] if ns else list(args)
    res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if check and res.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {res.stderr.strip()}")
    return res


@dataclass
class Topo:
    tag: str
    stop: threading.Event = field(default_factory=threading.Event)
    socks: list[socket.socket] = field(default_factory=list)

    def ns(self, role: str) -> str:
        return f"cntrace-tr-{self.tag}-{role}"

    def path(self, role: str) -> str:
        return f"/run/netns/{self.ns(role)}"

    def target(self, role: str, ifname: str, hop: int | None = None) -> TraceTarget:
        path = self.path(role)
        with nsenter.entered(path):
            idx = socket.if_nametoindex(ifname)
        return TraceTarget(path, nsenter.inode_of(path), ifname, idx, f"{role} {ifname}", None, hop)

    def targets(self) -> tuple[TraceTarget, ...]:
        return (
            self.target("cli", "trc0", 0),
            self.target("rtr", "trr0", 1),
            self.target("rtr", "trr1", 2),
            self.target("srv", "trs0", 3),
        )

    def nft_namespaces(self) -> tuple[str, ...]:
        return (self.path("cli"), self.path("rtr"), self.path("srv"))

    def iptables(self, *args: str) -> None:
        sh("iptables-nft", *args, ns=self.ns("rtr"))


def _udp_echo(topo: Topo, port: int) -> None:
    s = nsenter.socket_in(topo.path("srv"), socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((SRV_IP, port))
    s.settimeout(0.2)
    topo.socks.append(s)

    def loop() -> None:
        while not topo.stop.is_set():
            try:
                data, addr = s.recvfrom(2048)
            except (TimeoutError, OSError):
                continue
            with contextlib.suppress(OSError):
                s.sendto(data, addr)

    threading.Thread(target=loop, daemon=True).start()


@contextlib.contextmanager
def topology(tag: str | None = None) -> Iterator[Topo]:
    topo = Topo(tag or f"{os.getpid() % 100000}")
    roles = ("cli", "rtr", "srv")
    try:
        for r in roles:
            sh("ip", "netns", "add", topo.ns(r))
            sh("ip", "link", "set", "lo", "up", ns=topo.ns(r))
        c, r_, s = (topo.ns(x) for x in roles)
        sh(
            "ip",
            "link",
            "add",
            "trc0",
            "netns",
            c,
            "type",
            "veth",
            "peer",
            "name",
            "trr0",
            "netns",
            r_,
        )
        sh(
            "ip",
            "link",
            "add",
            "trr1",
            "netns",
            r_,
            "type",
            "veth",
            "peer",
            "name",
            "trs0",
            "netns",
            s,
        )
        sh("ip", "addr", "add", f"{CLI_IP}/24", "dev", "trc0", ns=c)
        sh("ip", "addr", "add", f"{RTR_IN}/24", "dev", "trr0", ns=r_)
        sh("ip", "addr", "add", f"{RTR_OUT}/24", "dev", "trr1", ns=r_)
        sh("ip", "addr", "add", f"{SRV_IP}/24", "dev", "trs0", ns=s)
        for ns_, dev in ((c, "trc0"), (r_, "trr0"), (r_, "trr1"), (s, "trs0")):
            # no duplicate address detection: a tentative link-local address would hold back
            # neighbour discovery (and the first IPv6 probe) for a second
            sh("sysctl", "-qw", f"net.ipv6.conf.{dev}.accept_dad=0", ns=ns_)
            sh("ip", "link", "set", dev, "up", ns=ns_)
        sh("ip", "route", "add", "default", "via", RTR_IN, ns=c)
        # IPv6, routed without NAT (nodad: usable at once)
        for ns_, dev, addr in (
            (c, "trc0", CLI_IP6),
            (r_, "trr0", RTR_IN6),
            (r_, "trr1", RTR_OUT6),
            (s, "trs0", SRV_IP6),
        ):
            sh("ip", "-6", "addr", "add", f"{addr}/64", "dev", dev, "nodad", ns=ns_)
        sh("ip", "-6", "route", "add", "default", "via", RTR_IN6, ns=c)
        sh("ip", "-6", "route", "add", "default", "via", RTR_OUT6, ns=s)
        sh("sysctl", "-qw", "net.ipv6.conf.all.forwarding=1", ns=r_)
        sh("sysctl", "-qw", "net.ipv4.ip_forward=1", ns=r_)
        sh(
            "iptables-nft",
            "-t",
            "nat",
            "-A",
            "POSTROUTING",
            "-o",
            "trr1",
            "-j",
            "MASQUERADE",
            ns=r_,
        )
        sh(
            "iptables-nft",
            "-t",
            "nat",
            "-A",
            "PREROUTING",
            "-i",
            "trr0",
            "-d",
            RTR_IN,
            "-p",
            "tcp",
            "--dport",
            "8080",
            "-j",
            "DNAT",
            "--to-destination",
            f"{SRV_IP}:80",
            ns=r_,
        )
        GUARD.own(*(topo.path(x) for x in roles))
        listener = nsenter.socket_in(topo.path("srv"), socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((SRV_IP, 80))
        listener.listen(64)
        topo.socks.append(listener)
        listener6 = nsenter.socket_in(topo.path("srv"), socket.AF_INET6, socket.SOCK_STREAM)
        listener6.bind((SRV_IP6, 80))
        listener6.listen(64)
        topo.socks.append(listener6)
        _udp_echo(topo, 53)
        yield topo
    finally:
        topo.stop.set()
        for sock in topo.socks:
            sock.close()
        GUARD.disown(*(topo.path(x) for x in roles))
        for r in roles:
            sh("ip", "netns", "del", topo.ns(r), check=False)


# --------------------------------------------------------------------------- host state


def host_objects(topo: Topo) -> dict[str, list[str]]:
    """What sits on the topology's namespaces: qdiscs, tc filters, nft tables, per namespace."""
    out: dict[str, list[str]] = {}
    for role, devs in (("cli", ("trc0",)), ("rtr", ("trr0", "trr1")), ("srv", ("trs0",))):
        found: list[str] = []
        for dev in devs:
            q = sh("tc", "qdisc", "show", "dev", dev, ns=topo.ns(role)).stdout
            found += [
                f"{dev} qdisc {line.split()[1]}" for line in q.splitlines() if "clsact" in line
            ]
            for hook in ("ingress", "egress"):
                f = sh("tc", "filter", "show", "dev", dev, hook, ns=topo.ns(role), check=False)
                found += [f"{dev} {hook} {line.strip()}" for line in f.stdout.splitlines()]
        tables = sh("nft", "list", "tables", ns=topo.ns(role)).stdout
        found += [line.strip() for line in tables.splitlines() if line.strip()]
        out[role] = found
    return out


def cntrace_objects(topo: Topo) -> list[str]:
    """Only cntrace's objects (named cntrace) among host_objects."""
    return [
        f"{role}: {o}" for role, objs in host_objects(topo).items() for o in objs if "cntrace" in o
    ]


def filter_prog_ids(topo: Topo) -> set[int]:
    """The BPF program ids held by cntrace's tc filters in the topology."""
    ids: set[int] = set()
    for role, devs in (("cli", ("trc0",)), ("rtr", ("trr0", "trr1")), ("srv", ("trs0",))):
        for dev in devs:
            for hook in ("ingress", "egress"):
                f = sh("tc", "filter", "show", "dev", dev, hook, ns=topo.ns(role), check=False)
                for line in f.stdout.splitlines():
                    if "cntrace:" in line and " id " in line:
                        ids.add(int(line.split(" id ")[1].split()[0]))
    return ids


# --------------------------------------------------------------------------- a driver process


def plan_doc(topo: Topo, dst: str, port: int | None, proto: str = "tcp", **extra: object) -> str:
    """A JSON description of a trace for ``python tests/tracekit.py MODE JSON``."""
    import json

    return json.dumps(
        {
            "source": topo.path("cli"),
            "proto": proto,
            "dst": dst,
            "port": port,
            "targets": [[t.netns_path, t.ifname] for t in topo.targets()],
            "nft": list(topo.nft_namespaces()),
            **extra,
        }
    )


def _main(argv: list[str]) -> int:
    """Run a trace in this process: ``hold`` arms and waits to be signalled or killed;
    ``trace`` runs one trace and prints a JSON summary."""
    import json
    import signal
    import time

    from cntrace.cli import _terminate
    from cntrace.model import Packet
    from cntrace.trace.events import TracePlan
    from cntrace.trace.session import TraceEngine, targets_in

    mode, doc = argv[0], json.loads(argv[1])
    signal.signal(signal.SIGTERM, _terminate)
    targets = tuple(t for p, ifn in doc["targets"] for t in targets_in(p, (ifn,)))
    plan = TracePlan(
        doc["source"],
        Packet(doc["proto"], "", doc["dst"], None, doc["port"]),
        targets,
        tuple(doc["nft"]),
        backend=doc.get("backend", "ebpf"),
        ready_file=doc.get("ready"),
        timeout_s=doc.get("timeout", 1.0),
    )
    engine = TraceEngine(plan.backend)
    try:
        if mode == "hold":
            with engine.armed(plan):
                while True:
                    time.sleep(0.05)
        result = engine.trace(plan)
        assert result.probe is not None
        print(
            json.dumps(
                {
                    "sport": result.probe.sport,
                    "marker": result.marker,
                    "outcome": result.outcome()[0],
                    "timings": result.timings,
                    "backend": result.backend,
                    "sightings": [
                        [s.target.ifname, s.direction, s.packet.sport, s.packet.dport]
                        for s in result.sightings
                    ],
                }
            )
        )
    except KeyboardInterrupt:
        return 130
    finally:
        engine.close()
    return 0


if __name__ == "__main__":
    import sys

    raise SystemExit(_main(sys.argv[1:]))
