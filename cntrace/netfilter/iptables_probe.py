"""iptables matches the probe decides: its length, TOS/DSCP, TTL, TCP flags, fragment, sending
socket's owner and the clock (``-m length``, ``-m tos``, ``--tcp-flags``, ``-m owner``,
``-m time``).

Each handler lowers one option to a Match on a probe field (probe.py, probe_fields.py); what the
probe cannot know (a user name, the kernel's time zone) stays an uncertain match naming it.
"""

from __future__ import annotations

from cntrace.netfilter.names import DAYS, DSCP, TCP_FLAGS, bit_names
from cntrace.netfilter.steps import Atom, Field, Match, Step
from cntrace.netfilter.values import int_value

_TOS_NAMES = {
    "minimize-delay": 0x10, "maximize-throughput": 0x08, "maximize-reliability": 0x04,
    "minimize-cost": 0x02, "normal-service": 0,
}  # fmt: skip
_WEEKDAYS = {"mon": 1, "tue": 2, "wed": 3, "thu": 4, "fri": 5, "sat": 6, "sun": 0}


def _one(args: list[str]) -> str:
    if not args:
        raise ValueError("missing value")
    return args[0]


def _range(spec: str) -> Atom:
    lo, sep, hi = spec.partition(":")
    a = int_value(lo) if lo else 0
    b = int_value(hi) if hi else (0xFFFF if sep else a)
    return Atom(a, b if b != a else None)


def _eq(key: str, atom: Atom, neg: bool, text: str, mask: int | None = None) -> Match:
    return Match((Field(key, mask=mask),), "!=" if neg else "==", ((atom,),), text=text)


def m_length(opt: str, args: list[str], neg: bool, proto: int | None, text: str) -> Step | None:
    if opt != "--length":
        raise ValueError(f"unknown option {opt}")
    return _eq("length", _range(_one(args)), neg, text)


def m_tos(opt: str, args: list[str], neg: bool, proto: int | None, text: str) -> Step | None:
    if opt != "--tos":
        raise ValueError(f"unknown option {opt}")
    v, _, m = _one(args).partition("/")
    value = _TOS_NAMES[v.lower()] if v.lower() in _TOS_NAMES else int_value(v)
    mask = int_value(m) if m else (0x3F if v.lower() in _TOS_NAMES else 0xFF)
    return _eq("tos", Atom(value & mask), neg, text, mask)


def m_dscp(opt: str, args: list[str], neg: bool, proto: int | None, text: str) -> Step | None:
    if opt == "--dscp":
        return _eq("dscp", Atom(int_value(_one(args))), neg, text)
    if opt == "--dscp-class":
        return _eq("dscp", Atom(DSCP[_one(args).lower()]), neg, text)
    raise ValueError(f"unknown option {opt}")


def m_ttl(opt: str, args: list[str], neg: bool, proto: int | None, text: str) -> Step | None:
    """``--ttl-eq/-lt/-gt`` (IPv4) and ``--hl-eq/-lt/-gt`` (IPv6): both read the hop count."""
    kind = opt.rsplit("-", 1)[-1]
    if not opt.startswith(("--ttl-", "--hl-")) or kind not in ("eq", "lt", "gt"):
        raise ValueError(f"unknown option {opt}")
    n = int_value(_one(args))
    if kind == "eq":
        return _eq("ttl", Atom(n), neg, text)
    op = {"lt": "<", "gt": ">"}[kind]
    if neg:
        op = {"<": ">=", ">": "<="}[op]
    return Match((Field("ttl"),), op, ((Atom(n),),), text=text)


def tcp_flags(opt: str, args: list[str], neg: bool, proto: int | None, text: str) -> Step:
    """``--tcp-flags MASK COMP`` and ``--syn`` (SYN,RST,ACK,FIN SYN)."""
    if opt == "--syn":
        mask, comp = 0x17, 0x02
    else:
        if len(args) < 2:
            raise ValueError("--tcp-flags needs a mask and the flags set")
        mask = bit_names(args[0], TCP_FLAGS, "TCP flag")
        comp = bit_names(args[1], TCP_FLAGS, "TCP flag")
    return _eq("tcpflags", Atom(comp & mask), neg, text, mask)


def fragment(neg: bool) -> Match:
    """``-f``: a second or later fragment."""
    return _eq("fragment", Atom(1), neg, f"{'! ' if neg else ''}-f")


def m_owner(opt: str, args: list[str], neg: bool, proto: int | None, text: str) -> Step | None:
    if opt in ("--uid-owner", "--gid-owner"):
        spec = _one(args)
        key = "skuid" if opt == "--uid-owner" else "skgid"
        lo, _, hi = spec.partition("-")
        if lo == "root" and not hi:
            lo = "0"
        if not lo.isdigit() or (hi and not hi.isdigit()):
            return Match((), text=text, unsupported=f"owner {spec!r}: names other than root")
        return _eq(key, Atom(int(lo), int(hi) if hi and int(hi) != int(lo) else None), neg, text)
    if opt == "--socket-exists":
        return Match((Field("skuid"),), "!=" if not neg else "==", ((Atom(-1),),), text=text)
    return Match((), text=text, unsupported=f"owner {opt} is not modelled")


def _clock(spec: str) -> int:
    parts = [int(x) for x in spec.split(":")]
    return parts[0] * 3600 + parts[1] * 60 + (parts[2] if len(parts) > 2 else 0)


def m_time(opt: str, args: list[str], neg: bool, proto: int | None, text: str) -> Step | None:
    """``-m time``; a --timestart after --timestop (midnight between) is joined by the rule
    compiler (``join_time``)."""
    if opt == "--timestart":
        return Match((Field("hour"),), ">=", ((Atom(_clock(_one(args))),),), text=text)
    if opt == "--timestop":
        return Match((Field("hour"),), "<=", ((Atom(_clock(_one(args))),),), text=text)
    if opt == "--weekdays":
        days = {_WEEKDAYS.get(d.lower()[:3], -1) for d in _one(args).split(",")}
        if -1 in days:
            days = {int(d) % 7 for d in _one(args).split(",")}
        return Match(
            (Field("day"),), "!=" if neg else "==", tuple((Atom(d),) for d in sorted(days)),
            text=text,
        )  # fmt: skip
    if opt in ("--datestart", "--datestop"):
        import datetime  # noqa: PLC0415  (time matches only: 2 ms of every command)

        stamp = datetime.datetime.fromisoformat(_one(args)).replace(tzinfo=datetime.UTC)
        op = ">=" if opt == "--datestart" else "<="
        return Match((Field("date"),), op, ((Atom(int(stamp.timestamp())),),), text=text)
    if opt == "--kerneltz":
        return None  # the kernel's time zone; cntrace's clock is UTC, as sys_tz usually is
    return Match((), text=text, unsupported=f"time {opt} is not modelled")


def join_time(steps: list[Step]) -> None:
    """--timestart later than --timestop: the window wraps midnight (either bound suffices)."""
    start = stop = None
    for k, s in enumerate(steps):
        if isinstance(s, Match) and s.fields and s.fields[0].key == "hour":
            if s.op == ">=":
                start = k
            elif s.op == "<=":
                stop = k
    if start is None or stop is None:
        return
    a, b = steps[start], steps[stop]
    assert isinstance(a, Match) and isinstance(b, Match)
    lo, hi = int(a.values[0][0].lo), int(b.values[0][0].lo)
    if lo <= hi:
        return
    steps[start] = Match(
        (Field("hour"),), "==", ((Atom(lo, 86399),), (Atom(0, hi),)), text=f"{a.text} {b.text}"
    )
    del steps[stop]


__all__ = ["DAYS", "fragment", "join_time", "m_dscp", "m_length", "m_owner", "m_time", "m_tos",
           "m_ttl", "tcp_flags"]  # fmt: skip
