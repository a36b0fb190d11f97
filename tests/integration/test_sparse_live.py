"""A narrow read leaves out the bridge ports whose far end it did not read, and brings one back when
a widening reads its far end (sources.sparse), with the port's detail decoded again.

`upstream -> host:8080` is DNATed to web: the first prediction reads upstream, the host and the
root, and leaves web's, api's, db's and client's ports out; the answer points at web's address, so
the next round reads web, and its port (with its netconf entries) is back in the host namespace,
whose detail the first round had already filled. The answer is the full read's.
"""

from __future__ import annotations

from labkit import Lab

from cntrace.commands.path import read_for
from cntrace.model import Netns, Snapshot
from cntrace.path import predict
from cntrace.render import path as render_path
from cntrace.sources import lazy, live, pathread, sparse


def _host(snap: Snapshot, lab: Lab) -> Netns:
    (host,) = [ns for ns in snap.netns if ns.name == lab.state.host_netns]
    return host


def test_ports_left_out_and_brought_back(lab: Lab) -> None:
    src, dst = f"{lab.name}.upstream", "host:8080"
    veth = {c.name: c.host_veth for c in lab.state.containers}
    reader = live.read_path(src, dst)
    assert reader is not None
    try:
        first = reader.snapshot()
        host = _host(first, lab)
        names = {lk.name for lk in host.links}
        assert not names & set(veth.values()), names  # no far end read: every port left out
        assert any(w.startswith("partial snapshot: 4 bridge ports") for w in first.warnings)
        result = predict(first, src, dst)
        assert not lazy.pending(host)  # the walk read the host's detail with the ports out
        assert f"net.ipv4.conf.{veth['web']}.forwarding" not in host.sysctls
        inodes, nsids = pathread.wants(first, result, first.containers)
        assert reader.widen(inodes, nsids)
        second = reader.snapshot()
        host = _host(second, lab)
        names = {lk.name for lk in host.links}
        assert veth["web"] in names and veth["client"] not in names
        port = next(lk for lk in host.links if lk.name == veth["web"])
        assert port.addresses and all(a.scope == "link" for a in port.addresses)
        assert host.sysctls[f"net.ipv4.conf.{veth['web']}.forwarding"] == "1"
        assert any(w.startswith("partial snapshot: 3 bridge ports") for w in second.warnings)
    finally:
        reader.close()
    found = read_for(src, dst, None, None, None)
    assert found is not None
    snap, narrow = found
    full = predict(live.read_snapshot(), src, dst)
    assert render_path.to_json(narrow) == render_path.to_json(full)
    assert narrow.verdict.status == "delivered"
    assert any(w.startswith(sparse.NOTE.split("{")[0]) for w in lazy.evidence(snap).warnings)
