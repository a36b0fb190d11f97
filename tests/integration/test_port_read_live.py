"""A big bridge host's links read without the kernel's quadratic full dump (sources.port_read),
on real namespaces, with the threshold lowered so a small host counts as big.

    h  br0 -- pa ==veth== a:eth0     plain: its peer elsewhere          -> not read in full
          -- pc ==veth== c:eth0     plain, made in c: IFLA_LINK 2 names h's br0 as well
          -- pb ==veth== b:eth0     holds a global address               -> read
          -- l1 ==veth== l2 (in h)  both ends here                       -> read
          -- vx0 vxlan on ul        names its lower device, not a peer   -> read
          -- mv0 macvlan on ul      likewise                             -> read
       ul ==veth== u:e0            the underlay (no master)             -> read

Every link the narrow read holds is the full dump's own record, and the full dump's links are
exactly those plus the ports left out.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator

import pytest
from harness import require_root
from hostkit import World, new_world

from cntrace.sources import port_read
from cntrace.sources.namespaces import Space, read_links


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    require_root()
    w = new_world("pr")
    try:
        w.add("h", "a", "b", "c", "u")
        w.ip("h", "link add br0 type bridge")
        w.ip("h", "link set br0 up")
        w.veth("h", "pa", "a", "eth0")
        w.veth("h", "pb", "b", "eth0")
        w.veth("c", "eth0", "h", "pc")  # c's eth0 is ifindex 2, as br0 is in h
        w.ip("h", "link add l1 type veth peer name l2")
        w.veth("h", "ul", "u", "e0")
        w.ip("h", "addr add 10.84.1.1/24 dev ul")
        w.ip("h", "link add vx0 type vxlan id 42 local 10.84.1.1 dev ul dstport 4789")
        w.ip("h", "link add mv0 link ul type macvlan mode bridge")
        for port in ("pa", "pb", "pc", "l1", "vx0", "mv0"):
            w.ip("h", f"link set {port} master br0")
            w.ip("h", f"link set {port} up")
        w.ip("h", "addr add 10.84.9.1/24 dev pb")
        yield w
    finally:
        w.down()


def _space(w: World, role: str) -> Space:
    return Space(inode=os.stat(w.path(role)).st_ino, paths=[w.path(role)], name=w.ns(role))


def test_plain_ports_are_left_out_and_every_other_link_is_the_full_dumps(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    full = _space(world, "h")
    read_links([full], full=False, sockets=False, rulesets=False)
    monkeypatch.setattr(port_read, "BIG", 1)
    small = _space(world, "a")  # where the registered kinds are asked
    narrow = _space(world, "h")
    read_links([narrow, small], full=False, sockets=False, rulesets=False, narrow=True)
    try:
        by_name = {r.name: r for r in full.raw_links}
        assert {"pa", "pc", "vx0", "mv0"} <= set(by_name)
        assert by_name["pc"].link == 2 and by_name["br0"].ifindex == 2  # the collision
        assert {p.name for p in narrow.unread.values()} == {"pa", "pc"}
        assert set(narrow.unread) == {by_name["pa"].ifindex, by_name["pc"].ifindex}
        for r in narrow.raw_links:
            assert r == by_name[r.name], r.name
        kept = {r.name for r in narrow.raw_links} | {p.name for p in narrow.unread.values()}
        assert kept == set(by_name)
        assert {p.master for p in narrow.unread.values()} == {by_name["br0"].ifindex}
    finally:
        for sp in (full, narrow, small):
            if sp.conn is not None:
                sp.conn.close()


def test_a_host_below_the_threshold_takes_the_full_dump(world: World) -> None:
    narrow = _space(world, "h")
    read_links([narrow], full=False, sockets=False, rulesets=False, narrow=True)
    try:
        assert narrow.unread == {}
        assert {"pa", "pc", "pb", "l1", "vx0", "mv0", "ul"} <= {r.name for r in narrow.raw_links}
    finally:
        if narrow.conn is not None:
            narrow.conn.close()


def test_the_registered_kinds_are_the_kernels(world: World) -> None:
    """A kind is registered exactly when the kernel can make a device of it (vxlan and
    macvlan are built in here; ipvlan and 802.1q are not), and asking costs no full dump."""
    sp = _space(world, "a")
    read_links([sp], full=False, sockets=False, rulesets=False)
    try:
        assert sp.conn is not None
        kinds = port_read.registered_kinds(sp.conn)
        assert {"vxlan", "macvlan"} <= set(kinds)
        for kind, extra in (("ipvlan", ""), ("vlan", " id 5"), ("macvtap", "")):
            made = subprocess.run(
                ["ip", "-n", world.ns("a"), "link", "add", "link", "eth0", "name", "t0",
                 "type", kind, *extra.split()],
                capture_output=True, check=False,
            ).returncode == 0  # fmt: skip
            if made:
                world.ip("a", "link del t0")
            assert (kind in kinds) == made, kind
    finally:
        sp.conn.close()
