"""The console's data side without textual: rows, attribution, queries and reports."""

from __future__ import annotations

import datetime
import json
from pathlib import Path as FsPath

import pytest
from tuikit import lab_snapshot

from cntrace.errors import BadInput
from cntrace.model import Packet
from cntrace.path import predict
from cntrace.render.discovery_json import ls_doc
from cntrace.sources import recorded
from cntrace.tui.query import PathQuery, parse_destination
from cntrace.tui.report import build_report, report_name, write_report
from cntrace.tui.views.containers import container_rows, filter_rows
from cntrace.tui.views.drops import DropAttributor
from cntrace.tui.views.path import deciding_rule, hop_columns, hop_rows
from cntrace.tui.views.topology import topology_nodes


def test_rows_are_the_ls_rows() -> None:
    snap = lab_snapshot("healthy")
    rows = container_rows(snap)
    assert [r.name for r in rows] == [c["name"] for c in ls_doc(snap)["containers"]]
    assert [r.name for r in filter_rows(rows, "LAB1")] == ["api", "db"]
    assert filter_rows(rows, "") == rows


def test_topology_tree_holds_every_container_once() -> None:
    snap = lab_snapshot("healthy")
    seen: list[str] = []

    def walk(nodes: list) -> None:  # type: ignore[type-arg]
        for n in nodes:
            if n.ref.kind == "container":
                seen.append(n.ref.name)
            walk(n.children)

    walk(topology_nodes(snap))
    assert sorted(seen) == sorted(c.id for c in snap.containers)


def test_drop_attribution() -> None:
    snap = lab_snapshot("healthy")
    by = {c.name: c for c in snap.containers}
    host = by["web"].host_netns
    assert host is not None
    lab0 = next(lk for lk in snap.ns(host).links if lk.name == "lab0")  # type: ignore[union-attr]
    att = DropAttributor(snap)
    assert att.attribute(by["web"].netns, 2).container == "web"
    # a routed packet dropped on the bridge: its source address names the container
    pkt = Packet("tcp", "10.210.0.3", "203.0.113.10", 40000, 80)
    got = att.attribute(host, lab0.ifindex, pkt)
    assert got.container == "client"
    assert got.where.endswith(" lab0")
    # the same address in another namespace is someone else's (labs reuse subnets)
    assert att.attribute(by["upstream"].netns + 999, 1, pkt).container is None  # type: ignore[operator]


def test_hop_rows_mark_the_deciding_hop() -> None:
    path = predict(lab_snapshot("forward-drop"), "client", "203.0.113.10:80")
    rows = dict(hop_rows(path))
    assert str(rows["hop-6"][0]) == "✗6"
    assert "LIVE" not in hop_columns(path)
    rule = deciding_rule(path)
    assert rule is not None and (rule[0].chain, rule[0].position) == ("DOCKER-USER", 1)


@pytest.mark.parametrize(
    ("text", "dest", "proto"),
    [
        ("web:80", "web:80", None),
        ("web:9000 udp", "web:9000", "udp"),
        (" web  ICMP ", "web", "icmp"),
    ],
)
def test_parse_destination(text: str, dest: str, proto: str | None) -> None:
    q = parse_destination("client", text)
    assert (q.source, q.destination, q.proto) == ("client", dest, proto)


@pytest.mark.parametrize("text", ["", "   ", "web:80 sctp", "web tcp udp"])
def test_parse_destination_rejects(text: str) -> None:
    with pytest.raises(BadInput):
        parse_destination("client", text)


def test_report_name_is_a_safe_file_name() -> None:
    when = datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)
    name = report_name(PathQuery("ns/x y", "[::1]:80"), when)
    assert name == "cntrace-report-ns_x_y-to-_1_80-20260102-030405.json"


def test_report_round_trip(tmp_path: FsPath) -> None:
    snap = lab_snapshot("loopback-bind")
    query = PathQuery("client", "web:80")
    path = predict(snap, query.source, query.destination)
    first = write_report(path, snap, query, directory=str(tmp_path), origin="test")
    second = write_report(path, snap, query, directory=str(tmp_path), origin="test")
    assert first != second, "a second export never overwrites the first"
    doc = json.loads(FsPath(first).read_text())
    assert doc == build_report(
        path, snap, query, origin="test", created_at=doc["created_at"], file_name=first
    )
    assert recorded.load(first) == snap
    with pytest.raises(BadInput):
        write_report(path, snap, query, directory=str(tmp_path / "missing"), origin="test")
