"""iptables -m hashlimit decided from /proc/net/ipt_hashlimit/NAME (issue 20, stateful).

The lines are the kernel's format, taken from this kernel (6.18, HZ 1000): a packet-mode table
after two packets of `--hashlimit-upto 1/min --hashlimit-burst 2 --hashlimit-mode
srcip,dstport --hashlimit-srcmask 24`, and a bytes-mode one (`--hashlimit-above 10kb/s`).
"""

from __future__ import annotations

from cntrace import netfilter
from cntrace.model import Packet, Ruleset
from cntrace.netfilter import hashlimit
from cntrace.netfilter.probe import Probe
from cntrace.netfilter.results import HookResult, NetnsFacts

FACTS = NetnsFacts(frozenset({"10.0.0.2"}), {"eth0": ("10.0.0.2",)})
HEAD = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n"
UDP = Packet("udp", "10.0.0.1", "10.0.0.2", 40000, 9)
CAP, COST = 16492674360000000, 8246337180000000
EMPTY = f"57 10.0.0.0:0->0.0.0.0:9 40132174413824 {CAP} {COST}\n"  # 10.0.0.0/24 used it up
FULL = f"57 10.0.0.0:0->0.0.0.0:9 {CAP} {CAP} {COST}\n"
LIMIT = (
    "-p udp -m udp --dport 9 -m hashlimit --hashlimit-upto 1/min --hashlimit-burst 2 "
    "--hashlimit-mode srcip,dstport --hashlimit-name hl1 --hashlimit-srcmask 24"
)


def _run(rule: str, state: tuple[tuple[str, str], ...], p: Packet = UDP, **kw: int) -> HookResult:
    rs = Ruleset(iptables_nft=f"{HEAD}-A INPUT {rule} -j DROP\nCOMMIT\n", kernel_state=state)
    probe = Probe(length=kw["length"]) if "length" in kw else None
    return netfilter.evaluate_hook(
        netfilter.load(rs), "input", p, FACTS, iif="eth0", oif=None, probe=probe
    )


def _verdict(rule: str, state: tuple[tuple[str, str], ...], p: Packet = UDP, **kw: int) -> str:
    res = _run(rule, state, p, **kw)
    assert not res.uncertain, res.uncertain
    return res.verdict


def _why(rule: str, state: tuple[tuple[str, str], ...], p: Packet = UDP, **kw: int) -> str:
    res = _run(rule, state, p, **kw)
    assert res.uncertain, "expected an uncertain walk"
    return res.uncertain[0][1]


def test_parse_table_keys_and_ipv6() -> None:
    t = hashlimit.parse_table(EMPTY + "garbage\n")
    assert t == {(0x0A000000, 0, 0, 9): hashlimit.Bucket(57, 40132174413824, CAP, COST)}
    z = ":".join(["0000"] * 7)
    v6 = f"0 {z}:0001:0->{z}:0000:0 5 6 7"
    assert hashlimit.parse_table(v6) == {(1, 0, 0, 0): hashlimit.Bucket(0, 5, 6, 7)}


def test_emptied_bucket_is_over_the_limit() -> None:
    st = (("ipt_hashlimit/hl1", EMPTY),)
    assert _verdict(LIMIT, st) == "accept"  # upto: no longer matches
    above = LIMIT.replace("-upto", "-above")
    assert _verdict(above, st) == "drop"


def test_key_masked_and_ports_from_the_mode() -> None:
    st = (("ipt_hashlimit/hl1", EMPTY),)
    other_net = Packet("udp", "10.0.1.1", "10.0.0.2", 40000, 9)
    assert _verdict(LIMIT, st, other_net) == "drop"  # a fresh key: within, upto matches
    same_net = Packet("udp", "10.0.0.77", "10.0.0.2", 1234, 9)  # srcport not in the mode
    assert _verdict(LIMIT, st, same_net) == "accept"


def test_fresh_key_and_full_bucket_are_within() -> None:
    assert _verdict(LIMIT, (("ipt_hashlimit/hl1", ""),)) == "drop"
    assert _verdict(LIMIT, (("ipt_hashlimit/hl1", FULL),)) == "drop"
    above = LIMIT.replace("-upto", "-above")
    assert _verdict(above, (("ipt_hashlimit/hl1", ""),)) == "accept"


def test_no_mode_is_one_bucket_for_all() -> None:
    rule = "-m hashlimit --hashlimit-upto 1/sec --hashlimit-burst 5 --hashlimit-name all"
    line = f"3 0.0.0.0:0->0.0.0.0:0 10 {CAP} {COST}\n"
    assert _verdict(rule, (("ipt_hashlimit/all", line),)) == "accept"


def test_expired_entry_is_uncertain_unless_both_agree() -> None:
    gone = EMPTY.replace("57 ", "-1 ", 1)
    assert "had expired or was about to" in _why(LIMIT, (("ipt_hashlimit/hl1", gone),))
    full = FULL.replace("57 ", "0 ", 1)  # within either way
    assert _verdict(LIMIT, (("ipt_hashlimit/hl1", full),)) == "drop"


def test_table_not_read_names_the_file() -> None:
    why = _why(LIMIT, ())
    assert "/proc/net/ipt_hashlimit/hl1" in why
    text = f"{HEAD}-A INPUT {LIMIT.replace('24', '64')} -j DROP\nCOMMIT\n"
    p6 = Packet("udp", "2001:db8::1", "2001:db8::2", 40000, 9, 6)
    facts = NetnsFacts(frozenset({"2001:db8::2"}), {"eth0": ("2001:db8::2",)})

    def walk(state: tuple[tuple[str, str], ...]) -> HookResult:
        nf = netfilter.load(Ruleset(ip6tables_nft=text, kernel_state=state))
        return netfilter.evaluate_hook(nf, "input", p6, facts, iif="eth0", oif=None)

    ipv4_only = walk((("ipt_hashlimit/hl1", EMPTY),))
    assert "/proc/net/ip6t_hashlimit/hl1" in ipv4_only.uncertain[0][1]
    line = "5 2001:0db8:0000:0000:0000:0000:0000:0000:0->0000:0000:0000:0000:0000:0000:0000:0000:9"
    used = walk((("ip6t_hashlimit/hl1", f"{line} 1 {CAP} {COST}\n"),))
    assert not used.uncertain and used.verdict == "accept"  # 2001:db8::/64 used it up


BYTES = "-m hashlimit --hashlimit-above 10kb/s --hashlimit-name hb"


def test_bytes_mode_cost_by_length_and_refills() -> None:
    # 4185745273 credits; 6543375 per 16-byte chunk: 639 chunks fit (packets < 10224 bytes)
    line = "14 0.0.0.0:0->0.0.0.0:0 4185745273 0 6543375\n"
    st = (("ipt_hashlimit/hb", line), ("jiffies", "4295000000 1000"))
    assert _verdict(BYTES, st, length=128) == "accept"  # within: above does not match
    assert _verdict(BYTES, st, length=20000) == "drop"  # over
    assert "the probe's length decides" in _why(BYTES, st)
    refill = "14 0.0.0.0:0->0.0.0.0:0 100 3 6543375\n"  # empty, but 3 refills left
    assert _verdict(BYTES, (("ipt_hashlimit/hb", refill),), length=1500) == "accept"


def test_rate_match_entry_is_uncertain_fresh_key_within() -> None:
    rule = LIMIT + " --hashlimit-rate-match"
    assert "rate-match" in _why(rule, (("ipt_hashlimit/hl1", EMPTY),))
    assert _verdict(rule, (("ipt_hashlimit/hl1", ""),)) == "drop"


def test_ipsec_ports_in_the_key_are_uncertain() -> None:
    rule = "-m hashlimit --hashlimit-upto 1/sec --hashlimit-mode dstport --hashlimit-name e"
    esp = Packet("50", "10.0.0.1", "10.0.0.2", None, None)
    assert "SPI" in _why(rule, (("ipt_hashlimit/e", ""),), esp)
