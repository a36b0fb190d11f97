"""A seeded slice of the upstream differential (issue 20): 15 rules of iptables' extensions/*.t
and nftables' tests/py (fixtures/netfilter/upstream-differential.jsonl, recorded by
scripts/netfilter_differential.py --seed 20 --record), each loaded alone with the real tool into
a private namespace pair, and real packets crafted from its matches sent from a raw socket. The
kernel's rule counter must equal what cntrace's walk says of the same packet, for every packet.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

from harness import require_root
from safety import GUARD

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = ROOT / "fixtures" / "netfilter" / "upstream-differential.jsonl"


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "netfilter_differential", ROOT / "scripts" / "netfilter_differential.py"
    )
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("netfilter_differential", mod)  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


def test_upstream_rules_agree_with_the_kernel() -> None:
    require_root()
    nd = _script()
    cands = [nd.Candidate(**{**d, "sets": tuple(d["sets"])})
             for d in map(json.loads, FIXTURE.read_text().splitlines())]  # fmt: skip
    assert len(cands) == 15
    pair = nd.Pair()
    GUARD.own_netns(pair.a, pair.b)  # every packet goes to an address of the receiver
    try:
        pair.up()
        outs = [nd.run_one(pair, c) for c in cands]
    finally:
        pair.down()
        GUARD.disown(f"/run/netns/{pair.a}", f"/run/netns/{pair.b}")
    bad = [f"{o.candidate.source} {o.text}: {o.disagreements}" for o in outs if o.disagreements]
    assert not bad, "\n".join(bad)
    left = [f"{o.candidate.source}: {o.excluded}" for o in outs if o.excluded]
    assert not left, "\n".join(left)
    assert sum(o.compared for o in outs) >= 50
    assert sum(1 for o in outs if o.matched) >= 5  # the crafted packets do exercise the matches
