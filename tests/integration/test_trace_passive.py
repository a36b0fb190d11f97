"""`cntrace trace <container>` on the lab: real traffic, one line per packet per hop, with the
published port's DNAT visible between the host's uplink and the container."""

from __future__ import annotations

import json
import time
from pathlib import Path

from clirun import finish, start
from labkit import Lab, cntrace


def test_trace_follows_published_port_traffic(lab: Lab, tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    proc = start(
        "trace",
        "--json",
        "--duration",
        "20",
        "--ready-file",
        str(ready),
        f"{lab.name}.web",
        "tcp",
        "port",
        "80",
        "or",
        "tcp",
        "port",
        "8080",
    )
    try:
        deadline = time.monotonic() + 20
        while not ready.exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        assert ready.exists(), proc.stderr.read() if proc.stderr else ""
        assert lab.probe("upstream", lab.state.uplink_ip, 8080) == "ok"
        time.sleep(0.5)
    finally:
        proc.terminate()
        out = finish(proc, timeout=20).stdout
    lines = [json.loads(line) for line in out.splitlines()]
    syn = [x for x in lines if x["tcp_flags"] == "S"]
    at = {(x["where"], x["direction"]): x for x in syn}
    uplink = at[(f"{lab.name}.host eth0", "ingress")]
    into_web = at[(f"{lab.name}.host veth-web", "egress")]
    assert (uplink["packet"]["dst"], uplink["packet"]["dport"]) == (lab.state.uplink_ip, 8080)
    assert (into_web["packet"]["dst"], into_web["packet"]["dport"]) == (lab.ip("web"), 80)
    assert uplink["ip_id"] == into_web["ip_id"]  # the same packet, before and after DNAT
    assert into_web["t_us"] >= uplink["t_us"]
    assert any(x["tcp_flags"] == "SA" and x["where"] == f"{lab.name}.web eth0" for x in lines)


def test_trace_bad_filter_and_ref() -> None:
    res = cntrace("trace", "nosuchcontainer-xyz")
    assert res.returncode == 2 and res.stderr.startswith("cntrace: error:")
    res = cntrace("trace", "--count", "0", "x")
    assert res.returncode == 2


def test_trace_bad_filter(lab: Lab) -> None:
    res = cntrace("trace", "--count", "1", f"{lab.name}.web", "tcp", "portt", "80")
    assert res.returncode == 2, res.stderr
    assert "bad filter" in res.stderr and "Traceback" not in res.stderr
