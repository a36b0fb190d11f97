"""`cntrace path` on the live lab: every fault predicted right, and the prediction agrees with a
real connection attempt made right after; a saved snapshot replays to the same answer."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from labkit import CNTRACE, Lab, cntrace

# (fault or None, source, destination, options, predicted status, finding, real probe outcome)
CASES = [
    (None, "client", "web:80", (), "delivered", None, "ok"),
    (None, "client", "internet:80", (), "delivered", None, "ok"),
    (None, "upstream", "host:8080", (), "delivered", None, "ok"),
    (None, "client", "api:80", (), "dropped", "isolated-networks", "timeout"),
    ("loopback-bind", "client", "web:80", (), "refused", "loopback-bind", "refused"),
    ("no-listener", "upstream", "host:8080", (), "refused", "no-listener", "refused"),
    ("isolated-networks", "api", "db:80", (), "dropped", "isolated-networks", "timeout"),
    (
        "ip-forward-disabled",
        "client",
        "internet:80",
        (),
        "dropped",
        "ip-forward-disabled",
        "timeout",
    ),
    ("forward-drop", "client", "internet:80", (), "dropped", "forward-drop", "timeout"),
    ("no-masquerade", "client", "internet:80", (), "timeout", "no-masquerade", "timeout"),
    ("interface-down", "client", "web:80", (), "dropped", "interface-down", "timeout"),
    (
        "mtu-mismatch",
        "client",
        "web:9000",
        ("--proto", "udp", "--size", "1400"),
        "dropped",
        "mtu-mismatch",
        "timeout",
    ),
]


def _target(lab: Lab, dst: str) -> tuple[str, str, int]:
    """(ref for cntrace, ip for the probe, port)."""
    name, port = dst.split(":")
    if name == "internet":
        return lab.state.internet_ip, lab.state.internet_ip, int(port)
    if name == "host":
        return "host", lab.state.uplink_ip, int(port)
    return f"{lab.name}.{name}", lab.ip(name), int(port)


@pytest.mark.parametrize(
    ("fault", "src", "dst", "opts", "status", "code", "real"),
    CASES,
    ids=[f"{c[0] or 'healthy'}:{c[1]}->{c[2]}" for c in CASES],
)
def test_prediction_matches_the_kernel(
    lab: Lab,
    fault: str | None,
    src: str,
    dst: str,
    opts: tuple[str, ...],
    status: str,
    code: str | None,
    real: str,
) -> None:
    if fault:
        assert lab.run("lab", "break", fault).returncode == 0
    try:
        ref, ip, port = _target(lab, dst)
        res = cntrace("path", "--json", f"{lab.name}.{src}", f"{ref}:{port}", *opts)
        assert res.returncode == (0 if status == "delivered" else 1), res.stderr
        doc = json.loads(res.stdout)
        assert doc["verdict"]["status"] == status, doc["verdict"]
        errors = [f["code"] for f in doc["findings"] if f["severity"] == "error"]
        assert errors[:1] == ([code] if code else [])
        proto = opts[1] if opts else "tcp"
        size = int(opts[3]) if len(opts) > 3 else 0
        assert lab.probe(src, ip, port, proto, size) == real
    finally:
        if fault:
            assert lab.run("lab", "fix", fault).returncode == 0


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
