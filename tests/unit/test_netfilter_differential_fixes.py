"""What the upstream differential (scripts/netfilter_differential.py, issue 20 round 3) found the
kernel doing differently, fixed: each case here disagreed with a real packet before."""

from __future__ import annotations

from cntrace.model import Packet
from cntrace.netfilter import iptables_save, walk
from cntrace.netfilter.model import Netfilter
from cntrace.netfilter.probe import Probe
from cntrace.netfilter.probe_headers import header_value
from cntrace.netfilter.results import NetnsFacts
from cntrace.netfilter.state import State
from cntrace.netfilter.steps import Field

FACTS = NetnsFacts(frozenset({"10.0.0.2", "2001:db8::2"}), {"eth0": ("10.0.0.2", "2001:db8::2")})
TCP = Packet("tcp", "10.0.0.1", "10.0.0.2", 40000, 80)
ECHO = Packet("icmp", "10.0.0.1", "10.0.0.2", None, None, icmp_type=8)
ECHO_REPLY = Packet("icmp", "10.0.0.1", "10.0.0.2", None, None, icmp_type=0)
CRAFTED = Probe(length=60, header=(("icmp.id", 7), ("icmp.sequence", 1)))


def _matched(rule: str, p: Packet, probe: Probe = CRAFTED) -> bool | str:
    text = f"*filter\n:INPUT ACCEPT [0:0]\n-A INPUT {rule}\nCOMMIT\n"
    parsed = iptables_save.parse(text, family="ip6" if p.family == 6 else "ip")
    nf = Netfilter(tuple(parsed.tables))
    w = walk(nf, p, FACTS, kind="input", iif="eth0", probe=probe)
    if w.uncertain:
        return w.uncertain[0][1]
    return any(r.chain == "INPUT" for h in w.hooks for r in h.matched)


def test_connbytes_of_a_first_packet_and_it_turns_conntrack_on() -> None:
    mode = "--connbytes-mode"
    assert _matched(f"-m connbytes --connbytes 0:1000 {mode} packets --connbytes-dir original",
                    TCP) is True  # fmt: skip
    assert _matched(f"-m connbytes --connbytes 2 {mode} packets --connbytes-dir both", TCP) is False
    assert _matched(f"-m connbytes --connbytes 60:60 {mode} bytes --connbytes-dir original",
                    TCP) is True  # fmt: skip
    assert _matched(f"-m connbytes ! --connbytes 0:1000 {mode} avgpkt --connbytes-dir reply",
                    TCP) is False  # fmt: skip
    est = walk(
        Netfilter(tuple(iptables_save.parse(
            "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -m connbytes --connbytes 10 "
            "--connbytes-mode bytes --connbytes-dir both\nCOMMIT\n").tables)),
        TCP, FACTS, kind="input", iif="eth0", ctstate="ESTABLISHED", probe=CRAFTED,
    )  # fmt: skip
    assert est.uncertain and "existing connection" in est.uncertain[0][1]


def test_icmp_ct_tuple_ports_are_the_echo_id_and_type() -> None:
    assert _matched("-m conntrack --ctreplsrcport 4:65535", ECHO) is True  # id 7
    assert _matched("-m conntrack --ctorigsrcport 8", ECHO) is False
    assert _matched("-m conntrack --ctorigdstport 2048", ECHO) is True  # type 8 << 8
    assert _matched("-m conntrack --ctrepldstport 0", ECHO) is True  # echo reply, code 0
    assert "crafted probe" not in str(_matched("-m conntrack --ctorigdstport 2048", ECHO, Probe()))


def test_an_icmp_reply_opens_no_connection() -> None:
    assert _matched("-m conntrack --ctstate INVALID", ECHO_REPLY) is True
    assert _matched("-m conntrack --ctstate NEW", ECHO_REPLY) is False
    assert _matched("-m conntrack --ctstate NEW", ECHO) is True
    ns = Packet("icmp", "2001:db8::1", "2001:db8::2", None, None, 6, icmp_type=135)
    assert _matched("-m conntrack --ctstate UNTRACKED", ns) is True


def test_the_hidden_icmp_dependency_comes_before_what_a_crafted_probe_knows() -> None:
    unreach = Packet("icmp", "10.0.0.1", "10.0.0.2", None, None, icmp_type=3)
    st = State(Netfilter(()), unreach, FACTS, "new", 0, None, None, None)
    st.probe = Probe(header=(("icmp.id", 7), ("icmp.mtu", 1400)))
    assert header_value(st, Field("h:icmp.id", proto=1)) is None  # no id on an unreachable
    assert header_value(st, Field("h:icmp.mtu", proto=1)) == 1400
