"""Stateful matches decided from the kernel's state, as the Snapshot recorded it.

quota, recent, connlimit and nft ``ct count`` depend on traffic so far. Their state is readable
(nft prints a quota's ``used`` bytes; ``/proc/net/xt_recent/NAME`` lists addresses with their hit
times; the conntrack table holds the connections a limit counts), so these matches are decided
instead of guessed. What the kernel does not expose (a token bucket's credit, an nth counter)
stays uncertain, with the reason. ``cntrace.sources.rulesets`` reads the state, only when a
ruleset uses one of these matches; this module only parses the recorded text and evaluates.

Match fields use ``st:`` keys, evaluated by ``holds`` (``matching.match_holds`` calls it): the
value is whether the module's test holds before ``!``; the Match's op applies the negation.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cntrace.model import Packet
from cntrace.netfilter import hashlimit
from cntrace.netfilter.steps import Atom, Effect, Field, Match, Step
from cntrace.netfilter.values import int_value, ip_to_int

if TYPE_CHECKING:
    from cntrace.model import Ruleset
    from cntrace.netfilter.model import Rule, Table
    from cntrace.netfilter.state import State

Check = Callable[["State", Match, "Table | None"], "bool | str"]  # matching.match_holds

# Reasons for what the kernel does not expose (shared by the iptables and nft lowerings).
LIMIT = "rate limit: the kernel does not expose the token bucket's credit"
NTH = "statistic --mode nth: the kernel does not expose the packet counter"


def numgen_reason(key: str, mod: int | None) -> str:
    """Why ``numgen random|inc mod N`` (N > 1) is uncertain."""
    if key == "numgen.inc":
        return f"numgen inc mod {mod}: the kernel does not expose the counter"
    return f"numgen random mod {mod}: the kernel picks at random"


_UNITS = {"bytes": 1, "kbytes": 1024, "mbytes": 1024 * 1024}
_CLOSED_TCP = frozenset({"TIME_WAIT", "CLOSE"})  # nf_conncount skips closed connections


@dataclass(frozen=True, slots=True)
class RecentEntry:
    """One address of an xt_recent list (masked, as the kernel keeps it)."""

    family: int
    addr: int
    ttl: int
    stamps: tuple[int, ...]  # jiffies of the last hits


@dataclass(frozen=True, slots=True)
class Flow:
    """A conntrack entry's original direction (what connlimit and ct count count)."""

    family: int
    proto: int
    src: str
    dst: str
    sport: int | None
    dport: int | None
    tcp_state: str | None


@dataclass(frozen=True, slots=True)
class KernelState:
    """What the Snapshot read of the stateful matches' kernel state (None: not read)."""

    recent: dict[str, tuple[RecentEntry, ...]] = field(default_factory=dict)
    flows: tuple[Flow, ...] | None = None
    jiffies: int | None = None
    hz: int | None = None
    quotas: dict[tuple[str, str, str], tuple[int, int, bool]] = field(default_factory=dict)
    hashlimit: dict[str, dict[hashlimit.Key, hashlimit.Bucket]] = field(default_factory=dict)


# --------------------------------------------------------------------------- parsing


def parse(ruleset: Ruleset) -> KernelState:
    """The recorded state (``Ruleset.kernel_state``) and nft's named quota objects."""
    recent: dict[str, tuple[RecentEntry, ...]] = {}
    tables: dict[str, dict[hashlimit.Key, hashlimit.Bucket]] = {}
    flows: tuple[Flow, ...] | None = None
    jiffies = hz = None
    for key, text in ruleset.kernel_state:
        if key.startswith("xt_recent/"):
            recent[key.split("/", 1)[1]] = _recent(text)
        elif key.startswith(("ipt_hashlimit/", "ip6t_hashlimit/")):
            tables[key] = hashlimit.parse_table(text)
        elif key == "nf_conntrack":
            flows = tuple(f for f in map(_flow, text.splitlines()) if f is not None)
        elif key == "jiffies":
            parts = text.split()
            if len(parts) == 2 and all(p.isdigit() for p in parts):
                jiffies, hz = int(parts[0]), int(parts[1])
    quotas = _nft_quotas(ruleset.nft_json) if ruleset.nft_json else {}
    return KernelState(recent, flows, jiffies, hz, quotas, tables)


_RECENT = re.compile(r"src=(\S+) ttl: (\d+) last_seen: \d+ oldest_pkt: \d+(.*)")


def _recent(text: str) -> tuple[RecentEntry, ...]:
    out = []
    for line in text.splitlines():
        m = _RECENT.match(line.strip())
        if m is None:
            continue
        try:
            fam, addr = ip_to_int(m.group(1))
        except ValueError:
            continue
        stamps = tuple(int(s) for s in re.findall(r"\d+", m.group(3)))
        out.append(RecentEntry(fam, addr, int(m.group(2)), stamps))
    return tuple(out)


_PROTOS = {"tcp": 6, "udp": 17, "icmp": 1, "icmpv6": 58, "sctp": 132, "udplite": 136, "dccp": 33}


def _flow(line: str) -> Flow | None:
    """A ``/proc/net/nf_conntrack`` line: ``ipv4 2 tcp 6 431999 ESTABLISHED src=... dst=...``."""
    parts = line.split()
    if len(parts) < 6 or parts[0] not in ("ipv4", "ipv6"):
        return None
    kv: dict[str, str] = {}
    for p in parts:
        k, eq, v = p.partition("=")
        if eq and k not in kv:
            kv[k] = v
    if "src" not in kv or "dst" not in kv or not parts[3].isdigit():
        return None
    state = parts[5] if parts[2] == "tcp" and "=" not in parts[5] else None
    return Flow(
        4 if parts[0] == "ipv4" else 6,
        int(parts[3]),
        kv["src"],
        kv["dst"],
        int(kv["sport"]) if kv.get("sport", "").isdigit() else None,
        int(kv["dport"]) if kv.get("dport", "").isdigit() else None,
        state,
    )


def _nft_quotas(text: str) -> dict[tuple[str, str, str], tuple[int, int, bool]]:
    """nft's named quota objects: (family, table, name) -> (bytes, used, over)."""
    if '"quota": {"family"' not in text:
        return {}
    try:
        doc = json.loads(text[text.index("{") :])
    except ValueError:
        return {}
    out = {}
    for item in doc.get("nftables", []) if isinstance(doc, dict) else []:
        q = item.get("quota") if isinstance(item, dict) else None
        if isinstance(q, dict) and "name" in q:
            key = (str(q.get("family")), str(q.get("table")), str(q["name"]))
            out[key] = (_int(q.get("bytes")), _int(q.get("used")), bool(q.get("inv")))
    return out


def _int(v: Any) -> int:
    return v if isinstance(v, int) and v >= 0 else 0


# --------------------------------------------------------------------------- lowering


def nft_statement(k: str, v: Any, text: str) -> Step:
    """nft ``quota``, ``limit``, ``ct count`` as a step (quota and ct count read state)."""
    if k == "quota" and isinstance(v, str):
        return Match((Field("st:quota.obj", arg=v),), text=text)
    if k == "quota" and isinstance(v, dict):
        limit = _int(v.get("val")) * _UNITS.get(str(v.get("val_unit", "bytes")), 1)
        used = _int(v.get("used")) * _UNITS.get(str(v.get("used_unit", "bytes")), 1)
        over = bool(v.get("inv"))
        return Match((Field("st:quota.nft", arg=f"{limit}:{used}:{int(over)}"),), text=text)
    if k == "ct count" and isinstance(v, dict):
        over = bool(v.get("inv"))
        return Match((Field("st:ctcount", arg=f"{_int(v.get('val'))}:{int(over)}"),), text=text)
    reason = LIMIT if k == "limit" else f"{k}: the kernel's state for it is not known"
    return Match((), text=text, unsupported=reason)


def m_quota(opt: str, args: list[str], neg: bool, proto: int | None, text: str) -> Step | None:
    """``-m quota --quota N``: iptables-save prints N as configured, not what is left."""
    if opt != "--quota" or not args:
        raise ValueError(f"unknown option {opt}")
    f = Field("st:quota.xt", arg=str(int_value(args[0])))
    return Match((f,), "!=" if neg else "==", ((Atom(1),),), text=text)


_RECENT_MODES = ("--set", "--rcheck", "--update", "--remove")


def m_recent(opt: str, args: list[str], neg: bool, proto: int | None, text: str) -> Step | None:
    """``-m recent``: the mode is the Match; the other options join it (``join_recent``)."""
    if opt in _RECENT_MODES:
        f = Field("st:recent", arg=opt[2:])
        return Match((f,), "!=" if neg else "==", ((Atom(1),),), text=text)
    if opt in ("--seconds", "--hitcount", "--name", "--mask"):
        return Effect("recent:" + opt[2:], args[0] if args else "")
    if opt in ("--rsource", "--rdest", "--rttl", "--reap"):
        return Effect("recent:" + opt[2:], "1")
    raise ValueError(f"unknown option {opt}")


def m_connlimit(opt: str, args: list[str], neg: bool, proto: int | None, text: str) -> Step | None:
    """``-m connlimit --connlimit-above N`` (or ``-upto``) with mask and side (joined later)."""
    if opt in ("--connlimit-above", "--connlimit-upto") and args:
        over = opt.endswith("above") != neg
        f = Field("st:connlimit", arg=f"{int(args[0])}:{int(over)}")
        return Match((f,), "==", ((Atom(1),),), text=text)
    if opt == "--connlimit-mask" and args:
        return Effect("recent:mask", args[0])  # joined like recent's mask
    if opt in ("--connlimit-saddr", "--connlimit-daddr"):
        return Effect("recent:rdest" if opt.endswith("daddr") else "recent:rsource", "1")
    raise ValueError(f"unknown option {opt}")


_JOINED = {"recent:": ("st:recent", "st:connlimit"), "hashlimit:": ("st:hashlimit",)}


def join_options(steps: list[Step]) -> None:
    """Give a recent/connlimit/hashlimit match the options its siblings name (``k=v;...``)."""
    for prefix, keys in _JOINED.items():
        _join(steps, prefix, keys)


def _join(steps: list[Step], prefix: str, keys: tuple[str, ...]) -> None:
    n = len(prefix)
    at = next(
        (
            k
            for k, s in enumerate(steps)
            if isinstance(s, Match) and s.fields and s.fields[0].key in keys
        ),
        None,
    )
    opts = {s.kind[n:]: s.detail for s in steps if isinstance(s, Effect) and s.kind[:n] == prefix}
    if at is not None:
        m = steps[at]
        assert isinstance(m, Match)
        f = m.fields[0]
        arg = ";".join([f.arg or "", *(f"{k}={v}" for k, v in sorted(opts.items()))])
        steps[at] = Match((Field(f.key, arg=arg),), m.op, m.values, text=m.text)
    if opts:
        steps[:] = [s for s in steps if not (isinstance(s, Effect) and s.kind[:n] == prefix)]


# --------------------------------------------------------------------------- evaluation


def holds(st: State, m: Match, table: Table | None, check: Check) -> bool | str:
    """Whether a stateful match holds for the walk's packet, or the reason it is not known."""
    f = m.fields[0]
    key = f.key
    if key == "st:quota.nft":
        limit, used, over = (int(x) for x in (f.arg or "0:0:0").split(":"))
        res = _nft_quota(st, limit, used, bool(over))
    elif key == "st:quota.obj":
        kst = st.nf.kernel
        q = None
        if table is not None and kst is not None:
            q = kst.quotas.get((table.family, table.name, f.arg or ""))
        if q is None:
            return f"quota object {f.arg!r} is not in the ruleset"
        res = _nft_quota(st, q[0], q[1], q[2])
    elif key == "st:quota.xt":
        res = _xt_quota(st, int(f.arg or "0"), m.op == "!=")
    elif key == "st:recent":
        res = _recent_holds(st, f.arg or "")
    elif key in ("st:connlimit", "st:ctcount"):
        res = _connlimit(st, m, table, check)
    elif key == "st:hashlimit":
        return hashlimit.holds(st, f.arg or "")
    else:
        return f"{key[3:]} is not modelled"
    if isinstance(res, str):
        return res
    return res if m.op == "==" else not res


def _length_bounds(st: State) -> tuple[int, int]:
    n = st.probe.length
    if n is not None:
        return n, n
    return (20 if st.packet.family == 4 else 40), 65535


def _nft_quota(st: State, limit: int, used: int, over: bool) -> bool | str:
    """nft_quota: consumed += len; over when consumed >= limit (``over`` inverts)."""
    lo, hi = _length_bounds(st)
    if used + lo >= limit:
        exceeded = True
    elif used + hi < limit:
        exceeded = False
    else:
        return f"quota: {used} of {limit} bytes used; the probe's length decides"
    return exceeded == over


def _xt_quota(st: State, quota: int, inverted: bool) -> bool | str:
    """xt_quota passes while the remaining quota holds the packet, and once one does not fit
    sets it to 0. The kernel keeps what is left to itself: the rule's counter bounds it (bytes
    that passed; with ``!``, any packet counted means one did not fit)."""
    rule = st.rule
    counters = rule.counters if rule is not None else None
    if counters is None:
        return "quota: the kernel does not expose the remaining bytes (no rule counters)"
    if inverted:
        if counters[0] > 0:
            return False  # a packet was over the quota: nothing is left
        return f"quota: the kernel does not expose the remaining bytes of {quota}"
    left = quota - counters[1]
    lo, _ = _length_bounds(st)
    if lo > left:
        return False  # the counter already shows too little left (the kernel may show less)
    return (
        f"quota: at most {max(left, 0)} of {quota} bytes left (rule counter); the kernel does "
        "not expose the remaining bytes"
    )


def _opts(arg: str) -> tuple[str, dict[str, str]]:
    head, *rest = arg.split(";")
    kv = dict(p.partition("=")[::2] for p in rest)
    return head, kv


def _masked(
    st: State, side: str, mask: str | None, addr_text: str | None = None
) -> tuple[int, int]:
    """(family, address & mask) of the probe's source (or dest), or of ``addr_text``."""
    p = st.packet
    fam, addr = ip_to_int(addr_text or (p.dst if side == "rdest" else p.src))
    bits = 32 if fam == 4 else 128
    if mask and mask.isdigit():
        n = min(int(mask), bits)
        m = ((1 << n) - 1) << (bits - n)
    elif mask:
        m = ip_to_int(mask)[1]
    else:
        m = (1 << bits) - 1
    return fam, addr & m


def _recent_holds(st: State, arg: str) -> bool | str:
    """xt_recent's recent_mt for the probe's address (source, or dest with --rdest)."""
    mode, kv = _opts(arg)
    if mode == "set":
        return True  # adds or refreshes the address: always holds
    name = kv.get("name", "DEFAULT")
    kst = st.nf.kernel
    if kst is None or name not in kst.recent:
        return f"recent: the list {name!r} was not read (/proc/net/xt_recent/{name})"
    side = "rdest" if "rdest" in kv else "rsource"
    fam, addr = _masked(st, side, kv.get("mask"))
    ttl = st.probe.ttl if "rttl" in kv else None
    entry = next(
        (
            e
            for e in kst.recent[name]
            if e.family == fam and e.addr == addr and (ttl is None or e.ttl == ttl)
        ),
        None,
    )
    if entry is None:
        return False
    seconds = int(kv.get("seconds") or 0)
    hitcount = int(kv.get("hitcount") or 0)
    if mode == "remove" or not (seconds or hitcount):
        return True
    if seconds and (kst.jiffies is None or not kst.hz):
        return "recent --seconds: the kernel's clock (jiffies) was not read"
    since = (kst.jiffies or 0) - seconds * (kst.hz or 0)
    hits = sum(1 for t in entry.stamps if not seconds or t >= since)
    return hits >= max(hitcount, 1)


def _connlimit(st: State, m: Match, table: Table | None, check: Check) -> bool | str:
    """xt_connlimit / nft ct count: the connections counted, the probe's own included."""
    f = m.fields[0]
    head, kv = _opts(f.arg or "")
    limit_s, over_s = head.split(":")
    limit, over = int(limit_s), over_s == "1"
    kst = st.nf.kernel
    if kst is None or kst.flows is None:
        return f"{f.key[3:]}: the conntrack table was not read"
    keyed = f.key == "st:connlimit"
    side = "rdest" if "rdest" in kv else "rsource"
    want = _masked(st, side, kv.get("mask")) if keyed else None
    rule = st.rule
    before = _before(rule, m)
    count = 0
    p = st.packet
    own = False
    for fl in kst.flows:
        if fl.tcp_state in _CLOSED_TCP:
            continue
        if want is not None:
            try:
                if _masked(st, side, kv.get("mask"), fl.dst if side == "rdest" else fl.src) != want:
                    continue
            except ValueError:
                continue
        if not _passes(st, fl, before, table, check):
            continue
        count += 1
        if (fl.src, fl.dst, fl.sport, fl.dport) == (p.src, p.dst, p.sport, p.dport):
            own = True
    if not own and st.ctstate == "new":
        count += 1  # the probe's new connection
    exceeded = count > limit
    return exceeded == over


def _before(rule: Rule | None, m: Match) -> tuple[Match, ...]:
    """The matches of the rule before ``m``: the kernel counts only connections reaching it."""
    if rule is None:
        return ()
    out = []
    for s in rule.steps:
        if s is m:
            break
        if isinstance(s, Match):
            out.append(s)
    return tuple(out)


def _passes(
    st: State, fl: Flow, before: tuple[Match, ...], table: Table | None, check: Check
) -> bool:
    """Whether a connection's first packet satisfies the rule's earlier matches (the kernel
    counted it only then); undecidable ones count."""
    if not before:
        return True
    name = {v: k for k, v in _PROTOS.items()}.get(fl.proto, str(fl.proto))
    proto = "icmp" if name in ("icmp", "icmpv6") else name
    pkt = Packet(proto, fl.src, fl.dst, fl.sport, fl.dport, fl.family, None, st.packet.mark)
    saved = st.packet, dict(st.cache)
    st.set_packet(pkt)
    try:
        return all(check(st, b, table) is not False for b in before)
    finally:
        st.packet = saved[0]
        st.cache = saved[1]
