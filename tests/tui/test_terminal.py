"""`cntrace tui` in a real terminal (tmux) on a real lab: containers, a broken path, drops, export,
and an exit that leaves nothing attached, by `q` and by a closed terminal (SIGHUP).

Root tier: the lab is built in namespaces of its own (cntrace-ui*), the only traffic is one probe
from the lab's client towards the lab's upstream (a TEST-NET address inside the lab).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from clirun import run_json
from harness import require_root, unavailable
from labkit import Lab, lab_up, unique_name

from cntrace import codec
from cntrace.model import Path as PathAnswer
from cntrace.render.path import to_document

REPO = Path(__file__).resolve().parents[2]


class Tmux:
    """One detached tmux session running one command; text() is what a person would see."""

    def __init__(self, name: str, command: str, width: int = 100, height: int = 30) -> None:
        self.name = name
        subprocess.run(
            ["tmux", "new-session", "-d", "-s", name, "-x", str(width), "-y", str(height)],
            check=True,
            env={**os.environ, "TERM": "xterm-256color"},
        )
        subprocess.run(["tmux", "send-keys", "-t", name, command, "Enter"], check=True)

    def keys(self, *keys: str, pause: float = 0.3) -> None:
        for k in keys:
            subprocess.run(["tmux", "send-keys", "-t", self.name, k], check=True)
            time.sleep(pause)

    def type(self, text: str) -> None:
        subprocess.run(["tmux", "send-keys", "-t", self.name, "-l", text], check=True)
        time.sleep(0.3)

    def text(self) -> str:
        res = subprocess.run(
            ["tmux", "capture-pane", "-p", "-t", self.name],
            capture_output=True,
            text=True,
            check=False,
        )
        return res.stdout

    def wait_for(self, what: Callable[[str], bool], timeout: float = 20.0, why: str = "") -> str:
        end = time.monotonic() + timeout
        while True:
            screen = self.text()
            if what(screen):
                return screen
            if time.monotonic() > end:
                raise AssertionError(f"timed out waiting for {why}; screen:\n{screen}")
            time.sleep(0.2)

    def kill(self) -> None:
        subprocess.run(["tmux", "kill-session", "-t", self.name], check=False, capture_output=True)


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    require_root()
    if shutil.which("tmux") is None:
        unavailable("needs tmux")
    with lab_up(unique_name("ui")) as handle:
        res = handle.run("lab", "break", "forward-drop")
        assert res.returncode == 0, res.stderr
        try:
            yield handle
        finally:
            handle.run("lab", "fix", "all")


@pytest.fixture
def console(lab: Lab, tmp_path: Path) -> Iterator[tuple[Tmux, Path]]:
    session = f"cntrace-ui-t{os.getpid()}"
    cmd = (
        f"cd {REPO} && {sys.executable} -m cntrace tui --refresh 0 --export-dir {tmp_path} "
        f"--ready-file {tmp_path}/ready; echo $? > {tmp_path}/exit"
    )
    tmux = Tmux(session, cmd)
    try:
        yield tmux, tmp_path
    finally:
        tmux.kill()
        _wait_gone(tmp_path)


def _ready(tmp: Path, timeout: float = 30.0) -> int:
    end = time.monotonic() + timeout
    while not (tmp / "ready").exists():
        assert time.monotonic() < end, "the console never drew its first full frame"
        time.sleep(0.05)
    return int((tmp / "ready").read_text().split()[0])


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _processes_mentioning(marker: str) -> list[int]:
    """Processes whose command line names this test's directory (ours, nothing else)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if marker in cmdline and "tmux" not in cmdline:
            found.append(int(entry.name))
    return [p for p in found if _alive(p)]


def _wait_gone(tmp: Path, timeout: float = 15.0) -> None:
    end = time.monotonic() + timeout
    while _processes_mentioning(str(tmp)) and time.monotonic() < end:
        time.sleep(0.1)


def _netns_run(ns: str, *cmd: str) -> str:
    return subprocess.run(
        ["nsenter", f"--net=/run/netns/{ns}", *cmd], capture_output=True, text=True, check=False
    ).stdout


def _attached(lab: Lab) -> list[str]:
    """Anything of cntrace's attached in the lab's namespaces: tc filters, clsact, nft tables."""
    found = []
    for ns in lab.state.namespaces:
        links = json.loads(_netns_run(ns, "ip", "-j", "link") or "[]")
        for link in links:
            dev = link["ifname"]
            for kind in ("ingress", "egress"):
                out = _netns_run(ns, "tc", "filter", "show", "dev", dev, kind)
                if "cntrace" in out:
                    found.append(f"{ns} {dev} {kind}: {out.strip()}")
        if "clsact" in _netns_run(ns, "tc", "qdisc", "show"):
            found.append(f"{ns}: clsact qdisc")
        tables = _netns_run(ns, "nft", "list", "tables")
        found += [f"{ns}: {t}" for t in tables.splitlines() if "cntrace_" in t]
    return found


def _ledger(pid: int) -> Path:
    return Path(os.environ.get("CNTRACE_RUN_DIR", "/run/cntrace/trace")) / f"{pid}.json"


def test_console_on_the_lab(lab: Lab, console: tuple[Tmux, Path]) -> None:
    tmux, tmp = console
    assert not _attached(lab), "the lab must start clean"
    pid = _ready(tmp)
    names = [f"{lab.name}.{c}" for c in ("api", "client", "db", "upstream", "web")]
    # The host may run other containers: filter on the lab's name first.
    tmux.keys("/")
    tmux.type(lab.name)
    tmux.wait_for(lambda s: all(n in s for n in names), timeout=40, why="the lab's containers")

    # A path to the broken destination: the drop, the rule and the finding.
    tmux.type(".client")
    tmux.wait_for(lambda s: "1/" in s and f"{lab.name}.web" not in s, why="the filter")
    tmux.keys("Enter", "Enter")  # keep the filter; enter on the row: path from it
    tmux.type("203.0.113.10:80")
    tmux.keys("Enter")
    screen = tmux.wait_for(
        lambda s: "DROPPED" in s and "forward-drop" in s, why="the verdict and finding"
    )
    assert "DOCKER-USER -d 203.0.113.0/24 -j DROP" in screen
    assert f"from: {lab.name}.client" in screen
    # Then the live trace: the kernel's own drop reason at the dropping hop.
    screen = tmux.wait_for(
        lambda s: "[live]" in s and "NETFILTER_DROP in" in s, timeout=40, why="the live trace"
    )
    assert "live trace" in screen
    assert _attached(lab), "while the console runs, its probes stay attached between traces"

    # The drop stream: a real probe into the fault shows up, attributed to the client.
    tmux.keys("4")
    tmux.wait_for(lambda s: "watching kernel drops" in s, timeout=40, why="the drop probe")
    outcome = lab.probe("client", "203.0.113.10", 80, timeout=1.0)
    assert outcome == "timeout", outcome
    screen = tmux.wait_for(
        lambda s: any(
            "NETFILTER_DROP" in ln and f"{lab.name}.client" in ln for ln in s.splitlines()
        ),
        why="the probe's NETFILTER_DROP in the drops panel",
    )

    # Export: a report whose snapshot replays to the same path.
    tmux.keys("3", "e")
    tmux.wait_for(lambda s: "exported:" in s, why="the export")
    reports = list(tmp.glob("cntrace-report-*.json"))
    assert len(reports) == 1
    doc = json.loads(reports[0].read_text())
    replayed = run_json(*doc["replay"]["argv"][1:], "--json", rc=1, cwd=REPO)
    predicted = doc.get("prediction", doc["path"])  # a live path carries its prediction
    # the report holds every field (cntrace.report); `path --json` leaves out empty Kubernetes keys
    assert replayed == to_document(codec.from_plain(PathAnswer, predicted))

    # q: exit 0, the process and its children gone, nothing attached.
    assert _alive(pid)
    tmux.keys("q")
    end = time.monotonic() + 15
    while not (tmp / "exit").exists():
        assert time.monotonic() < end, f"q did not quit:\n{tmux.text()}"
        time.sleep(0.1)
    assert (tmp / "exit").read_text().strip() == "0"
    assert not _alive(pid)
    _wait_gone(tmp)
    assert _processes_mentioning(str(tmp)) == []
    assert not _ledger(pid).exists()
    assert _attached(lab) == []


def test_closed_terminal_leaves_nothing(lab: Lab, console: tuple[Tmux, Path]) -> None:
    """SIGHUP (the terminal or SSH session goes away) with a trace's probes attached and the
    drop probe loaded."""
    tmux, tmp = console
    pid = _ready(tmp)
    tmux.keys("/")
    tmux.type(f"{lab.name}.client")
    tmux.wait_for(lambda s: f"{lab.name}.client" in s and "1/" in s, timeout=40, why="the filter")
    tmux.keys("Enter", "Enter")
    tmux.type(f"{lab.name}.web:80")
    tmux.keys("Enter")
    tmux.wait_for(lambda s: "[live]" in s and "DELIVERED" in s, timeout=40, why="a live trace")
    assert _attached(lab), "the trace engine keeps its probes attached between traces"
    tmux.keys("4")
    tmux.wait_for(lambda s: "watching kernel drops" in s, timeout=40, why="the drop probe")
    tmux.kill()  # the pane's processes get SIGHUP
    end = time.monotonic() + 15
    while _alive(pid):
        assert time.monotonic() < end, "the console survived its terminal"
        time.sleep(0.1)
    _wait_gone(tmp)
    assert _processes_mentioning(str(tmp)) == []
    assert not _ledger(pid).exists()
    assert _attached(lab) == []


@pytest.mark.parametrize("how", ["ctrl+c", "SIGTERM"])
def test_interrupted_console_leaves_nothing(lab: Lab, console: tuple[Tmux, Path], how: str) -> None:
    """Ctrl-C (a key in the console: it quits like q) and SIGTERM after a live trace."""
    tmux, tmp = console
    pid = _ready(tmp)
    tmux.keys("/")
    tmux.type(f"{lab.name}.client")
    tmux.wait_for(lambda s: f"{lab.name}.client" in s and "1/" in s, timeout=40, why="the filter")
    tmux.keys("Enter", "Enter")
    tmux.type(f"{lab.name}.web:80")
    tmux.keys("Enter")
    tmux.wait_for(lambda s: "[live]" in s and "DELIVERED" in s, timeout=40, why="a live trace")
    assert _attached(lab)
    if how == "ctrl+c":
        tmux.keys("C-c")
    else:
        os.kill(pid, signal.SIGTERM)
    end = time.monotonic() + 15
    while not (tmp / "exit").exists():
        assert time.monotonic() < end, f"{how} did not end the console:\n{tmux.text()}"
        time.sleep(0.1)
    expected = "0" if how == "ctrl+c" else str(128 + signal.SIGTERM)
    assert (tmp / "exit").read_text().strip() == expected
    assert not _alive(pid)
    _wait_gone(tmp)
    assert _processes_mentioning(str(tmp)) == []
    assert not _ledger(pid).exists()
    assert _attached(lab) == []


def test_live_source_prefetches_in_a_child(lab: Lab) -> None:
    """The cheap read runs in a forked child; the first frame's rows come first, the Snapshot
    after, and collecting it reaps the child."""
    from cntrace.tui.source import LiveSource
    from cntrace.tui.views.containers import container_rows

    source = LiveSource()
    source.prefetch()
    assert source._prefetch is not None
    pid = source._prefetch.pid
    view = source.first_view()
    assert view is not None
    header, rows = view
    assert header.netns == () and header.containers == () and header.hostname
    snap = source.read(detail=False)
    assert not _alive(pid), "the child is reaped once collected"
    assert f"{lab.name}.web" in {c.name for c in snap.containers}
    assert rows == container_rows(snap)
    assert header.taken_at == snap.taken_at
    assert not any(ns.routes for ns in snap.netns), "the prefetch is the cheap read"
    detailed = source.read(detail=True)
    assert any(ns.routes for ns in detailed.netns)
    source.close()

    quitter = LiveSource()
    quitter.prefetch()
    assert quitter._prefetch is not None
    pid = quitter._prefetch.pid
    quitter.close()  # the console quit before the first frame
    assert not _alive(pid)
