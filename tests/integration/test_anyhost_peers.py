"""Veth peers across non-root namespaces, and naming (issue 12), on real namespaces.

    a (a0 10.77.0.1/24) ==veth== b (b0 10.77.0.2/24)      both ends ifindex 2
    c (c0 10.77.1.1/24) ==veth== d (d0 10.77.1.2/24)      both ends ifindex 2 again
    x (x1, x2) ==veth== y (y0), ==veth== z (z0)     x numbers y, z 0 and 1; both see x as 0

The mirrored pairs (a/b, c/d) cannot be told apart by ifindex; the per-namespace netnsids
(RTM_GETNSID) must settle them, and x/y/z make the ids differ between namespaces.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator

import pytest
from clirun import run
from harness import require_root
from hostkit import World, new_world

from cntrace.model import Container, Snapshot
from cntrace.sources import live
from cntrace.topology import Topology, resolve_ref


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    require_root()
    w = new_world("p")
    try:
        w.add("a", "b", "c", "d", "x", "y", "z")
        w.veth("a", "a0", "b", "b0")
        w.veth("c", "c0", "d", "d0")
        w.veth("x", "x1", "y", "y0")
        w.veth("x", "x2", "z", "z0")
        for role, dev, cidr in (
            ("a", "a0", "10.77.0.1/24"),
            ("b", "b0", "10.77.0.2/24"),
            ("c", "c0", "10.77.1.1/24"),
            ("d", "d0", "10.77.1.2/24"),
        ):
            w.ip(role, f"addr add {cidr} dev {dev}")
        yield w
    finally:
        w.down()


def _peer_of(snap: Snapshot, ns_name: str, link: str) -> tuple[str | None, str]:
    topo = Topology(snap)
    ns = next(n for n in snap.netns if n.name == ns_name)
    lk = next(lk for lk in ns.links if lk.name == link)
    ref = topo.peer(ns, lk)
    assert ref is not None, f"{link}@{ns_name}: peer not resolved"
    return ref.netns.name, ref.link.name


def test_every_peer_resolves_whichever_namespace_holds_it(world: World) -> None:
    snap = live.read_snapshot(detail=False)
    for (a, a_if), (b, b_if) in (
        (("a", "a0"), ("b", "b0")),
        (("c", "c0"), ("d", "d0")),
        (("x", "x1"), ("y", "y0")),
        (("x", "x2"), ("z", "z0")),
    ):
        assert _peer_of(snap, world.ns(a), a_if) == (world.ns(b), b_if)
        assert _peer_of(snap, world.ns(b), b_if) == (world.ns(a), a_if)
    ids = world.ip("x", "netns list-id")
    assert "nsid 0" in ids and "nsid 1" in ids  # x's ids differ from y's and z's (each 0)


def test_host_is_where_the_peer_is(world: World) -> None:
    snap = live.read_snapshot(only=[f"netns:{world.ns('a')}"])
    c = resolve_ref(snap, world.ns("a"))  # the `ip netns` namespace as a container
    b = next(n for n in snap.netns if n.name == world.ns("b"))
    assert isinstance(c, Container) and c.host_netns == b.inode


def _cntrace(*args: str) -> subprocess.CompletedProcess[str]:
    return run(*args)


def test_issue_reproduction(world: World) -> None:
    a, b = world.ns("a"), world.ns("b")
    show = _cntrace("show", f"netns:{a}")
    assert show.returncode == 0, show.stderr
    assert f"host veth: b0 (ifindex 2) in {b}" in show.stdout
    assert "no host side" not in show.stdout
    world.listen("b", 7077)
    path = _cntrace("path", f"netns:{a}", "10.77.0.2:7077", "--json")
    doc = json.loads(path.stdout)
    assert doc["verdict"]["status"] == "delivered", doc["verdict"]
    assert "beyond this host" not in doc["verdict"]["summary"]
    request = [h for h in doc["hops"] if h["direction"] == "request"]
    assert request[-1]["kind"] == "socket" and request[-1]["netns_label"] == b
    assert world.connect("a", "10.77.0.2", 7077) == "delivered"  # the kernel agrees


def test_pid_of_a_host_process_names_the_host() -> None:
    require_root()
    snap = live.read_snapshot(only=[f"pid:{os.getpid()}"], pids=[os.getpid()])
    target = resolve_ref(snap, f"pid:{os.getpid()}")
    root = snap.root
    assert root is not None
    here = os.readlink("/proc/self/ns/net")
    assert getattr(target, "netns", None) == int(here[5:-1])
    if root.inode == int(here[5:-1]):
        assert Topology(snap).label(root.inode) == "host"


def test_pid_1_names_the_host_or_says_proc_denies_it() -> None:
    require_root()
    from cntrace.sources.procs import netns_denied

    res = _cntrace("show", "pid:1")
    if netns_denied(1) is not None:  # this sandbox shields PID 1's ns links
        assert res.returncode == 3, res.stderr
        assert "/proc/1/ns/net is not readable" in res.stderr
        assert res.stderr.count("\n") == 1 and "Traceback" not in res.stderr
    else:
        assert res.returncode == 0 and res.stdout.startswith("host")
    host = _cntrace("show", "host")
    assert host.returncode == 0 and host.stdout.startswith("host"), host.stderr
