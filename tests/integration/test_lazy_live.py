"""The lazily read live host answers exactly as the fully read one, for every lab fault.

For the healthy lab and each fault of `cntrace lab faults`, every question of tests/labcases.py
is predicted on a full read of the host (what `cntrace snapshot --save` records) and on a fresh
lazy read (what `cntrace path` does): the JSON documents are identical, the lazy read entered
fewer namespaces than the host has, and the evidence it recorded, saved and loaded back, replays
to the same document. The same for the narrow read `cntrace path` takes first (around the source,
widened where the walk leads: commands.path.read_for), where it does not fall back to the listing,
and again with every bridge host read as a big one is (sources.port_read: plain ports left out).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from labcases import CASES
from labkit import Lab

from cntrace import codec
from cntrace.commands.path import read_for
from cntrace.errors import BadInput
from cntrace.lab.faults import FAULTS
from cntrace.model import Snapshot
from cntrace.path import predict
from cntrace.render import path as render_path
from cntrace.sources import lazy, live, port_read, recorded

QUESTIONS = sorted({(c.src, c.dst, c.proto, c.size) for c in CASES}, key=str)


def _dst(lab: Lab, dst: str) -> str:
    name, _, port = dst.partition(":")
    where = {"internet": lab.state.internet_ip, "host": "host"}.get(name, f"{lab.name}.{name}")
    return f"{where}:{port}" if port else where


def _answer(snap: Snapshot, src: str, dst: str, proto: str | None, size: int | None) -> str:
    try:
        return render_path.to_json(predict(snap, src, dst, proto=proto, size=size))
    except BadInput as exc:
        return f"error: {exc}"


def _counted(read: Callable[..., bool], taken: list[int]) -> Callable[..., bool]:
    """port_read.read, counting the namespaces it read whole (appended per question)."""
    taken.append(0)

    def counting(*args: Any, **kwargs: Any) -> bool:
        ok = read(*args, **kwargs)
        taken[-1] += ok
        return ok

    return counting


@pytest.mark.parametrize("fault", [None, *FAULTS], ids=lambda f: f or "healthy")
def test_lazy_read_predicts_as_the_full_read(lab: Lab, fault: str | None) -> None:
    if fault:
        assert lab.run("lab", "break", fault).returncode == 0
    narrow = 0
    taken: list[int] = []
    try:
        full = live.read_snapshot()
        for src, dst, proto, size in QUESTIONS:
            args = (f"{lab.name}.{src}", _dst(lab, dst), proto, size)
            want = _answer(full, *args)
            lz = live.read_snapshot(lazy=True)
            assert _answer(lz, *args) == want, f"{fault}: {args}"
            read, total = lazy.read_count(lz)
            assert 0 < read < total, (read, total)
            saved = lazy.evidence(lz)
            replayed = recorded.loads(codec.dumps(saved, indent=None, compact=True), "evidence")
            assert _answer(replayed, *args) == want, f"{fault}: replay {args}"
            found = read_for(args[0], args[1], proto, None, size)
            if found is not None:
                narrow += 1
                snap, _ = found
                assert _answer(snap, *args) == want, f"{fault}: narrow {args}"
                assert len(snap.netns) < len(full.netns)
                saved = lazy.evidence(snap)
                replayed = recorded.loads(codec.dumps(saved, indent=None, compact=True), "ev")
                assert _answer(replayed, *args) == want, f"{fault}: narrow replay {args}"
                with pytest.MonkeyPatch.context() as mp:  # as on a host of many bridge ports
                    mp.setattr(port_read, "BIG", 1)
                    mp.setattr(port_read, "read", _counted(port_read.read, taken))
                    few = read_for(args[0], args[1], proto, None, size)
                assert few is not None, f"{fault}: ports read one by one {args}"
                assert taken[-1], f"{fault}: no namespace was read port by port {args}"
                assert _answer(few[0], *args) == want, f"{fault}: ports read one by one {args}"
        assert narrow, "no question took the narrow read"
    finally:
        if fault:
            assert lab.run("lab", "fix", fault).returncode == 0
