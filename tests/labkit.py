"""Test access to a real lab: bring one up under a unique name, probe through it, tear it down."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from clirun import ARGV, run, run_ok
from safety import GUARD, probe

from cntrace.lab import state
from cntrace.lab.state import LabState

CNTRACE = ARGV  # for the CLI run under another command (setpriv, unshare, a shell)


def cntrace(
    *args: str, check: bool = False, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """The real CLI as a user runs it (clirun); ``check``: it must exit 0 without a crash."""
    return run_ok(*args, timeout=timeout) if check else run(*args, timeout=timeout)


@dataclass
class Lab:
    name: str

    @property
    def state(self) -> LabState:
        loaded = state.load(self.name)
        assert loaded is not None, f"lab {self.name} is not up"
        return loaded

    def nspath(self, role: str) -> str:
        return f"/run/netns/{self.name}.{role}"

    def ip(self, container: str) -> str:
        return self.state.container(container).ip

    def probe(
        self, src: str, ip: str, port: int, proto: str = "tcp", size: int = 0, timeout: float = 1.5
    ) -> str:
        return probe(self.nspath(src), ip, port, proto, timeout=timeout, size=size)

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return (
            cntrace(*args[:2], "--name", self.name, *args[2:])
            if args[0] == "lab"
            else cntrace(*args)
        )


def unique_name(tag: str = "t") -> str:
    return f"cntrace-{tag}{os.getpid() % 100000}"


@contextmanager
def lab_up(name: str, *extra: str) -> Iterator[Lab]:
    """A lab for the duration of the block; always removed, even when the block fails."""
    res = cntrace("lab", "up", "--name", name, *extra)
    assert res.returncode == 0, res.stderr
    lab = Lab(name)
    owned = [f"/run/netns/{n}" for n in lab.state.namespaces]
    GUARD.own(*owned)
    try:
        yield lab
    finally:
        cntrace("lab", "down", "--name", name)
        GUARD.disown(*owned)
        assert not [p for p in Path("/run/netns").glob(f"{name}.*")], "lab left namespaces"


def root_state() -> dict[str, str]:
    """What the root namespace looks like: namespaces, links, and both rulesets."""

    def out(*cmd: str) -> str:
        return subprocess.run(cmd, capture_output=True, text=True, check=False).stdout

    def strip_comments(text: str) -> str:
        return "\n".join(line for line in text.splitlines() if not line.startswith("#"))

    return {
        "netns": out("ip", "netns", "list"),
        "links": out("ip", "-o", "link", "show"),
        "addresses": out("ip", "-o", "addr", "show"),
        "routes": out("ip", "route", "show", "table", "all"),
        "nft": out("nft", "list", "ruleset"),
        "iptables-legacy": strip_comments(out("iptables-legacy-save")),
    }
