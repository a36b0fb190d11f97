"""The lab on a real kernel: it leaves the host untouched, its faults are real, errors are clear."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from harness import require_root
from labkit import CNTRACE, Lab, cntrace, lab_up, root_state, unique_name

from cntrace.lab import faults, state


def test_up_down_leaves_the_root_namespace_exactly_as_before() -> None:
    require_root()
    before = root_state()
    name = unique_name("ud")
    with lab_up(name, "--containers", "6") as lab:
        during = root_state()
        assert lab.state.status == "up"
        for key in ("links", "addresses", "routes", "nft", "iptables-legacy"):
            assert during[key] == before[key], f"lab up changed the root namespace's {key}"
    assert root_state() == before


FAULT_CASES: dict[str, list[tuple[str, str, int, str, int, str]]] = {
    # fault: [(source, destination, port, proto, payload size, outcome after break)]
    "loopback-bind": [
        ("client", "web", 80, "tcp", 0, "refused"),
        ("upstream", "published", 8080, "tcp", 0, "refused"),
    ],
    "no-listener": [
        ("client", "web", 80, "tcp", 0, "refused"),
        ("upstream", "published", 8080, "tcp", 0, "refused"),
    ],
    "isolated-networks": [("api", "db", 80, "tcp", 0, "timeout")],
    "ip-forward-disabled": [
        ("client", "internet", 80, "tcp", 0, "timeout"),
        ("upstream", "published", 8080, "tcp", 0, "timeout"),
    ],
    "forward-drop": [("client", "internet", 80, "tcp", 0, "timeout")],
    "no-masquerade": [("client", "internet", 80, "tcp", 0, "timeout")],
    "interface-down": [("client", "web", 80, "tcp", 0, "timeout")],
    "mtu-mismatch": [("client", "web", 9000, "udp", 1400, "timeout")],
}


def _dest(lab: Lab, dest: str) -> str:
    if dest == "internet":
        return lab.state.internet_ip
    if dest == "published":
        return lab.state.uplink_ip
    return lab.ip(dest)


def _attempts(lab: Lab, fault: str) -> list[str]:
    return [
        lab.probe(src, _dest(lab, dst), port, proto, size)
        for src, dst, port, proto, size, _ in FAULT_CASES[fault]
    ]


def test_every_fault_has_a_case() -> None:
    assert set(FAULT_CASES) == set(faults.FAULTS)


@pytest.mark.parametrize("fault", sorted(FAULT_CASES))
def test_fault_breaks_and_fixes_a_real_connection(lab: Lab, fault: str) -> None:
    expected = [case[-1] for case in FAULT_CASES[fault]]
    assert _attempts(lab, fault) == ["ok"] * len(expected), "healthy lab must work first"
    res = lab.run("lab", "break", fault)
    assert res.returncode == 0, res.stderr
    try:
        assert fault in lab.state.faults
        assert _attempts(lab, fault) == expected
        if fault == "mtu-mismatch":  # small packets still pass: it is the size that fails
            assert lab.probe("client", lab.ip("web"), 9000, "udp", 200) == "ok"
    finally:
        res = lab.run("lab", "fix", fault)
        assert res.returncode == 0, res.stderr
    assert fault not in lab.state.faults
    assert _attempts(lab, fault) == ["ok"] * len(expected)


def test_status_json_describes_the_lab(lab: Lab) -> None:
    res = lab.run("lab", "status", "--json")
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["schema"] == "cntrace.lab-status/v1"
    assert doc["healthy"] is True
    names = {c["name"] for c in doc["containers"]}
    assert {"web", "client", "api", "db"} <= names
    web = next(c for c in doc["containers"] if c["name"] == "web")
    assert web["published"] == [{"proto": "tcp", "host_port": 8080, "container_port": 80}]
    assert Path(f"/proc/{web['pid']}").exists()
    # The long-lived process really lives in the container's namespace.
    assert os.stat(f"/proc/{web['pid']}/ns/net").st_ino == os.stat(lab.nspath("web")).st_ino


def _one_line_error(res: subprocess.CompletedProcess[str], code: int) -> None:
    assert res.returncode == code, (res.returncode, res.stderr)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cntrace: error:"), res.stderr
    assert "Traceback" not in res.stderr


def test_bad_input_gives_one_line_errors(lab: Lab) -> None:
    _one_line_error(lab.run("lab", "break", "no-such-fault"), 2)
    _one_line_error(lab.run("lab", "up"), 2)  # already up
    _one_line_error(lab.run("lab", "fix", "forward-drop"), 2)  # not active
    _one_line_error(cntrace("lab", "status", "--name", "cntrace-nosuchlab"), 2)
    _one_line_error(cntrace("lab", "down", "--name", "cntrace-nosuchlab"), 2)
    _one_line_error(cntrace("lab", "up", "--name", "Bad.Name"), 2)
    _one_line_error(cntrace("lab", "up", "--name", "cntrace-x", "--containers", "-1"), 2)


def test_without_privileges_the_error_names_the_capability() -> None:
    require_root()
    res = subprocess.run(
        ["setpriv", "--bounding-set=-all", *CNTRACE, "lab", "up", "--name", unique_name("np")],
        capture_output=True,
        text=True,
        check=False,
    )
    _one_line_error(res, 3)
    assert "CAP_SYS_ADMIN" in res.stderr
    assert not list(Path("/run/netns").glob(f"{unique_name('np')}.*"))


def test_down_cleans_up_after_a_killed_up() -> None:
    require_root()
    name = unique_name("kill")
    proc = subprocess.Popen(
        [*CNTRACE, "lab", "up", "--name", name, "--containers", "60"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    # Kill it once namespaces exist and some servers run: a genuinely half-built lab.
    while time.monotonic() < deadline:
        lab = state.load(name)
        if lab and any(Path(f"/run/netns/{name}.c0001").exists() for _ in [0]):
            out = subprocess.run(
                ["pgrep", "-f", f"{state.STATE_DIR}/{name}.www"],
                capture_output=True,
                text=True,
                check=False,
            ).stdout
            if out.strip():
                break
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert list(Path("/run/netns").glob(f"{name}.*")), "the kill came too late to test anything"
    res = cntrace("lab", "down", "--name", name)
    assert res.returncode == 0, res.stderr
    assert not list(Path("/run/netns").glob(f"{name}.*"))
    assert state.load(name) is None
    left = subprocess.run(["pgrep", "-f", name], capture_output=True, text=True, check=False).stdout
    assert not left.strip(), f"processes left: {left}"


def test_scaled_lab_serves_every_container() -> None:
    require_root()
    with lab_up(unique_name("sc"), "--containers", "40") as lab:
        scaled = [c for c in lab.state.containers if not c.full_server]
        assert len(scaled) == 40
        assert {c.network for c in scaled} == {"bridge", "backend"}
        same_net = next(c for c in scaled if c.network == "bridge")
        assert lab.probe("client", same_net.ip, 80) == "ok"
