"""The files a trace writes as root (issue 14): `path --live --pcap FILE` and every command's
`--ready-file FILE` are written like a saved snapshot (whole or not at all, a device written
through) and never through a symlink; a bad target is one line, exit 2, before any tracing."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from clirun import run_ok

from cntrace.errors import BadInput
from cntrace.sources.recorded import check_target, write_bytes
from cntrace.trace import pcapng
from cntrace.trace.armed import write_ready_file
from cntrace.trace.events import TraceResult


def _victim(tmp_path: Path) -> tuple[Path, Path]:
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    link = tmp_path / "out"
    link.symlink_to(victim)
    return victim, link


def _left(tmp_path: Path) -> list[str]:
    return sorted(p.name for p in tmp_path.iterdir())


def test_ready_file_is_whole_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "ready"
    write_ready_file(str(target))
    assert target.read_text() == f"{os.getpid()} armed\n"
    write_ready_file(str(target))  # again: replaced, not appended
    assert target.read_text() == f"{os.getpid()} armed\n"
    assert _left(tmp_path) == ["ready"]


def test_ready_file_never_follows_a_symlink(tmp_path: Path) -> None:
    victim, link = _victim(tmp_path)
    with pytest.raises(BadInput, match="symbolic link"):
        write_ready_file(str(link))
    assert victim.read_text() == "precious\n" and link.is_symlink()
    assert _left(tmp_path) == ["out", "victim"]
    # the predictable temporary name of old (PATH.tmpPID) is no way in either
    trap = tmp_path / f"ready.tmp{os.getpid()}"
    trap.symlink_to(victim)
    write_ready_file(str(tmp_path / "ready"))
    assert victim.read_text() == "precious\n"


def test_pcap_is_written_whole_and_never_through_a_symlink(tmp_path: Path) -> None:
    empty = TraceResult((), (), (), 0, (), {}, "capture", t0_realtime_ns=1)
    out = tmp_path / "t.pcapng"
    assert pcapng.write(out, empty) == 0
    assert out.read_bytes() == pcapng.render(empty, 1)
    victim, link = _victim(tmp_path)
    with pytest.raises(BadInput, match="symbolic link"):
        pcapng.write(link, empty)
    assert victim.read_text() == "precious\n"
    assert _left(tmp_path) == ["out", "t.pcapng", "victim"]


def test_a_device_is_written_through(tmp_path: Path) -> None:
    write_bytes("/dev/null", b"x", follow_symlinks=False)
    assert Path("/dev/null").is_char_device()


@pytest.mark.parametrize("name", ["", "DIR", "missing/ready"])
def test_bad_targets_are_refused_before_writing(tmp_path: Path, name: str) -> None:
    target = str(tmp_path) if name == "DIR" else (str(tmp_path / name) if name else "")
    with pytest.raises(BadInput):
        check_target(target, follow_symlinks=False)


@pytest.mark.parametrize(
    "argv",
    [
        ["trace", "web", "--ready-file", "{link}"],
        ["drops", "--ready-file", "{link}"],
        ["path", "client", "10.0.0.1:80", "--live", "--pcap", "{link}"],
        ["path", "client", "10.0.0.1:80", "--live", "--ready-file", "{dir}"],
    ],
)
def test_the_commands_refuse_before_tracing(tmp_path: Path, argv: list[str]) -> None:
    victim, link = _victim(tmp_path)
    args = [a.format(link=link, dir=tmp_path) for a in argv]
    res = run_ok(*args, rc=2, inproc=True)
    assert len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert "cannot write" in res.stderr
    assert victim.read_text() == "precious\n"
