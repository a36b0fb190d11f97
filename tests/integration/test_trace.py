"""Live tracing on real namespaces: a marked probe followed hop by hop through NAT, its drop with
the kernel's reason and the rule that dropped it, RST and ICMP replies, both back ends, and the
guarantee that nothing of cntrace's stays on the host (exit, SIGTERM, Ctrl-C, SIGKILL + cleanup).

Topology (tests/tracekit.py): cli -> rtr (iptables-nft MASQUERADE + DNAT) -> srv.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from clirun import finish, run_ok, start
from conftest import require_root
from tracekit import (
    CLI_IP,
    CLI_IP6,
    RTR_IN,
    RTR_OUT,
    SRV_IP,
    SRV_IP6,
    Topo,
    cntrace_objects,
    filter_prog_ids,
    host_objects,
    plan_doc,
    sh,
    topology,
)

from cntrace.model import Packet
from cntrace.trace import bpfsys, pcapng, state
from cntrace.trace import cleanup as cleanup_mod
from cntrace.trace.events import TracePlan, TraceResult
from cntrace.trace.session import TraceEngine, run_trace

REPO = Path(__file__).resolve().parents[2]
TRACEKIT = REPO / "tests" / "tracekit.py"
BACKENDS = ("ebpf", "capture")


@pytest.fixture(scope="module")
def topo() -> Iterator[Topo]:
    require_root()
    with topology() as t:
        yield t


_SPAWNED: list[subprocess.Popen[str]] = []


@pytest.fixture(autouse=True)
def _reap() -> Iterator[None]:
    """No driver a test started outlives it: one still running (a test failed while it was
    armed) is killed and what it left is removed from its ledger, so the failure stays in its
    own test instead of failing every later one on its filters."""
    yield
    killed = False
    while _SPAWNED:
        proc = _SPAWNED.pop()
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
            killed = True
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
    if killed:
        cleanup_mod.from_ledgers(cleanup_mod.CleanupReport())


def _reaped(proc: subprocess.Popen[str]) -> subprocess.Popen[str]:
    _SPAWNED.append(proc)
    return proc


def _spawn(*args: str) -> subprocess.Popen[str]:
    """A driver process (``tracekit.py hold|trace``), reaped after the test."""
    cmd = [sys.executable, str(TRACEKIT), *args]
    return _reaped(
        subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    )


def trace(topo: Topo, packet: Packet, backend: str = "ebpf", **kw: object) -> TraceResult:
    plan = TracePlan(
        topo.path("cli"), packet, topo.targets(), topo.nft_namespaces(), backend=backend, **kw
    )  # type: ignore[arg-type]
    result = run_trace(plan)
    assert result.backend == backend
    assert not cntrace_objects(topo), "a trace left objects behind"
    return result


def seen(r: TraceResult, ifname: str, direction: str, reply: bool = False) -> list[Packet]:
    return [
        s.packet
        for s in r.sightings
        if s.target.ifname == ifname and s.direction == direction and s.is_reply == reply
    ]


def _drain(proc: subprocess.Popen[str], timeout: float = 10, what: str = "") -> str:
    """The driver's output once it has exited; one still running after ``timeout`` is killed
    and the test fails saying so (``what``: since when it should have been exiting)."""
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate(timeout=10)
        raise AssertionError(
            f"driver {proc.pid} still running {timeout} s {what or 'later'}; killed: {out}{err}"
        ) from None
    return out + err


def _wait_for(path: Path, proc: subprocess.Popen[str], timeout: float = 20) -> None:
    end = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            raise AssertionError(f"driver exited early: {_drain(proc)}")
        if time.monotonic() > end:
            proc.kill()
            raise AssertionError(f"not armed after {timeout} s: {_drain(proc)}")
        time.sleep(0.05)


# --------------------------------------------------------------------------- requirements


def test_requirements_are_probed_on_this_kernel(topo: Topo) -> None:
    with TraceEngine() as engine:
        req = {r.collector: r for r in engine.requirements()}
    assert req["tc"].ok, req["tc"].why
    assert req["kfree_skb"].ok and "reason" in req["kfree_skb"].why
    assert req["nftrace"].ok, req["nftrace"].why
    assert req["capture"].ok
    legacy = req["iptables-legacy TRACE"]
    assert not legacy.ok and "nf_log_all_netns" in legacy.why


# --------------------------------------------------------------------------- healthy paths


@pytest.mark.parametrize("backend", BACKENDS)
def test_tcp_through_dnat_and_masquerade(topo: Topo, backend: str) -> None:
    r = trace(topo, Packet("tcp", "", RTR_IN, None, 8080), backend)
    sport = r.probe.sport if r.probe else None
    # the probe as it leaves the client and reaches the router: not rewritten yet
    for ifname, direction in (("trc0", "egress"), ("trr0", "ingress")):
        (p,) = seen(r, ifname, direction)
        assert (p.src, p.dst, p.sport, p.dport) == (CLI_IP, RTR_IN, sport, 8080)
    # leaving the router: DNAT and MASQUERADE both show at this hop
    for ifname, direction in (("trr1", "egress"), ("trs0", "ingress")):
        (p,) = seen(r, ifname, direction)
        assert (p.src, p.dst, p.dport) == (RTR_OUT, SRV_IP, 80)
    # the SYN-ACK, un-NATed on its way back
    (back,) = seen(r, "trs0", "egress", reply=True)
    assert (back.src, back.sport, back.dst) == (SRV_IP, 80, RTR_OUT)
    (home,) = seen(r, "trc0", "ingress", reply=True)
    assert (home.src, home.sport, home.dst, home.dport) == (RTR_IN, 8080, CLI_IP, sport)
    assert [s.tcp_flags for s in r.sightings if s.is_reply] == ["SA"] * 4
    assert r.outcome()[0] == "delivered" and r.ended == "reply"
    assert r.lost_events == 0
    # nftables tracing names the NAT rules (in iptables' own syntax), in both back ends
    texts = {(e.chain, e.rule_text) for e in r.rule_events if e.rule_text}
    assert any(c == "PREROUTING" and "DNAT" in (t or "") for c, t in texts), texts
    assert any(c == "POSTROUTING" and "MASQUERADE" in (t or "") for c, t in texts), texts
    # times grow along the path
    order = [(s.target.ifname, s.direction) for s in r.sightings if not s.is_reply]
    assert order == [
        ("trc0", "egress"),
        ("trr0", "ingress"),
        ("trr1", "egress"),
        ("trs0", "ingress"),
    ]


@pytest.mark.parametrize("backend", BACKENDS)
def test_closed_port_rst_is_reported(topo: Topo, backend: str) -> None:
    r = trace(topo, Packet("tcp", "", SRV_IP, None, 82), backend)
    assert r.outcome()[0] == "refused", r.outcome()
    (rst,) = seen(r, "trc0", "ingress", reply=True)
    assert rst.src == SRV_IP and rst.sport == 82
    assert {s.tcp_flags for s in r.sightings if s.is_reply} == {"RA"}
    if backend == "ebpf":
        d = r.request_drop
        assert d is not None and d.reason == "NO_SOCKET" and d.target is not None
        assert d.target.ifname == "trs0"
        assert d.location and d.location.startswith("tcp_v4_rcv")
    else:
        assert not r.drops and any(u.what == "drops" for u in r.unwatched)


@pytest.mark.parametrize("backend", BACKENDS)
def test_icmp_echo(topo: Topo, backend: str) -> None:
    r = trace(topo, Packet("icmp", "", SRV_IP), backend)
    assert r.outcome()[0] == "delivered"
    (req,) = seen(r, "trs0", "ingress")
    assert req.proto == "icmp" and req.icmp_type == 8 and req.src == RTR_OUT
    (rep,) = seen(r, "trc0", "ingress", reply=True)
    assert rep.icmp_type == 0 and rep.src == SRV_IP and rep.dst == CLI_IP


@pytest.mark.parametrize("backend", BACKENDS)
def test_udp_reply_is_matched(topo: Topo, backend: str) -> None:
    r = trace(topo, Packet("udp", "", SRV_IP, None, 53), backend)
    assert r.outcome()[0] == "delivered", r.outcome()
    (rep,) = seen(r, "trr0", "egress", reply=True)
    assert (rep.src, rep.sport, rep.dst) == (SRV_IP, 53, CLI_IP)
    # the client's own answer to the (socket-less) reply is not mistaken for the probe's
    assert not [s for s in r.sightings if s.packet.proto == "icmp"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_udp_closed_port_icmp_error_quotes_the_probe(topo: Topo, backend: str) -> None:
    r = trace(topo, Packet("udp", "", SRV_IP, None, 54), backend)
    status, detail = r.outcome()
    assert status == "refused" and "port unreachable" in detail, detail  # UDP's refusal
    # the source's connected socket heard it too (IP_RECVERR): ECONNREFUSED, from the server
    (heard,) = [e for e in r.source if e.kind == "icmp-error"]
    assert (heard.errno, heard.icmp_type, heard.icmp_code, heard.offender) == (
        "ECONNREFUSED",
        3,
        3,
        SRV_IP,
    )
    (err,) = seen(r, "trc0", "ingress", reply=True)
    assert err.proto == "icmp" and err.icmp_type == 3 and err.src == SRV_IP
    assert [s.match for s in r.sightings if s.is_reply] == ["icmp-quote"] * 4


@pytest.mark.parametrize("backend", BACKENDS)
def test_ipv6_tcp_and_icmp(topo: Topo, backend: str) -> None:
    r = trace(topo, Packet("tcp", "", SRV_IP6, None, 80, family=6), backend)
    assert r.outcome()[0] == "delivered", r.outcome()
    (p,) = seen(r, "trs0", "ingress")
    assert (p.family, p.src, p.dst, p.dport) == (6, CLI_IP6, SRV_IP6, 80)
    assert len(r.sightings) == 8
    e = trace(topo, Packet("icmp", "", SRV_IP6, family=6), backend)
    assert e.outcome()[0] == "delivered"
    (rep,) = seen(e, "trc0", "ingress", reply=True)
    assert rep.icmp_type == 129 and rep.src == SRV_IP6


# --------------------------------------------------------------------------- a netfilter drop


@pytest.mark.parametrize("backend", BACKENDS)
def test_netfilter_drop_with_reason_and_rule(topo: Topo, backend: str) -> None:
    rule = ("FORWARD", "-d", SRV_IP, "-p", "tcp", "--dport", "80", "-j", "DROP")
    topo.iptables("-I", *rule)
    try:
        r = trace(topo, Packet("tcp", "", RTR_IN, None, 8080), backend, timeout_s=0.6)
    finally:
        topo.iptables("-D", *rule)
    assert seen(r, "trr0", "ingress"), "the probe reached the router"
    assert not seen(r, "trr1", "egress") and not seen(r, "trs0", "ingress")
    assert not r.replies
    if backend == "ebpf":
        d = r.request_drop
        assert d is not None and d.reason == "NETFILTER_DROP", r.drops
        assert d.target is not None and d.target.ifname == "trr0"
        # the freeing function: nf_hook_slow, or nft_do_chain on kernels where nf_tables frees
        assert d.location and d.location.startswith(("nf_hook_slow", "nft_do_chain"))
        assert d.packet is not None and d.packet.dst == SRV_IP and d.packet.dport == 80
        assert r.outcome()[0] == "dropped" and r.ended == "drop"
    else:
        assert r.outcome() == ("timeout", "last seen at rtr trr0 ingress")
    drops = [e for e in r.rule_events if e.verdict == "drop"]
    assert drops, r.rule_events
    e = drops[0]
    assert (e.family, e.table, e.chain, e.kind) == ("ip", "filter", "FORWARD", "rule")
    assert e.rule_text == "-A FORWARD -d 203.0.113.2/32 -p tcp -m tcp --dport 80 -j DROP"
    assert e.handle is not None and e.position == 1
    assert e.packet is not None and e.packet.dst == SRV_IP  # after DNAT, as FORWARD saw it


# --------------------------------------------------------------------------- pcapng


def test_pcap_has_one_interface_per_hop_and_comments(topo: Topo, tmp_path: Path) -> None:
    r = trace(topo, Packet("tcp", "", RTR_IN, None, 8080))
    out = tmp_path / "trace.pcapng"
    n = pcapng.write(out, r)
    assert n == len(r.sightings) + len([d for d in r.drops if d.frame_hex])
    res = subprocess.run(
        ["tcpdump", "-nn", "-r", str(out)], capture_output=True, text=True, check=False
    )
    assert res.returncode == 0, res.stderr
    assert len(res.stdout.splitlines()) == n
    assert "203.0.113.1" in res.stdout and "Flags [S.]" in res.stdout
    from scapy.layers.l2 import Ether
    from scapy.utils import PcapNgReader

    pkts = list(PcapNgReader(str(out)))
    assert all(p.haslayer(Ether) for p in pkts)
    comments = [c.decode() for p in pkts for c in p.comments]
    assert any(c.startswith("hop 2 rtr trr1 egress") and "203.0.113.1" in c for c in comments)
    assert {p.sniffed_on for p in pkts} >= {"cli trc0", "rtr trr0", "rtr trr1", "srv trs0"}


# --------------------------------------------------------------------------- host left unchanged


def test_engine_reused_then_closed_leaves_nothing(topo: Topo) -> None:
    before = host_objects(topo)
    engine = TraceEngine("ebpf")
    try:
        plan = TracePlan(topo.path("cli"), Packet("tcp", "", SRV_IP, None, 80), topo.targets())
        first = engine.trace(plan)
        attached = cntrace_objects(topo)
        assert len([o for o in attached if "cntrace:" in o]) == 8  # 4 interfaces x 2 hooks
        second = engine.trace(plan)
        assert first.marker != second.marker
        assert first.outcome()[0] == second.outcome()[0] == "delivered"
        assert second.timings["compile"] == 0.0
    finally:
        engine.close()
    assert host_objects(topo) == before
    assert not state.ledger().path.exists()


def test_foreign_clsact_and_filters_are_never_disturbed(topo: Topo) -> None:
    rtr = topo.ns("rtr")
    sh("tc", "qdisc", "add", "dev", "trr0", "clsact", ns=rtr)
    foreign = ("pref", "1", "protocol", "all", "bpf", "bytecode", "1,6 0 0 4294967295,", "da")
    sh("tc", "filter", "add", "dev", "trr0", "ingress", *foreign, ns=rtr)
    sh(
        "tc",
        "filter",
        "add",
        "dev",
        "trr0",
        "egress",
        "pref",
        "5",
        "protocol",
        "all",
        "u32",
        "match",
        "u32",
        "0",
        "0",
        "classid",
        "1:1",
        ns=rtr,
    )
    try:
        before = host_objects(topo)
        r = trace(topo, Packet("tcp", "", RTR_IN, None, 8080))
        assert seen(r, "trr0", "ingress") and seen(r, "trr0", "egress", reply=True)
        assert host_objects(topo) == before  # the qdisc was not ours: it stays, as do its filters
        # cntrace goes ahead of the u32 filter (pref 5); the one at pref 1 is reported
        (warn,) = [u for u in r.unwatched if u.partial]
        assert warn.what == "tc ingress rtr trr0" and "pref 1" in warn.why
        assert all(r.watched(t) for t in topo.targets())
    finally:
        sh("tc", "qdisc", "del", "dev", "trr0", "clsact", ns=rtr, check=False)


def _hold(topo: Topo, tmp_path: Path, name: str) -> tuple[subprocess.Popen[str], Path]:
    ready = tmp_path / f"{name}.ready"
    doc = plan_doc(topo, SRV_IP, 80, ready=str(ready))
    proc = _spawn("hold", doc)
    _wait_for(ready, proc)
    return proc, ready


def test_sigkill_leaves_objects_that_cleanup_removes(topo: Topo, tmp_path: Path) -> None:
    rtr = topo.ns("rtr")
    sh("tc", "qdisc", "add", "dev", "trr1", "clsact", ns=rtr)
    sh(
        "tc",
        "filter",
        "add",
        "dev",
        "trr1",
        "ingress",
        "pref",
        "1",
        "protocol",
        "all",
        "bpf",
        "bytecode",
        "1,6 0 0 4294967295,",
        "da",
        ns=rtr,
    )
    try:
        proc, _ready = _hold(topo, tmp_path, "kill")
        ledger = state.run_dir() / f"{proc.pid}.json"
        assert ledger.exists()
        prog_ids = filter_prog_ids(topo)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        left = cntrace_objects(topo)
        assert len([o for o in left if "cntrace:" in o]) == 8, left  # filters survive a kill
        assert any("table inet cntrace_" in o for o in left), left
        assert prog_ids and prog_ids <= {p.id for p in bpfsys.loaded_programs()}

        res = run_ok("cleanup")
        assert "tc filter cntrace:" in res.stdout and "nft table inet cntrace_" in res.stdout

        assert not cntrace_objects(topo)
        assert not ledger.exists()
        assert not prog_ids & {p.id for p in bpfsys.loaded_programs()}
        objs = host_objects(topo)
        assert "trr1 qdisc clsact" in objs["rtr"]  # the foreign qdisc and filter survive
        assert any("trr1 ingress" in o and "bytecode" in o for o in objs["rtr"])
        # qdiscs cntrace added where none existed are gone
        assert not [o for o in objs["cli"] + objs["srv"] if "qdisc" in o]
        again = run_ok("cleanup")
        assert "nothing of cntrace's to remove" in again.stdout
    finally:
        sh("tc", "qdisc", "del", "dev", "trr1", "clsact", ns=rtr, check=False)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "ctrl-c"])
def test_signals_unwind_and_clean_up(topo: Topo, tmp_path: Path, sig: signal.Signals) -> None:
    before = host_objects(topo)
    proc, _ready = _hold(topo, tmp_path, sig.name)
    assert cntrace_objects(topo)
    proc.send_signal(sig)
    out = _drain(proc, timeout=15, what=f"after {sig.name}")
    assert proc.returncode == 130, out
    assert host_objects(topo) == before
    assert not (state.run_dir() / f"{proc.pid}.json").exists()


@pytest.mark.parametrize("delay", [0.3, 0.6, 0.9, 1.2, 1.5])
def test_ctrl_c_at_any_moment_leaves_nothing(topo: Topo, tmp_path: Path, delay: float) -> None:
    """Interrupted while importing, attaching, adding trace tables or holding: all the same."""
    before = host_objects(topo)
    doc = plan_doc(topo, SRV_IP, 80, ready=str(tmp_path / "never-waited-for"))
    proc = _spawn("hold", doc)
    time.sleep(delay)
    proc.send_signal(signal.SIGINT)
    out = _drain(proc, timeout=20, what="after SIGINT")
    assert proc.returncode in (130, -signal.SIGINT, 1), out
    assert host_objects(topo) == before, out
    assert not (state.run_dir() / f"{proc.pid}.json").exists()


def test_the_next_run_removes_a_killed_runs_leftovers(topo: Topo, tmp_path: Path) -> None:
    proc, _ready = _hold(topo, tmp_path, "next")
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    assert cntrace_objects(topo)
    notices: list[str] = []
    with TraceEngine(notice=notices.append):
        pass
    assert not cntrace_objects(topo)
    assert any("leftover" in n for n in notices), notices


def test_concurrent_runs_never_mix(topo: Topo) -> None:
    doc = plan_doc(topo, RTR_IN, 8080)
    procs = [_spawn("trace", doc) for _ in range(2)]
    results = []
    for p in procs:
        out, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
        results.append(json.loads(out.splitlines()[-1]))
    assert results[0]["marker"] != results[1]["marker"]
    for r in results:
        assert r["outcome"] == "delivered"
        assert len(r["sightings"]) == 8  # only its own probe and reply, each hop once
        client_side = [s for s in r["sightings"] if s[0] in ("trc0", "trr0")]
        assert all(r["sport"] in (s[2], s[3]) for s in client_side)
    assert not cntrace_objects(topo)


# --------------------------------------------------------------------------- cntrace drops


def test_drops_command_names_the_namespace_and_reason(topo: Topo, tmp_path: Path) -> None:
    ready = tmp_path / "drops.ready"
    proc = _reaped(
        start(
            "drops",
            f"netns:{topo.ns('srv')}",
            "--json",
            "--count",
            "1",
            "--timeout",
            "30",
            "--ready-file",
            str(ready),
        )
    )
    _wait_for(ready, proc, timeout=60)
    from safety import probe

    assert probe(topo.path("cli"), SRV_IP, 82) == "refused"
    doc = json.loads(finish(proc, timeout=30).stdout.splitlines()[0])
    assert doc["reason"] == "NO_SOCKET" and doc["location"].startswith("tcp_v4_rcv")
    assert doc["where"] == topo.ns("srv") and doc["interface"] == "trs0"
    assert doc["packet"].startswith(f"tcp {RTR_OUT}:") and doc["packet"].endswith(f"{SRV_IP}:82")


def test_print_bpf_prints_the_final_c(topo: Topo) -> None:
    res = run_ok("drops", "--print-bpf")
    assert res.stdout.startswith("/* cnt_offsets on ") and "skb_head " in res.stdout
    assert "int cntrace_kfree(void *ctx)" in res.stdout
    assert "struct cnt_event {" in res.stdout  # the shared header is inlined


FALLBACK = r"""
import json, sys
sys.modules["bcc"] = None  # as if python3-bpfcc were not installed
from cntrace.errors import EnvironmentProblem
from cntrace.model import Packet
from cntrace.trace.events import TracePlan
from cntrace.trace.session import run_trace, targets_in
doc = json.loads(sys.argv[1])
targets = tuple(t for p, i in doc["targets"] for t in targets_in(p, (i,)))
plan = TracePlan(doc["source"], Packet("tcp", "", doc["dst"], None, doc["port"]), targets,
                 backend=sys.argv[2])
notices = []
try:
    r = run_trace(plan, notice=notices.append)
except EnvironmentProblem as exc:
    print(json.dumps({"error": str(exc)}))
else:
    print(json.dumps({"backend": r.backend, "notices": notices, "outcome": r.outcome()[0]}))
"""


@pytest.mark.parametrize("wanted", ["auto", "ebpf"])
def test_without_bcc_or_cache_capture_takes_over(topo: Topo, tmp_path: Path, wanted: str) -> None:
    """Changed C (neither the prebuilt bytecode nor a cache entry fits it) and no bcc."""
    probes = tmp_path / "probes"
    shutil.copytree(REPO / "probes", probes)
    src = probes / "cntrace.bpf.c"
    src.write_text(src.read_text() + "\n/* changed */\n")
    doc = plan_doc(topo, RTR_IN, 8080)
    env = dict(
        os.environ,
        CNTRACE_CACHE_DIR=str(tmp_path / "empty-cache"),
        CNTRACE_PROBES_DIR=str(probes),
    )
    res = subprocess.run(
        [sys.executable, "-c", FALLBACK, doc, wanted],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        check=False,
    )
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout.splitlines()[-1])
    if wanted == "auto":
        assert out["backend"] == "capture" and out["outcome"] == "delivered"
        (notice,) = out["notices"]
        assert notice.startswith("eBPF unavailable (bcc") and "using AF_PACKET capture" in notice
    else:
        assert out["error"].startswith("eBPF back end cannot run: bcc")
    assert not cntrace_objects(topo)


def test_source_namespace_must_exist(topo: Topo) -> None:
    from cntrace.errors import BadInput

    plan = TracePlan("/run/netns/cntrace-tr-nonexistent", Packet("tcp", "", SRV_IP, None, 80), ())
    with pytest.raises(BadInput), TraceEngine() as engine:
        engine.trace(plan)
    assert os.path.exists(topo.path("cli"))


def test_drops_summary_counts_what_matters_and_hides_benign_multicast(
    topo: Topo, tmp_path: Path
) -> None:
    """`cntrace drops --summary`: a refused connection is counted by reason, function and
    namespace; multicast for a group srv never joined (the NOT_SPECIFIED noise of every host)
    is hidden and counted as hidden."""
    ready = tmp_path / "summary.ready"
    argv = ["drops", f"netns:{topo.ns('srv')}", "--summary"]
    proc = _reaped(start(*argv, "--json", "--timeout", "4", "--ready-file", str(ready)))
    _wait_for(ready, proc, timeout=60)
    from safety import probe

    assert probe(topo.path("cli"), SRV_IP, 82) == "refused"
    # rtr's link to srv goes down and up: rtr's kernel sends its MLD reports and neighbour
    # solicitations (DAD) again, multicast to groups srv has not joined (nothing the test sends)
    rtr = ["ip", "-n", topo.ns("rtr"), "link", "set", "trr1"]
    subprocess.run([*rtr, "down"], check=True)
    subprocess.run([*rtr, "up"], check=True)
    _until_no_tentative(topo, "rtr")
    res = finish(proc, timeout=30)
    doc, err = json.loads(res.stdout), res.stderr
    assert doc["by_reason"].get("NO_SOCKET", 0) >= 1, doc
    assert any(k.startswith("tcp_v4_rcv") for k in doc["by_location"]), doc
    assert doc["by_where"].get(topo.ns("srv"), 0) >= 1, doc
    assert doc["hidden_benign"] >= 1 and "benign drop(s) hidden" in err, (doc, err)
    assert "ip6_mc_input" not in doc["by_location"], doc


def _until_no_tentative(topo: Topo, role: str, timeout: float = 5.0) -> None:
    """Wait for IPv6 duplicate address detection to finish (later tests route over it)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        out = subprocess.run(
            ["ip", "-n", topo.ns(role), "-6", "addr", "show", "tentative"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout
        if not out.strip():
            return
        time.sleep(0.1)
