"""Dormant nft tables (issue 20): flags from the kernel, a checked JSON, and no packet meets them.

nft 1.0.6 prints a table's single flag from freed memory (json.c table_flags_json): a garbage
string, or a document cut short right after `"flags":`. tests/integration/test_nft_dormant.py
reads a real dormant table; these cases pin each piece without a kernel.
"""

from __future__ import annotations

import json
import struct

import pytest

from cntrace import netfilter
from cntrace.model import Packet, Ruleset
from cntrace.netfilter import families
from cntrace.sources import rulesets
from cntrace.sources.netlink import decode, proto

DOC_HEAD = {"metainfo": {"version": "1.0.6", "json_schema_version": 1}}


def _doc(dormant_flags: object) -> str:
    """Two tables with the same input chain: `t` (flags as given) drops, `t2` counts and
    accepts port 22; the kernel's dump of that namespace with nft 1.0.6 printing `flags`."""
    items: list[object] = [DOC_HEAD]
    for name, verdict, handle in (("t", "drop", 1), ("t2", "accept", 2)):
        table: dict[str, object] = {"family": "ip", "name": name, "handle": handle}
        if name == "t" and dormant_flags is not None:
            table["flags"] = dormant_flags
        items += [
            {"table": table},
            {
                "chain": {
                    "family": "ip", "table": name, "name": "c", "handle": 1, "type": "filter",
                    "hook": "input", "prio": 0, "policy": "accept",
                }
            },
            {
                "rule": {
                    "family": "ip", "table": name, "chain": "c", "handle": 2,
                    "expr": [{"counter": {"packets": 0, "bytes": 0}}, {verdict: None}],
                }
            },
        ]  # fmt: skip
    return json.dumps({"nftables": items})


def _walk(nf: netfilter.Netfilter) -> netfilter.Walk:
    return netfilter.walk(
        nf, Packet("tcp", "10.0.0.1", "10.0.0.2", 40000, 22), netfilter.NetnsFacts.unknown(),
        kind="input", iif="eth0",
    )  # fmt: skip


@pytest.mark.parametrize("flags", ["dormant", ["dormant"]])
def test_a_dormant_table_sees_no_packets(flags: object) -> None:
    nf = netfilter.load(Ruleset(nft_json=_doc(flags)))
    t = {x.name: x for x in nf.tables}
    assert t["t"].dormant and not t["t2"].dormant
    assert len(t["t"].chains["c"].rules) == 1  # its rules are still read and listed
    assert [c.table for c in nf.base_chains("input", 4)] == ["t2"]
    w = _walk(nf)
    assert w.verdict == "accept" and w.deciding is not None and w.deciding.table == "t2"
    assert any("ip t is dormant" in n for n in nf.ignored)
    awake = netfilter.load(Ruleset(nft_json=_doc(None)))
    assert _walk(awake).verdict == "drop"  # the same table without the flag drops


def test_a_dormant_netdev_table_is_not_walked() -> None:
    chain = {
        "family": "netdev", "table": "n", "name": "ing", "handle": 1, "type": "filter",
        "hook": "ingress", "prio": 0, "policy": "drop", "dev": ["eth0"],
    }  # fmt: skip
    table = {"family": "netdev", "name": "n", "handle": 1, "flags": "dormant"}
    nf = netfilter.load(
        Ruleset(nft_json=json.dumps({"nftables": [{"table": table}, {"chain": chain}]}))
    )
    assert families.family_chains(nf, "netdev", "ingress", "eth0") == ()
    assert not families.has_family(nf, "netdev")


def _table_msg(family: int, name: str, flags: int | None) -> bytes:
    def attr(atype: int, payload: bytes) -> bytes:
        n = 4 + len(payload)
        return struct.pack("=HH", n, atype) + payload + b"\0" * (-n % 4)

    body = proto.NFGENMSG.pack(family, 0, 0) + attr(proto.NFTA_TABLE.NAME, name.encode() + b"\0")
    if flags is not None:
        body += attr(proto.NFTA_TABLE.FLAGS, struct.pack(">I", flags))
    return struct.pack("=IHHII", 16 + len(body), proto.NFT_MSG_GETTABLE, 2, 1, 0) + body


def test_table_flags_are_read_from_the_kernel_dump() -> None:
    done = struct.pack("=IHHII", 20, proto.NLMSG_DONE, 2, 1, 0) + struct.pack("=i", 0)
    chunk = _table_msg(2, "t", 1) + _table_msg(1, "t2", 0) + _table_msg(10, "x", None)
    assert decode.parse_nft_tables([chunk + done]) == [
        ("ip", "t", proto.NFT_TABLE_F_DORMANT),
        ("inet", "t2", 0),
        ("ip6", "x", 0),
    ]


KERNEL = [("ip", "t", 1), ("ip", "t2", 0)]


def test_the_printed_flags_are_replaced_by_the_kernels() -> None:
    fixed = rulesets._with_kernel_flags(_doc("Lester Gooch #5"), KERNEL)  # freed memory
    assert fixed is not None
    tables = [i["table"] for i in json.loads(fixed)["nftables"] if "table" in i]
    assert [t.get("flags") for t in tables] == [["dormant"], None]


def test_a_dump_cut_short_after_flags_is_refused() -> None:
    whole = _doc("t")
    cut = whole[: whole.index('"flags": ') + len('"flags": ')] + "\n"
    assert rulesets._with_kernel_flags(cut, KERNEL) is None
    assert rulesets._with_kernel_flags('{"nftables": [1]}', KERNEL) is None


def test_cut_twice_is_one_error_naming_table_and_version(monkeypatch: pytest.MonkeyPatch) -> None:
    whole = _doc("t")
    cut = whole[: whole.index('"flags": ') + len('"flags": ')]
    calls: list[list[str]] = []

    def run(argv: list[str], path: str) -> tuple[str | None, str | None]:
        calls.append(argv)
        return cut, None

    monkeypatch.setattr(rulesets, "_run", run)
    text, err = rulesets.flagged_ruleset("/run/netns/x", KERNEL)
    assert text is None and len(calls) == 2  # retried once
    assert err is not None and "\n" not in err
    assert "ip t (dormant)" in err and "libnftables 1.0.6" in err
    answers = iter([cut, whole])
    monkeypatch.setattr(rulesets, "_run", lambda argv, path: (next(answers), None))
    text, err = rulesets.flagged_ruleset("/run/netns/x", KERNEL)
    assert err is None and text is not None and json.loads(text)
