"""Statement values the packet decides (issue 20): marks and NAT addresses from maps, bit
operations on marks, jhash/symhash; each value carried into the rest of the walk."""

from __future__ import annotations

import json
from typing import Any

from cntrace import netfilter
from cntrace.model import Packet, Ruleset
from cntrace.netfilter import NetnsFacts
from cntrace.netfilter.nft_maps import jhash

FACTS = NetnsFacts(
    frozenset({"10.0.0.2"}),
    {"eth0": ("10.0.0.2",), "eth1": ("10.1.0.1",), "lo": ("127.0.0.1",)},
    {"eth0": ("10.0.0.2/24",), "eth1": ("10.1.0.1/24",), "lo": ("127.0.0.1/8",)},
)
MARK = {"meta": {"key": "mark"}}
CTMARK = {"ct": {"key": "mark"}}
SADDR = {"payload": {"protocol": "ip", "field": "saddr"}}
DADDR = {"payload": {"protocol": "ip", "field": "daddr"}}
DPORT = {"payload": {"protocol": "tcp", "field": "dport"}}


def _doc(chains: dict[str, tuple[str, list[list[Any]]]], maps: list[dict[str, Any]] = ()) -> str:
    """A table ``ip t``: chains {name: (hook, rules)} (type nat for pre/postrouting), maps."""
    items: list[dict[str, Any]] = [{"table": {"family": "ip", "name": "t", "handle": 1}}]
    for m in maps:
        items.append({"map": {"family": "ip", "table": "t", **m}})
    for name, (hook, rules) in chains.items():
        kind = "nat" if hook in ("prerouting", "postrouting") else "filter"
        items.append({"chain": {"family": "ip", "table": "t", "name": name, "type": kind,
                                "hook": hook, "prio": 0, "policy": "accept"}})  # fmt: skip
        for exprs in rules:
            items.append({"rule": {"family": "ip", "table": "t", "chain": name, "expr": exprs}})
    return json.dumps({"nftables": items})


def _set(dest: Any, value: Any) -> dict[str, Any]:
    return {"mangle": {"key": dest, "value": value}}


def _map(key: Any, pairs: list[list[Any]] | str) -> dict[str, Any]:
    data = pairs if isinstance(pairs, str) else {"set": pairs}
    return {"map": {"key": key, "data": data}}


def _is(left: Any, right: Any) -> dict[str, Any]:
    return {"match": {"op": "==", "left": left, "right": right}}


def _walk(doc: str, p: Packet, kind: str = "input") -> netfilter.Walk:
    nf = netfilter.load(Ruleset(nft_json=doc))
    oif = "eth1" if kind in ("forward", "output") else None
    return netfilter.walk(nf, p, FACTS, kind=kind, iif="eth0" if kind != "output" else None,
                          oif=oif, route=lambda q: "eth1")  # fmt: skip


TCP80 = Packet("tcp", "10.0.0.1", "10.0.0.2", 40000, 80)


def _drop_if_mark(mark: int, dest: Any = MARK) -> list[Any]:
    return [_is(dest, mark), {"drop": None}]


def test_mark_from_an_anonymous_map_is_seen_by_a_later_rule() -> None:
    rules = [
        [_set(MARK, _map(DPORT, [[80, 2], [{"range": [443, 444]}, 3]]))],
        _drop_if_mark(3),
    ]
    doc = _doc({"in": ("input", rules)})
    w = _walk(doc, TCP80)
    assert w.certain and w.verdict == "accept" and w.packet_after.mark == 2
    w = _walk(doc, Packet("tcp", "10.0.0.1", "10.0.0.2", 40000, 444))
    assert w.certain and w.verdict == "drop"
    miss = _walk(doc, Packet("tcp", "10.0.0.1", "10.0.0.2", 40000, 22))
    assert miss.certain and miss.packet_after.mark == 0  # no element: the rule ends (NFT_BREAK)


def test_ct_mark_from_a_concatenated_named_map() -> None:
    m3 = {"name": "m3", "type": ["ipv4_addr", "inet_service"], "map": "mark",
          "elem": [[{"concat": ["10.0.0.1", 80]}, 30], ["*", 31]]}  # fmt: skip
    rules = [
        [_set(CTMARK, _map({"concat": [SADDR, DPORT]}, "@m3"))],
        _drop_if_mark(30, CTMARK),
    ]
    doc = _doc({"in": ("input", rules)}, [m3])
    assert _walk(doc, TCP80).verdict == "drop"
    other = _walk(doc, Packet("tcp", "10.0.0.1", "10.0.0.2", 40000, 81))  # the catch-all: 31
    assert other.certain and other.verdict == "accept"


def test_mark_arithmetic_shifts_and_or() -> None:
    shifted = {"<<": [{"|": [MARK, 0x10]}, 8]}
    rules = [
        [_set(CTMARK, shifted)],  # ct mark = (0x0 | 0x10) << 8
        [_set(MARK, {">>": [CTMARK, 8]})],  # mark = 0x1000 >> 8
        _drop_if_mark(0x10),
    ]
    w = _walk(_doc({"in": ("input", rules)}), TCP80)
    assert w.certain and w.verdict == "drop"


def test_jhash_is_linux_jhash() -> None:
    """lookup3's published vectors (Linux's jhash is Bob Jenkins' hashlittle)."""
    assert jhash(b"", 0) == 0xDEADBEEF
    assert jhash(b"Four score and seven years ago", 0) == 0x17770551
    assert jhash(b"Four score and seven years ago", 1) == 0xCD628161


def test_jhash_with_a_seed_decides_and_without_one_is_random() -> None:
    seeded = {"jhash": {"mod": 2, "seed": 0xDEADBEEF, "expr": {"concat": [SADDR, DADDR]}}}
    data = bytes([10, 0, 0, 1, 10, 0, 0, 2])
    want = (jhash(data, 0xDEADBEEF) * 2 >> 32) + 100
    rules = [[_set(MARK, {"jhash": {**seeded["jhash"], "offset": 100}})], _drop_if_mark(want)]
    w = _walk(_doc({"in": ("input", rules)}), TCP80)
    assert w.certain and w.verdict == "drop"
    random_seed = [[_set(MARK, {"jhash": {"mod": 2, "expr": SADDR}})]]
    w = _walk(_doc({"in": ("input", random_seed)}), TCP80)
    assert any("random seed" in why for _, why in w.uncertain)
    sym = [[_set(CTMARK, {"symhash": {"mod": 2, "offset": 100}})]]
    w = _walk(_doc({"in": ("input", sym)}), TCP80)
    assert any("symhash" in why and "kernel state" in why for _, why in w.uncertain)
    one = [[_set(MARK, {"symhash": {"mod": 1, "offset": 7}})], _drop_if_mark(7)]
    assert _walk(_doc({"in": ("input", one)}), TCP80).verdict == "drop"


def test_dnat_address_and_port_from_a_concatenated_map() -> None:
    nat = {"dnat": {"family": "ip", "addr": _map(
        {"concat": [DADDR, DPORT]}, [[{"concat": ["10.0.0.2", 80]}, {"concat": ["10.1.0.9", 8000]}]]
    )}}  # fmt: skip
    doc = _doc({"pre": ("prerouting", [[nat]])})
    w = _walk(doc, TCP80, kind="forward")
    assert w.certain and (w.packet_after.dst, w.packet_after.dport) == ("10.1.0.9", 8000)
    miss = _walk(doc, Packet("tcp", "10.0.0.1", "10.0.0.2", 40000, 81), kind="input")
    assert miss.certain and miss.packet_after.dst == "10.0.0.2" and not miss.nats


def test_dnat_from_a_named_map_and_a_port_map() -> None:
    y = {"name": "y", "type": "ipv4_addr", "map": ["ipv4_addr", "inet_service"],
         "elem": [["10.0.0.1", {"concat": ["10.1.0.7", 4242]}]]}  # fmt: skip
    rules = [[{"dnat": {"family": "ip", "addr": _map(SADDR, "@y")}}]]
    w = _walk(_doc({"pre": ("prerouting", rules)}, [y]), TCP80, kind="forward")
    assert w.certain and (w.packet_after.dst, w.packet_after.dport) == ("10.1.0.7", 4242)
    redirect = [[{"redirect": {"port": _map(DPORT, [[80, 8080], [22, 8000]])}}]]
    w = _walk(_doc({"pre": ("prerouting", redirect)}), TCP80)
    assert w.certain and w.packet_after.dport == 8080


def test_snat_from_a_map_with_a_catchall_and_netmap() -> None:
    snat = {"snat": {"family": "ip", "addr": _map(
        SADDR, [[{"prefix": {"addr": "10.9.0.0", "len": 24}}, "192.168.0.2"], ["*", "192.168.0.3"]]
    )}}  # fmt: skip
    w = _walk(_doc({"post": ("postrouting", [[snat]])}), TCP80, kind="forward")
    assert w.certain and w.packet_after.src == "192.168.0.3"
    netmap = {"snat": {"family": "ip", "flags": "netmap", "type_flags": "prefix", "addr": _map(
        SADDR, [[{"prefix": {"addr": "10.0.0.0", "len": 24}},
                 {"prefix": {"addr": "192.168.2.0", "len": 24}}]]
    )}}  # fmt: skip
    w = _walk(_doc({"post": ("postrouting", [[netmap]])}), TCP80, kind="forward")
    assert w.certain and w.packet_after.src == "192.168.2.1"  # the host bits kept


def test_a_key_no_packet_decides_is_named() -> None:
    osf = [[_set(CTMARK, _map({"osf": {"key": "name"}}, [["Linux", 2]]))]]
    w = _walk(_doc({"in": ("input", osf)}), TCP80)
    assert any("osf" in why for _, why in w.uncertain)
    numgen = {"dnat": {"addr": _map({"numgen": {"mode": "inc", "mod": 2, "offset": 0}},
                                    [[0, "10.1.0.5"], [1, "10.1.0.6"]])}}  # fmt: skip
    w = _walk(_doc({"pre": ("prerouting", [[numgen]])}), TCP80, kind="forward")
    assert any("numgen inc mod 2" in why for _, why in w.uncertain)


def test_nat_to_a_prefix_is_its_range() -> None:
    """``snat to 192.168.3.0/24``: one address of the range, the kernel's pick said so."""
    snat = {"snat": {"addr": {"prefix": {"addr": "192.168.3.0", "len": 24}}}}
    w = _walk(_doc({"post": ("postrouting", [[snat]])}), TCP80, kind="forward")
    assert w.packet_after.src == "192.168.3.0"
    assert any("192.168.3.0-192.168.3.255" in why for _, why in w.uncertain)
