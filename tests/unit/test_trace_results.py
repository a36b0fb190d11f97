"""TraceResult: the outcome read from what was seen, and the pcapng rendering of it."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether
from scapy.utils import PcapNgReader

from cntrace.model import Packet
from cntrace.trace import pcapng
from cntrace.trace.events import Drop, Sighting, TraceResult, TraceTarget, Unwatched

CLI = TraceTarget("/run/netns/c", 11, "eth0", 2, "web eth0", "web", 0)
RTR = TraceTarget("/run/netns/r", 12, "veth1", 7, "host veth1", None, 1)
SYN = Packet("tcp", "10.0.0.2", "10.0.1.5", 40000, 80)
SYNACK = SYN.reply()


def sight(
    t: TraceTarget,
    d: str,
    ns: int,
    p: Packet,
    reply: bool = False,
    flags: str = "S",
    frame: bytes = b"",
    l3: int = 14,
    match: str = "marker",
) -> Sighting:
    return Sighting(
        t,
        d,
        ns,
        p,
        reply,
        flags,
        frame_hex=frame.hex(),
        l3_offset=l3,  # type: ignore[arg-type]
        match=match,
        length=len(frame) - l3 if frame else 0,
    )


def result(
    sightings: list[Sighting], drops: list[Drop] = (), unwatched: tuple[Unwatched, ...] = ()
) -> TraceResult:  # type: ignore[assignment]
    return TraceResult(
        tuple(sightings),
        tuple(drops),
        (),
        0,
        unwatched,
        {},
        "ebpf",
        t0_realtime_ns=1_700_000_000_000_000_000,
    )


def test_delivered_when_a_reply_comes_back() -> None:
    r = result(
        [
            sight(CLI, "egress", 10, SYN),
            sight(RTR, "ingress", 20, SYN),
            sight(RTR, "egress", 30, SYNACK, True, "SA", match="ack"),
            sight(CLI, "ingress", 40, SYNACK, True, "SA", match="ack"),
        ]
    )
    assert r.outcome() == ("delivered", "reply from 10.0.1.5 seen at web eth0")


def test_refused_by_rst() -> None:
    r = result([sight(CLI, "egress", 10, SYN), sight(CLI, "ingress", 40, SYNACK, True, "RA")])
    assert r.outcome()[0] == "refused"


def test_dropped_with_the_kernels_reason() -> None:
    d = Drop("NETFILTER_DROP", "nf_hook_slow+0x9a", 25, 7, 12, RTR, SYN)
    r = result([sight(CLI, "egress", 10, SYN), sight(RTR, "ingress", 20, SYN)], [d])
    assert r.outcome() == ("dropped", "NETFILTER_DROP at nf_hook_slow+0x9a (host veth1)")
    assert r.request_drop is d


def test_a_reply_dropped_at_the_source_does_not_hide_delivery() -> None:
    d = Drop("NO_SOCKET", "tcp_v4_rcv", 45, 2, 11, CLI, SYNACK, is_reply=True)
    r = result([sight(CLI, "egress", 10, SYN), sight(CLI, "ingress", 40, SYNACK, True, "SA")], [d])
    assert r.outcome()[0] == "delivered"


def test_timeout_names_the_last_hop_seen() -> None:
    r = result([sight(CLI, "egress", 10, SYN), sight(RTR, "ingress", 20, SYN)])
    assert r.outcome() == ("timeout", "last seen at host veth1 ingress")
    assert result([]).outcome() == ("timeout", "the probe was not seen anywhere")


def test_not_seen_differs_from_could_not_watch() -> None:
    r = result(
        [],
        unwatched=(
            Unwatched("tc ingress host veth1", "no clsact", RTR),
            Unwatched("tc egress web eth0", "pref 1 taken", CLI, partial=True),
        ),
    )
    assert not r.watched(RTR)
    assert r.watched(CLI)  # watched, with a caveat


def _frame(p: Packet, flags: str) -> bytes:
    return bytes(
        Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
        / IP(src=p.src, dst=p.dst)
        / TCP(sport=p.sport, dport=p.dport, flags=flags)
    )


def test_pcapng_round_trip(tmp_path: Path) -> None:
    l3 = bytes(IP(src=SYN.src, dst=SYN.dst) / TCP(sport=40000, dport=80, flags="S"))
    r = result(
        [
            sight(CLI, "egress", 1000, SYN, frame=_frame(SYN, "S")),
            sight(RTR, "ingress", 2000, SYN, frame=l3, l3=0),
            sight(CLI, "ingress", 9000, SYNACK, True, "SA", frame=_frame(SYNACK, "SA")),
        ],
        [Drop("NETFILTER_DROP", "nf_hook_slow", 3000, 7, 12, RTR, SYN, frame_hex=l3.hex())],
    )
    out = tmp_path / "t.pcapng"
    assert pcapng.write(out, r) == 4
    pkts = list(PcapNgReader(str(out)))
    assert len(pkts) == 4 and all(p.haslayer(Ether) and p.haslayer(TCP) for p in pkts)
    assert [p.sniffed_on for p in pkts] == ["web eth0", "host veth1", "web eth0", "kernel drops"]
    c = [p.comments[0].decode() for p in pkts]
    assert c[0].startswith("hop 0 web eth0 egress; netns 11 (/run/netns/c); container web;")
    assert "link-layer header not captured" in c[1]
    assert c[3] == "drop of the probe: NETFILTER_DROP at nf_hook_slow (host veth1)"
    assert float(pkts[0].time) == pytest.approx(1_700_000_000.000001)
    assert [p.direction for p in pkts[:3]] == [2, 1, 1]
    if shutil.which("tcpdump"):
        res = subprocess.run(
            ["tcpdump", "-nn", "-r", str(out)], capture_output=True, text=True, check=False
        )
        assert res.returncode == 0 and len(res.stdout.splitlines()) == 4, res.stderr
