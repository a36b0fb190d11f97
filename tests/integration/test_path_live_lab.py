"""`cntrace path` on the live lab: every fault predicted right, and the prediction agrees with a
real connection attempt made right after; a saved snapshot replays to the same answer."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from labcases import CASES, IDS, LabCase
from labkit import CNTRACE, Lab, cntrace
from safety import ping


def _target(lab: Lab, case: LabCase) -> tuple[str, str]:
    """(destination for cntrace, ip for the probe)."""
    port = f":{case.port}" if case.port else ""
    if case.name == "internet":
        return lab.state.internet_ip + port, lab.state.internet_ip
    if case.name == "host":
        return "host" + port, lab.state.uplink_ip
    return f"{lab.name}.{case.name}{port}", lab.ip(case.name)


def _probe(lab: Lab, case: LabCase, ip: str) -> str:
    if case.port is None:
        return "ok" if ping(lab.nspath(case.src), ip) else "timeout"
    return lab.probe(case.src, ip, case.port, case.proto or "tcp", case.size or 0)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_prediction_matches_the_kernel(lab: Lab, case: LabCase) -> None:
    if case.fault:
        assert lab.run("lab", "break", case.fault).returncode == 0
    try:
        dst, ip = _target(lab, case)
        res = cntrace("path", "--json", f"{lab.name}.{case.src}", dst, *case.argv)
        assert res.returncode == (0 if case.status == "delivered" else 1), res.stderr
        doc = json.loads(res.stdout)
        assert doc["verdict"]["status"] == case.status, doc["verdict"]
        hops = {h["index"]: h["kind"] for h in doc["hops"]}
        assert hops.get(doc["verdict"]["at_hop"]) == case.hop, doc["verdict"]
        errors = [f["code"] for f in doc["findings"] if f["severity"] == "error"]
        assert errors[:1] == ([case.code] if case.code else [])
        assert _probe(lab, case, ip) == case.real
    finally:
        if case.fault:
            assert lab.run("lab", "fix", case.fault).returncode == 0


def test_saved_snapshot_replays_to_the_same_answer_without_the_lab(
    lab: Lab, tmp_path: Path
) -> None:
    snap = tmp_path / "report-snapshot.json"
    live = cntrace(
        "path",
        "--json",
        "--save-snapshot",
        str(snap),
        f"{lab.name}.client",
        f"{lab.state.internet_ip}:80",
    )
    assert live.returncode == 0, live.stderr
    # Replay where no lab exists: a fresh network namespace, and tmpfs over the places where
    # namespaces and lab state live, so nothing live can leak into the answer.
    script = (
        "mount -t tmpfs none /run/netns && mount -t tmpfs none /run/cntrace && "
        + " ".join(CNTRACE)
        + f" path --json --snapshot {snap} {lab.name}.client {lab.state.internet_ip}:80"
    )
    replay = subprocess.run(
        ["unshare", "--net", "--mount", "sh", "-c", script],
        capture_output=True,
        text=True,
        check=False,
    )
    assert replay.returncode == 0, replay.stderr
    assert json.loads(replay.stdout) == json.loads(live.stdout)
