"""A router namespace between two others (issue 12): every prediction against a real connection.

    cli c0 10.81.1.10/24 =veth= up0 10.81.1.1/24 rtr dn0 10.81.2.1/24 =veth= s0 10.81.2.10/24 srv
        default via 10.81.1.1                  (forwards)                   default via 10.81.2.1

The veths are made inside rtr with their peers put straight into cli and srv, so every end has
ifindex 2 or 3: before issue 12 the path stopped at cli's interface and every rule in rtr was
ignored. One policy (custom chains, jump and return, multiport, negation, REJECT with tcp-reset,
DNAT) is loaded into rtr as iptables-legacy, as iptables-nft and as a native nftables ruleset; for
each, `cntrace path` from cli (on a live snapshot) must agree with a real TCP connection, and a
refused or dropped packet must name the rule that decided it.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from harness import require_root
from hostkit import World, new_world

from cntrace.path import predict
from cntrace.sources import live

CLI, UP, DN, SRV = "10.81.1.10", "10.81.1.1", "10.81.2.1", "10.81.2.10"
LISTEN = (80, 81, 82, 83, 86, 87, 89, 92)

NAT = f"""*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A PREROUTING -d {UP}/32 -p tcp -m tcp --dport 8080 -j DNAT --to-destination {SRV}:80
COMMIT
"""
FILTER = """*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:AH-CUSTOM - [0:0]
:AH-SUB - [0:0]
-A FORWARD -j AH-CUSTOM
-A FORWARD -p tcp -m tcp --dport 86:87 -j DROP
-A AH-CUSTOM -p tcp -m tcp --dport 86 -j RETURN
-A AH-CUSTOM -p tcp -m tcp --dport 87 -j ACCEPT
-A AH-CUSTOM -p tcp -m multiport --dports 81,82 -j DROP
-A AH-CUSTOM -p tcp -m tcp --dport 83 -j REJECT --reject-with tcp-reset
-A AH-CUSTOM -p tcp -j AH-SUB
-A AH-SUB ! -s 10.9.9.9/32 -p tcp -m tcp --dport 92 -j DROP
-A AH-SUB -s 10.9.9.9/32 -p tcp -m tcp --dport 89 -j DROP
-A AH-SUB -j RETURN
COMMIT
"""
NFT = f"""table ip ahnat {{
  chain pre {{
    type nat hook prerouting priority dstnat; policy accept;
    ip daddr {UP} tcp dport 8080 dnat to {SRV}:80
  }}
}}
table inet ahf {{
  chain forward {{
    type filter hook forward priority filter; policy accept;
    jump custom
    tcp dport 86-87 drop
  }}
  chain custom {{
    tcp dport 86 return
    tcp dport 87 accept
    tcp dport {{ 81, 82 }} drop
    tcp dport 83 reject with tcp reset
    meta l4proto tcp jump sub
  }}
  chain sub {{
    ip saddr != 10.9.9.9 tcp dport 92 drop
    ip saddr 10.9.9.9 tcp dport 89 drop
    return
  }}
}}
"""
# destination -> (kernel outcome, chain of the deciding rule, by back end family of names)
CASES = {
    f"{SRV}:80": ("delivered", None),
    f"{SRV}:81": ("timeout", "custom"),
    f"{SRV}:82": ("timeout", "custom"),
    f"{SRV}:83": ("refused", "custom"),
    f"{SRV}:84": ("refused", None),  # nobody listens: srv answers RST
    f"{SRV}:86": ("timeout", "forward"),  # returned from custom, dropped after
    f"{SRV}:87": ("delivered", None),
    f"{SRV}:89": ("delivered", None),  # the negation does not match cli
    f"{SRV}:92": ("timeout", "sub"),  # the negation matches cli
    f"{UP}:8080": ("delivered", None),  # DNAT in rtr to srv:80
}
PREDICTED = {"delivered": "delivered", "dropped": "timeout", "timeout": "timeout"}


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    require_root()
    w = new_world("r")
    try:
        w.router(CLI, UP, DN, SRV)
        w.listen("srv", *LISTEN)
        yield w
    finally:
        w.down()


def _load(w: World, backend: str) -> None:
    w.run("rtr", "nft", "flush", "ruleset")
    if backend == "nft":
        w.run("rtr", "nft", "-f", "-", stdin=NFT)
    else:
        w.run("rtr", f"iptables-{backend}-restore", stdin=NAT + FILTER)


def _unload(w: World, backend: str) -> None:
    if backend == "legacy":
        empty = "".join(
            f"*{t}\n" + "".join(f":{c} ACCEPT [0:0]\n" for c in chains) + "COMMIT\n"
            for t, chains in (
                ("filter", ("INPUT", "FORWARD", "OUTPUT")),
                ("nat", ("PREROUTING", "INPUT", "OUTPUT", "POSTROUTING")),
            )
        )
        w.run("rtr", "iptables-legacy-restore", stdin=empty)
    w.run("rtr", "nft", "flush", "ruleset")
    w.run("rtr", "conntrack", "-F", check=False)


@pytest.mark.parametrize("backend", ["legacy", "nft-compat", "nft"])
def test_router_rules_decide_and_the_kernel_agrees(world: World, backend: str) -> None:
    _load(world, "nft" if backend == "nft" else backend.replace("-compat", ""))
    try:
        snap = live.read_snapshot()
        problems = []
        for dst, (want, chain) in CASES.items():
            path = predict(snap, f"netns:{world.ns('cli')}", dst)
            ip, port = dst.split(":")
            real = world.connect("cli", ip, int(port))
            said = PREDICTED.get(path.verdict.status, path.verdict.status)
            if (said, real) != (want, want):
                problems.append(
                    f"{dst}: predicted {path.verdict.status} ({path.verdict.summary})"
                    f", kernel {real}, expected {want}"
                )
                continue
            rule = path.verdict.rule
            named = rule.chain.lower().removeprefix("ah-") if rule else None
            if chain is not None and named != chain:
                problems.append(f"{dst}: deciding rule {rule} is not in chain {chain}")
            if want == "delivered":
                last = [h for h in path.hops if h.direction == "request"][-1]
                assert last.kind == "socket" and last.netns_label == world.ns("srv"), last
            if dst.endswith(":8080"):
                nat = [h for h in path.hops if h.kind == "nat" and h.direction == "request"]
                assert nat and nat[0].rule is not None and "8080" in nat[0].rule.text, nat
        assert not problems, "\n".join(problems)
    finally:
        _unload(world, "legacy" if backend == "legacy" else "nft")
