"""One construct the model does not know must not make a whole nft ruleset unreadable (issue 20)."""

from __future__ import annotations

import json

from cntrace.netfilter.nft_json import parse
from cntrace.netfilter.steps import Unsupported, Verdict


def _doc(exprs: list[object]) -> str:
    return json.dumps(
        {
            "nftables": [
                {"table": {"family": "ip", "name": "t", "handle": 1}},
                {
                    "chain": {
                        "family": "ip",
                        "table": "t",
                        "name": "c",
                        "handle": 1,
                        "type": "filter",
                        "hook": "input",
                        "prio": 0,
                        "policy": "accept",
                    }
                },
                {"rule": {"family": "ip", "table": "t", "chain": "c", "handle": 2, "expr": exprs}},
            ]
        }
    )


def _steps(exprs: list[object]) -> tuple[object, ...]:
    (table,) = parse(_doc(exprs)).tables
    (chain,) = table.chains.values() if isinstance(table.chains, dict) else table.chains
    (rule,) = chain.rules
    return tuple(rule.steps)


def test_string_statement_is_an_opaque_uncertain_step() -> None:
    """nft 1.0.6 prints some statements only as JSON strings."""
    steps = _steps(["update @mapping { ip saddr : tcp sport }", {"accept": None}])
    assert isinstance(steps[0], Unsupported)
    assert "update @mapping" in steps[0].reason
    assert steps[1] == Verdict("accept")


def test_unknown_statement_is_named_not_fatal() -> None:
    steps = _steps([{"frobnicate": {"x": 1}}, {"drop": None}])
    assert isinstance(steps[0], Unsupported)
    assert "frobnicate" in steps[0].reason
    assert steps[1] == Verdict("drop")
