"""The benign-drop list and the drop counts (`cntrace drops`, the console's drops tab)."""

from __future__ import annotations

from cntrace.trace.droptally import BENIGN, DropTally, function, is_benign
from cntrace.trace.events import Drop


def drop(reason: str, location: str) -> Drop:
    return Drop(reason, location, 0)


def test_benign_pairs_match_by_function_whatever_the_offset() -> None:
    assert function("ip6_mc_input+0x1b2") == "ip6_mc_input" and function(None) == "?"
    assert is_benign(drop("NOT_SPECIFIED", "ip6_mc_input+0x1b2"))
    assert is_benign(drop("NOT_SPECIFIED", "ip_rcv_finish_core+0x3c"))
    # the same function with a meaningful reason, or the reason elsewhere, is not noise
    assert not is_benign(drop("NETFILTER_DROP", "ip6_mc_input+0x1b2"))
    assert not is_benign(drop("NOT_SPECIFIED", "nf_hook_slow+0x9a"))
    assert all(why for _r, _f, why in BENIGN)  # every entry says why it is noise


def test_the_tally_hides_benign_drops_and_counts_them() -> None:
    t = DropTally()
    assert not t.add(drop("NOT_SPECIFIED", "ip6_mc_input+0x10"), "host")
    assert t.add(drop("NETFILTER_DROP", "nf_hook_slow+0x9a"), "web")
    assert t.add(drop("NETFILTER_DROP", "nf_hook_slow+0x9a"), "api")
    assert t.add(drop("NO_SOCKET", "tcp_v4_rcv+0x1"), "web")
    assert (t.total, t.hidden) == (3, 1)
    doc = t.document()
    assert doc["by_reason"] == {"NETFILTER_DROP": 2, "NO_SOCKET": 1}
    assert doc["by_location"] == {"nf_hook_slow": 2, "tcp_v4_rcv": 1}
    assert doc["by_where"] == {"web": 2, "api": 1}
    assert t.rows()[0] == ("reason", "NETFILTER_DROP", 2)


def test_all_shows_everything() -> None:
    t = DropTally()
    assert t.add(drop("NOT_SPECIFIED", "ip6_mc_input+0x10"), "host", show_all=True)
    assert (t.total, t.hidden) == (1, 0)
