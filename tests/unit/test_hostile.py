"""Issue 14: a snapshot from a stranger is safe to open, and every bad input is one line, exit 2.

One test per case of the issue: what --save may overwrite, hostile files for every command,
crashes and broken pipes, COLUMNS, arguments and conflicting flags, lab state files.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import clirun
import pytest
from clirun import ARGV
from harness import FIXTURES, REPO, unavailable
from schemas import validate

from cntrace import cli
from cntrace.errors import BadInput, Exit
from cntrace.render.safe import term
from cntrace.sources import recorded

HEALTHY = FIXTURES / "snapshots" / "lab" / "healthy.json"
RULESET = str(FIXTURES / "rulesets" / "docker-iptables-nft.save")
CLI = ARGV  # for the runs that feed stdin or read a pipe themselves


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """``cli.main`` in this process (clirun); argparse's own exits (usage errors) included."""
    res = clirun.run(*argv, inproc=True)
    assert "Traceback" not in res.stderr, res.stderr
    return res.returncode, res.stdout, res.stderr


def bad(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    """Run, expect exit 2 with exactly one error line; return that line."""
    rc, _, err = run(capsys, *argv)
    lines = err.splitlines()
    assert rc == Exit.BAD_INPUT, (rc, err)
    assert len(lines) == 1 and lines[0].startswith("cntrace: error: "), err
    return lines[0]


def snapshot(tmp_path: Path, change: Callable[[dict[str, Any]], None] | None = None) -> str:
    doc = json.loads(HEALTHY.read_text())
    if change is not None:
        change(doc)
    path = tmp_path / "snap.json"
    path.write_text(json.dumps(doc), errors="surrogatepass")
    return str(path)


def _ns(doc: dict[str, Any], name: str) -> dict[str, Any]:
    ns: dict[str, Any] = next(n for n in doc["netns"] if n.get("name") == name)
    return ns


# --------------------------------------------------------------------------- writing


def test_save_writes_through_a_device_node_and_keeps_it(tmp_path: Path) -> None:
    node = tmp_path / "null"
    try:
        os.mknod(node, stat.S_IFCHR | 0o666, os.makedev(1, 3))  # our own /dev/null, in tmp
    except PermissionError:
        unavailable("creating a device node needs CAP_MKNOD")
    recorded.write_text(str(node), "{}\n")
    assert stat.S_ISCHR(node.lstat().st_mode) and node.lstat().st_rdev == os.makedev(1, 3)
    assert not list(tmp_path.glob(".cntrace-*"))  # no temporary left beside it


def test_save_writes_through_a_fifo_and_keeps_it(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    got: list[bytes] = []

    def reader() -> None:
        with open(fifo, "rb") as f:
            got.append(f.read())

    t = threading.Thread(target=reader)
    t.start()
    for _ in range(100):  # until the reader has opened its end
        try:
            recorded.write_text(str(fifo), "hello\n")
            break
        except BadInput as exc:
            assert "no reader" in str(exc)
            time.sleep(0.02)
    t.join(5)
    assert got == [b"hello\n"]
    assert stat.S_ISFIFO(fifo.lstat().st_mode)


def test_save_to_a_fifo_without_reader_is_one_line_not_a_hang(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(BadInput, match="no reader"):
        recorded.write_text(str(fifo), "x")
    assert stat.S_ISFIFO(fifo.lstat().st_mode)


def test_save_through_a_symlink_replaces_its_target_and_keeps_the_link(tmp_path: Path) -> None:
    target = tmp_path / "real.json"
    target.write_text("old")
    target.chmod(0o640)
    link = tmp_path / "link.json"
    link.symlink_to(target)
    recorded.write_text(str(link), "new")
    assert link.is_symlink() and target.read_text() == "new"
    assert stat.S_IMODE(target.stat().st_mode) == 0o640  # the file keeps its permissions
    dangling = tmp_path / "dangling"
    dangling.symlink_to(tmp_path / "made.json")
    recorded.write_text(str(dangling), "x")
    assert dangling.is_symlink() and (tmp_path / "made.json").read_text() == "x"


def test_save_refuses_a_block_device(tmp_path: Path) -> None:
    node = tmp_path / "disk"
    try:
        os.mknod(node, stat.S_IFBLK | 0o600, os.makedev(0, 0))  # no such device: harmless
    except PermissionError:
        unavailable("creating a device node needs CAP_MKNOD")
    with pytest.raises(BadInput, match="block device"):
        recorded.write_text(str(node), "x")


def test_save_to_empty_name_or_directory_is_exit_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    snap = snapshot(tmp_path)
    assert "empty file name" in bad(capsys, "snapshot", "--snapshot", snap, "--save", "")
    assert "directory" in bad(capsys, "snapshot", "--snapshot", snap, "--save", str(tmp_path))
    line = bad(capsys, "path", "web", "db:80", "--snapshot", snap, "--save-snapshot", "")
    assert "empty file name" in line
    missing = str(tmp_path / "no" / "such" / "dir" / "f.json")
    assert "cannot write" in bad(capsys, "snapshot", "--snapshot", snap, "--save", missing)


# --------------------------------------------------------------------------- reading


@pytest.mark.parametrize(
    "text,words",
    [
        ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
        ('{"schema": "cntrace.snapshot/v1", "netns": [' + "[" * 5000 + "]" * 5000 + "]}", "deep"),
        ('{"schema": "cntrace.snapshot/v1", "netns": [{"inode": ' + "9" * 5000 + "}]}", "number"),
        ('{"schema": ' + "9" * 5000 + "}", "number too long"),
        ('{"schema": ["x"]}', "not a cntrace snapshot"),
        ('{"schema": "cntrace.report/v1", "snapshot": 5}', "without a snapshot"),
        ("", "invalid JSON"),
    ],
)
def test_hostile_json_is_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, text: str, words: str
) -> None:
    path = tmp_path / "f.json"
    path.write_text(text)
    for argv in (["ls"], ["show", "web"], ["topo"], ["path", "web", "db"], ["rules", "web"]):
        line = bad(capsys, *argv, "--snapshot", str(path))
        assert words.split(maxsplit=1)[0] in line or "damaged" in line, line


def _add_address(family: int, address: str) -> Callable[[dict[str, Any]], None]:
    def change(d: dict[str, Any]) -> None:
        d["netns"][0]["links"][1]["addresses"].append(
            {"family": family, "address": address, "prefixlen": 24}
        )

    return change


def _add_route(family: int, dst: str) -> Callable[[dict[str, Any]], None]:
    def change(d: dict[str, Any]) -> None:
        d["netns"][0]["routes"].insert(0, {"family": family, "dst": dst})

    return change


def _container(**fields: Any) -> Callable[[dict[str, Any]], None]:
    return lambda d: d["containers"][0].update(fields)


DAMAGE = {
    "bad-address": (_add_address(4, "999.1.1.1"), ".address: '999.1.1.1'"),
    "bad-family": (_add_address(5, "10.0.0.1"), "family"),
    "bad-prefix": (_add_route(4, "10.0.0.0/99"), "routes[0].dst"),
    "family-mismatch": (_add_route(6, "10.0.0.0/8"), "not an IPv6 prefix"),
    "huge-ifindex": (lambda d: d["netns"][0]["links"][0].update(ifindex=2**40), "ifindex"),
    "negative-inode": (lambda d: d["netns"][0].update(inode=-3), "netns[0].inode"),
    "port-70000": (
        lambda d: d["containers"][0]["ports"].append(
            {"proto": "tcp", "host_port": 70000, "container_port": 80}
        ),
        "host_port",
    ),
    "unknown-runtime": (_container(runtime="evil"), "runtime"),
    "lone-surrogate": (_container(name="\ud800"), "lone surrogate"),
    "huge-name": (_container(name="A" * 200_000), "over the limit"),
    "v6-as-v4": (_container(networks=[{"name": "n", "ip": "::1"}]), "IPv4"),
}


@pytest.mark.parametrize("case", sorted(DAMAGE))
def test_out_of_range_values_are_named_at_load(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, case: str
) -> None:
    change, field = DAMAGE[case]
    snap = snapshot(tmp_path, change)
    for argv in (["ls", "--json"], ["path", "web", "db:80"], ["rules", "web", "--json"]):
        line = bad(capsys, *argv, "--snapshot", snap)
        assert "damaged snapshot" in line and field in line, line


def test_a_real_host_snapshot_passes_every_check() -> None:
    lab = sorted((FIXTURES / "snapshots" / "lab").glob("*.json"))
    for path in [*lab, *sorted((FIXTURES / "discovery").glob("*.json"))]:
        recorded.load(str(path))  # raises on any value the checks refuse


def test_special_files_are_refused_or_bounded(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert "is a directory" in bad(capsys, "ls", "--snapshot", str(tmp_path))
    assert "empty cntrace snapshot name" in bad(capsys, "ls", "--snapshot", "")
    assert "no such file" in bad(capsys, "ls", "--snapshot", str(tmp_path / "nope"))
    # A FIFO nobody writes to: an error after the idle timeout, not a hang.
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    monkeypatch.setenv("CNTRACE_INPUT_TIMEOUT", "0.3")
    t0 = time.monotonic()
    assert "nothing arrived" in bad(capsys, "ls", "--snapshot", str(fifo))
    assert time.monotonic() - t0 < 3
    # Over the size limit: refused before reading.
    monkeypatch.setenv("CNTRACE_MAX_INPUT_MB", "1")
    big = tmp_path / "big.json"
    big.write_text(" " * (2 << 20))
    assert "input limit" in bad(capsys, "ls", "--snapshot", str(big))
    # Binary: one line.
    binary = tmp_path / "bin"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    assert "not UTF-8" in bad(capsys, "ls", "--snapshot", str(binary))


def test_dev_zero_is_refused(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    zero = tmp_path / "zero"
    try:
        os.mknod(zero, stat.S_IFCHR | 0o666, os.makedev(1, 5))  # our own /dev/zero
    except PermissionError:
        unavailable("creating a device node needs CAP_MKNOD")
    assert "character device" in bad(capsys, "ls", "--snapshot", str(zero))


def test_a_fifo_with_a_writer_and_stdin_are_read(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    text = HEALTHY.read_bytes()

    def writer() -> None:
        with open(fifo, "wb") as f:
            f.write(text)

    t = threading.Thread(target=writer)
    t.start()
    assert recorded.load(str(fifo)).containers
    t.join(5)
    res = subprocess.run(
        [*CLI, "ls", "--snapshot", "-", "--json"], input=text, capture_output=True, check=False
    )
    assert res.returncode == 0 and json.loads(res.stdout)["containers"], res.stderr


def test_the_ruleset_file_reader_is_bounded_too(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    binary = tmp_path / "bin.rules"
    binary.write_bytes(bytes(range(256)) * 10)
    assert "not UTF-8" in bad(capsys, "rules", "--ruleset-file", str(binary))
    deep = tmp_path / "deep.json"
    deep.write_text('{"nftables": ' + "[" * 100_000)
    assert "nested too deeply" in bad(capsys, "rules", "--ruleset-file", str(deep))
    nul = tmp_path / "nul.rules"
    nul.write_text("*filter\n\x00\nCOMMIT\n")
    assert "NUL" in bad(capsys, "rules", "--ruleset-file", str(nul))
    assert "directory" in bad(capsys, "rules", "--ruleset-file", str(tmp_path))


# --------------------------------------------------------------------------- the terminal


HOSTILE_NAME = "w\x1b]0;owned\x07\x1b[2J\u202e[bold]x[/]\x9b"


def test_names_are_escaped_for_the_terminal(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    def change(d: dict[str, Any]) -> None:
        d["containers"][0]["name"] = HOSTILE_NAME
        d["containers"][0]["labels"] = {"k\x1b[31m": "v\x1b]2;t\x07"}
        d["warnings"] = ["warn \x1b[2J"]
        for ns in d["netns"]:
            for link in ns["links"]:
                if link["name"] == "veth-web":
                    link["name"] = "veth\x1b[5m"
            ns["name"] = (ns.get("name") or "") + "\x1b]0;t\x07"

    snap = snapshot(tmp_path, change)
    for argv in (
        ["ls"],
        ["show", HOSTILE_NAME],
        ["topo"],
        ["path", HOSTILE_NAME, "db:80"],
        ["path", "db", f"{HOSTILE_NAME}:80"],
        ["rules", HOSTILE_NAME],
    ):
        rc, out, err = run(capsys, *argv, "--snapshot", snap)
        assert rc in (0, 1), (argv, err)
        for raw in ("\x1b", "\x07", "\x9b", "\u202e"):
            assert raw not in out + err, (argv, out + err)
        assert "\\x1b" in out + err
    rc, out, _ = run(capsys, "ls", "--snapshot", snap, "--json")
    assert rc == 0 and HOSTILE_NAME in out.encode().decode("unicode_escape")


def test_term_escapes_controls_and_surrogates_only() -> None:
    assert term("web-1 ünïcode") == "web-1 ünïcode"
    assert term("a\x1bb\nc\ud800") == "a\\x1bb\\x0ac\\ud800"
    assert term("\u2066x\u2069") == "\\u2066x\\u2069"


def test_an_error_message_quoting_a_hostile_ref_is_escaped(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    line = bad(capsys, "show", "nope\x1b]0;x\x07", "--snapshot", snapshot(tmp_path))
    assert "\x1b" not in line and "\\x1b" in line


@pytest.mark.parametrize(
    "columns",
    ["", "abc", "0", "-5", "9" * 5000, " 80 "],
    ids=["empty", "abc", "0", "-5", "huge", "80"],
)
def test_bad_columns_are_ignored(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, columns: str
) -> None:
    monkeypatch.setenv("COLUMNS", columns)
    rc, out, _ = run(capsys, "path", "client", "web:80", "--snapshot", str(HEALTHY))
    assert rc == 0 and "verdict: DELIVERED" in out


# --------------------------------------------------------------------------- crashes and pipes


def test_an_unexpected_exception_is_one_line_and_exit_4(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from cntrace.commands import ls

    def boom(args: Any) -> int:
        raise RuntimeError("kaboom")

    monkeypatch.setattr(ls, "run", boom)
    monkeypatch.delenv("CNTRACE_DEBUG", raising=False)
    rc, out, err = run(capsys, "ls", "--snapshot", str(HEALTHY))
    assert rc == Exit.INTERNAL == 4
    assert len(err.splitlines()) == 1 and "internal error" in err and "kaboom" in err
    assert "report" in err and "cntrace ls --snapshot" in err and out == ""
    monkeypatch.setattr(ls, "run", lambda args: (_ for _ in ()).throw(RecursionError()))
    assert run(capsys, "ls")[0] == 4
    monkeypatch.setenv("CNTRACE_DEBUG", "1")
    with pytest.raises(RuntimeError):
        monkeypatch.setattr(ls, "run", boom)
        cli.main(["ls"])


def test_a_broken_pipe_exits_0_quietly() -> None:
    # `cntrace ls ... | head -c 1`: the reader leaves after one byte.
    proc = subprocess.Popen(
        [*CLI, "topo", "--snapshot", str(HEALTHY), "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "0"},
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.read(1)
    proc.stdout.close()
    err = proc.stderr.read()
    assert proc.wait(30) == 0 and err == b"", err


def test_grep_q_on_path_output_exits_with_greps_answer() -> None:
    script = (
        f"{sys.executable} -m cntrace topo --snapshot {HEALTHY} | head -c1 >/dev/null; "
        'echo "${PIPESTATUS[0]}"'
    )
    res = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True)
    assert res.stdout.strip() == "0" and "Traceback" not in res.stderr


# --------------------------------------------------------------------------- arguments


@pytest.mark.parametrize(
    "dest",
    ["2001:db8::1", "[2001:db8::1]", "[2001:db8::1]:80", "pid:27876:80", "netns:cntrace-fx.db:80"],
)
def test_destination_forms(capsys: pytest.CaptureFixture[str], dest: str) -> None:
    rc, out, err = run(capsys, "path", "web", dest, "--snapshot", str(HEALTHY), "--json")
    assert rc in (0, 1), err
    doc = json.loads(out)
    validate(doc)
    assert doc["destination"]["asked"] == dest


@pytest.mark.parametrize("src", ["web", "pid:27873", "netns:cntrace-fx.web", "netns:4026604828"])
def test_every_ref_form_as_source_and_destination(
    capsys: pytest.CaptureFixture[str], src: str
) -> None:
    rc, out, err = run(capsys, "path", src, "db:80", "--snapshot", str(HEALTHY), "--json")
    assert rc in (0, 1), err
    rc, out, err = run(capsys, "path", "client", f"{src}:80", "--snapshot", str(HEALTHY), "--json")
    assert rc == 0, err  # client reaches web on port 80 whatever web is called
    assert json.loads(out)["verdict"]["status"] == "delivered"


@pytest.mark.parametrize(
    "argv,words",
    [
        (["path", "web", "db:" + "9" * 5000], "characters"),
        (["path", "web", "db:" + "9" * 200], "bad port"),
        (["path", "web", "db:70000"], "bad port"),
        (["path", "web", "[1:2]:80"], "not an IP"),
        (["path", "web", ""], "empty destination"),
        (["path", "web", "db:80", "--port", "81"], "give one"),
        (["path", "web", "host:8080", "--proto", "icmp"], "icmp has no ports"),
        (["path", "web", "db", "--proto", "icmp", "--port", "5"], "icmp has no ports"),
        (["path", "web", "db", "--proto", "tcp"], "needs a port"),
        (["path", "web", "db:80", "--port", "0"], "outside 1-65535"),
        (["path", "web", "db:80", "--port", "9" * 5000], "not a port"),
        (["path", "web", "db:80", "--size", "10"], "outside 28-65535"),
        (["path", "web", "db:80", "--timeout", "nan"], "not a number of seconds"),
        (["path", "web", "db:80", "--timeout", "inf"], "not a number of seconds"),
        (["path", "web", "db:80", "--timeout", "-1"], "outside"),
        (["path", "web", "db:80", "--pcap", "/tmp/x.pcap"], "go with --live"),
        (["path", "cntrace-fx", "db:80"], "ambiguous container"),
        (["path", "web", "cntrace-fx:80"], "ambiguous container"),
        (["show", "cntrace-fx"], "candidates: web"),
        (["rules", "web", "--netns", "x"], "not both"),
        (["rules", "web", "--packet", "icmp 1.2.3.4 -> 5.6.7.8 type 300"], "ICMP type 300"),
    ],
)
def test_bad_arguments_are_one_line(
    capsys: pytest.CaptureFixture[str], argv: list[str], words: str
) -> None:
    line = bad(capsys, *argv, "--snapshot", str(HEALTHY))
    assert words in line, line


@pytest.mark.parametrize(
    "packet,words",
    [
        ("icmp 1.2.3.4 -> 5.6.7.8 type 300", "ICMP type 300"),
        ("icmp 1.2.3.4 -> 5.6.7.8 type " + "9" * 5000, "characters"),
        ("icmp 1.2.3.4 -> 5.6.7.8 type " + "9" * 900, "bad packet"),
        ("9999 1.2.3.4 -> 5.6.7.8", "protocol number"),
        ("tcp 1.2.3.4:1 -> 5.6.7.8:80 mark 0x1ffffffff", "32-bit"),
        ("tcp 1.2.3.4:1 -> 5.6.7.8:80 mark -1", "32-bit"),
        ("tcp 1.2.3.4:1 -> 5.6.7.8:99999", "port"),
        ("", "empty --packet"),
    ],
)
def test_packet_oddities_are_one_line(
    capsys: pytest.CaptureFixture[str], packet: str, words: str
) -> None:
    line = bad(capsys, "rules", "--ruleset-file", RULESET, "--packet", packet)
    assert words in line, line


def test_rules_netns_must_be_a_network_namespace(capsys: pytest.CaptureFixture[str]) -> None:
    assert "not a network namespace" in bad(capsys, "rules", "--netns", "/etc/passwd")
    assert "not a network namespace" in bad(capsys, "rules", "--netns", "/proc/self/ns/mnt")


@pytest.mark.parametrize(
    "argv",
    [
        ["trace", "web", "--count", "0"],
        ["trace", "web", "--duration", "nan"],
        ["drops", "--timeout", "inf"],
        ["drops", "--count", "-1"],
        ["lab", "up", "--containers", "100000"],
        ["tui", "--refresh", "nan"],
    ],
)
def test_numbers_of_other_commands_are_range_checked(
    capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    line = bad(capsys, *argv)
    assert "outside" in line or "not a" in line, line


# --------------------------------------------------------------------------- lab state


@contextlib.contextmanager
def lab_dir(path: Path) -> Iterator[Any]:
    from cntrace.lab import state

    old = state.STATE_DIR
    state.STATE_DIR = path
    try:
        yield state
    finally:
        state.STATE_DIR = old


@pytest.mark.parametrize(
    "damage,words",
    [
        (lambda d: d.update(host_netns="../../etc"), "host_netns"),
        (lambda d: d["containers"][0].update(ip="999.0.0.1"), "containers[0].ip"),
        (lambda d: d["containers"][0].update(pid=-4), "containers[0].pid"),
        (lambda d: d.update(networks="[]"), "damaged"),
        (lambda d: d.update(status="x\x1b[2J"), "status"),
    ],
)
def test_a_damaged_lab_state_file_is_one_line(
    tmp_path: Path, damage: Callable[[dict[str, Any]], None], words: str
) -> None:
    from cntrace import codec
    from cntrace.lab import build, spec

    with lab_dir(tmp_path) as state:
        good = build._initial_state(spec.plan("cntrace-dmg", 2))
        state.save(good)
        assert state.load("cntrace-dmg") == good
        doc = codec.to_plain(good)
        damage(doc)
        (tmp_path / "cntrace-dmg.json").write_text(json.dumps(doc))
        with pytest.raises(BadInput) as exc:
            state.load("cntrace-dmg")
        assert words in str(exc.value) and "\n" not in str(exc.value)
        (tmp_path / "deep.json").write_text("[" * 100_000)
        with pytest.raises(BadInput, match="nested too deeply"):
            state.load("deep")
        with pytest.raises(BadInput, match="bad lab name"):
            state.load("../x")


def test_readme_documents_the_exit_codes() -> None:
    text = (REPO / "README.md").read_text()
    for code in Exit:
        assert f"| {int(code)} |" in text, f"exit {int(code)} is not in README.md's table"


def test_an_id_prefix_of_two_containers_is_refused_as_a_destination(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    doc = json.loads((FIXTURES / "discovery" / "docker-iptables.json").read_text())
    by_name = {c["name"]: c for c in doc["containers"]}
    by_name["multi"]["id"] = "abcdefabcdef0001" + by_name["multi"]["id"][16:]
    by_name["user"]["id"] = "abcdefabcdef0002" + by_name["user"]["id"][16:]
    path = tmp_path / "ids.json"
    path.write_text(json.dumps(doc))
    line = bad(capsys, "path", "web", "abcdefabcdef:80", "--snapshot", str(path))
    assert "ambiguous" in line and "multi (abcdefabcdef0001)" in line and "user" in line
    rc, _, err = run(capsys, "path", "web", "abcdefabcdef0002:80", "--snapshot", str(path))
    assert rc in (0, 1) and not err
