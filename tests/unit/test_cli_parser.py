"""The CLI registers only the command it runs, yet help and usage errors still name them all."""

from __future__ import annotations

import subprocess
import sys

from clirun import run, run_ok

from cntrace import cli


def _commands(parser: object) -> set[str]:
    sub = next(a for a in parser._actions if a.dest == "command")  # type: ignore[attr-defined]
    return set(sub.choices)


def test_a_command_registers_only_itself() -> None:
    assert _commands(cli.build_parser(["ls", "--json"])) == {"ls"}
    assert _commands(cli.build_parser(["path", "a", "b"])) == {"path"}


def test_help_and_unknown_commands_see_every_command() -> None:
    for argv in ([], ["--help"], ["-h", "path"], ["pth"], None):
        assert _commands(cli.build_parser(argv)) == set(cli.COMMANDS), argv


def test_from_the_command_line() -> None:
    out = run_ok("--help", inproc=True).stdout
    assert all(name in out for name in cli.COMMANDS)
    bad = run("pth", "x")
    assert bad.returncode == 2 and "invalid choice: 'pth'" in bad.stderr
    assert "Traceback" not in bad.stderr
    # of the command modules, `path` alone is imported to run `path` (shared helpers aside)
    probe = (
        "import sys; from cntrace import cli; cli.build_parser(['path']); "
        "print(sorted(m for m in sys.modules if m.startswith('cntrace.commands.') "
        "and not m.startswith('cntrace.commands._')))"
    )
    mods = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert mods.stdout.strip() == "['cntrace.commands.path']", mods.stdout
