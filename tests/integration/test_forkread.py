"""The forked readers (sources.forkread) read what the in-process reader reads.

`ls` and the console's lazy read list every namespace through a child that dumps while the parent
decodes; `snapshot --save` reads every namespace in full through two. On the lab (its namespaces
plus whatever else the host has) the forked listing and the forked full read must equal the
in-process ones, a lazy namespace read through the listing must fill its detail as a full read
does, and a namespace that cannot be entered must come back as the same error read_links gives.
"""

from __future__ import annotations

import json
import os

import pytest
from labkit import Lab

from cntrace import codec
from cntrace.model import Snapshot
from cntrace.sources import forkread, live, namespaces
from cntrace.sources.namespaces import Space


def _plain(snap: Snapshot) -> str:
    return codec.dumps((snap.netns, snap.containers), indent=None, compact=True)


def test_forked_listing_is_the_in_process_listing(
    lab: Lab, monkeypatch: pytest.MonkeyPatch
) -> None:
    forks = []
    real = forkread.read_forked

    def counted(spaces: list[Space], plan: forkread.Plan):  # type: ignore[no-untyped-def]
        forks.append((len(spaces), plan.full))
        return real(spaces, plan)

    monkeypatch.setattr(forkread, "read_forked", counted)
    monkeypatch.setattr(forkread, "FORK_MIN", 10**9)
    alone = live.read_snapshot(detail=False)
    assert not forks
    monkeypatch.setattr(forkread, "FORK_MIN", 1)
    forked = live.read_snapshot(detail=False)
    assert forks == [(len(forked.netns), False)]
    assert _plain(forked) == _plain(alone)


def _settled(snap: Snapshot) -> object:
    """A full read as plain values, without what moves between two reads a second apart: the
    conntrack count, neighbour states and iptables-save's "# Generated ... on <date>" lines."""
    netns, containers = json.loads(_plain(snap))
    for ns in netns:
        ns.get("sysctls", {}).pop("net.netfilter.nf_conntrack_count", None)
        for n in ns.get("neighbors", ()):
            n.pop("state", None)
        for key, text in (ns.get("ruleset") or {}).items():
            if isinstance(text, str):
                ns["ruleset"][key] = [ln for ln in text.splitlines() if not ln.startswith("# ")]
    return netns, containers


def test_forked_full_read_is_the_in_process_full_read(
    lab: Lab, monkeypatch: pytest.MonkeyPatch
) -> None:
    plans = []
    real = forkread.read_forked

    def counted(spaces: list[Space], plan: forkread.Plan):  # type: ignore[no-untyped-def]
        plans.append(plan)
        return real(spaces, plan)

    monkeypatch.setattr(forkread, "read_forked", counted)
    monkeypatch.setattr(forkread, "FORK_MIN", 10**9)
    alone = live.read_snapshot()
    assert not plans
    monkeypatch.setattr(forkread, "FORK_MIN", 1)
    forked = live.read_snapshot()
    assert [(p.full, p.children) for p in plans] == [(True, 2)]
    host = lab.state.host_netns
    (ns,) = [n for n in forked.netns if n.name == host]
    assert ns.routes and ns.fdb and ns.ruleset.iptables_nft and ns.sysctls
    assert any(n.sockets for n in forked.netns if n.name and n.name.startswith(lab.name))
    assert _settled(forked) == _settled(alone)


def test_lazy_fill_after_a_forked_listing(lab: Lab, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(forkread, "FORK_MIN", 1)
    lazy = live.read_snapshot(lazy=True)
    full = live.read_snapshot()
    host = lab.state.host_netns
    (got,) = [ns for ns in lazy.netns if ns.name == host]
    (want,) = [ns for ns in full.netns if ns.name == host]
    assert got.routes == want.routes and got.routes
    assert got.fdb == want.fdb and got.ruleset.iptables_nft


def test_a_namespace_that_cannot_be_entered_is_an_error(tmp_path: str) -> None:
    gone = Space(inode=1, paths=[os.path.join(str(tmp_path), "no-such-netns")])
    here = Space(inode=2, paths=["/proc/self/ns/net"])
    got = list(forkread.list_forked([gone, here], loopback=True))
    assert got == [here] and here.listed and here.raw_links
    assert gone.error == "vanished during discovery (No such file or directory)"
    ref = Space(inode=1, paths=[os.path.join(str(tmp_path), "no-such-netns")])
    namespaces.open_many([ref], full=False, sockets=False, rulesets=False)
    assert ref.error == gone.error
