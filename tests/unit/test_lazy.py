"""A lazily read Snapshot (sources.lazy) answers as a full one, and what it recorded replays.

The lazy copies here are filled from recorded lab snapshots (the live loader, which fills them
from the kernel, is compared with a full read on the real lab by
tests/integration/test_lazy_live.py). Each prediction runs on a fresh lazy copy, then the
evidence it read is saved and loaded back (the codec and the untrusted-input checks of a real
replay) and predicted again.
"""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest

from cntrace import codec
from cntrace.errors import BadInput
from cntrace.model import Container, Netns, Snapshot
from cntrace.path import predict
from cntrace.render import path as render_path
from cntrace.sources import lazy, recorded

REPO = Path(__file__).resolve().parents[2]
LAB = sorted((REPO / "fixtures" / "snapshots" / "lab").glob("*.json"))
DESTS = ("web:80", "api:80", "db:5432", "203.0.113.10:80", "host:8080", "web", "upstream:80")


def lazy_copy(full: Snapshot) -> Snapshot:
    """``full`` with every namespace's detail and every resolver unread until first asked."""

    def emptied(obj: Any, names: tuple[str, ...]) -> Any:
        keep = {f.name: getattr(obj, f.name) for f in fields(obj) if f.name not in names}
        return type(obj)(**keep)

    def fill(obj: Any, names: tuple[str, ...]) -> lazy.Fill:
        return lambda: {n: getattr(obj, n) for n in names}

    return Snapshot(
        netns=tuple(
            lazy.defer(emptied(ns, lazy.NETNS_DETAIL), fill(ns, lazy.NETNS_DETAIL))
            for ns in full.netns
        ),
        containers=tuple(
            lazy.defer(emptied(c, lazy.CONTAINER_DETAIL), fill(c, lazy.CONTAINER_DETAIL))
            for c in full.containers
        ),
        hostname=full.hostname,
        kernel=full.kernel,
        warnings=full.warnings,
    )


def answer(s: Snapshot, src: str, dst: str) -> str:
    try:
        return render_path.to_json(predict(s, src, dst))
    except BadInput as exc:
        return f"error: {exc}"


@pytest.mark.parametrize("path", LAB, ids=lambda p: p.stem)
def test_lazy_answers_and_replays_as_full(path: Path) -> None:
    full = recorded.load(str(path))
    sources = sorted({c.name for c in full.containers if c.runtime == "lab"})
    assert sources
    partial = 0
    for src in sources:
        for dst in DESTS:
            want = answer(full, src, dst)
            lz = lazy_copy(full)
            assert all(lazy.pending(ns) for ns in lz.netns)
            assert answer(lz, src, dst) == want, f"{src} -> {dst}"
            read, total = lazy.read_count(lz)
            assert total == len(full.netns)
            saved = lazy.evidence(lz)
            assert all(type(ns) is Netns for ns in saved.netns)
            assert all(type(c) is Container for c in saved.containers)
            if read < total:
                partial += 1
                assert saved.warnings[-1] == lazy.PARTIAL.format(read=read, total=total)
            text = codec.dumps(saved, indent=None, compact=True)
            replayed = recorded.loads(text, "evidence")
            assert answer(replayed, src, dst) == want, f"replay {src} -> {dst}"
    assert partial > 0  # some walks did not need every namespace


def test_fill_runs_once_on_first_detail_read() -> None:
    calls: list[int] = []

    def fill() -> dict[str, Any]:
        calls.append(1)
        return {"sysctls": {"net.ipv4.ip_forward": "1"}, "error": None}

    ns = lazy.defer(Netns(inode=7, name="n"), fill)
    assert ns.name == "n" and ns.links == () and calls == []  # listed fields: no read
    assert lazy.pending(ns)
    assert ns.sysctl("net.ipv4.ip_forward") == "1"
    assert ns.routes == () and ns.sysctls == {"net.ipv4.ip_forward": "1"}
    assert calls == [1] and not lazy.pending(ns)
    assert isinstance(ns, Netns)
    assert ns == Netns(inode=7, name="n", sysctls={"net.ipv4.ip_forward": "1"})
    other = lazy.defer(Netns(inode=8), fill)
    assert ns != other and calls == [1]  # unequal listed fields: the detail stays unread


def test_evidence_of_unread_namespace_keeps_links_only() -> None:
    ns = lazy.defer(Netns(inode=7, name="n"), lambda: {"sysctls": {"a": "1"}})
    snap = lazy.evidence(Snapshot(netns=(ns,)))
    assert snap.netns == (Netns(inode=7, name="n"),)
    assert snap.warnings == (lazy.PARTIAL.format(read=0, total=1),)
    plain = Snapshot(netns=(Netns(inode=1),))
    assert lazy.evidence(plain) is plain


def test_every_netns_field_is_listed_or_deferred() -> None:
    """A new Netns field must be read by the listing or named in NETNS_DETAIL (else a lazy
    read would leave it at its default and answer differently from a full read)."""
    listed = {"inode", "name", "paths", "is_root", "links", "pids"}
    assert {f.name for f in fields(Netns)} == listed | set(lazy.NETNS_DETAIL)
    assert {f.name for f in fields(Container)} & set(lazy.CONTAINER_DETAIL) == {"resolver"}
