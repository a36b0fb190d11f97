"""iptables matches on headers a probe may lack, and on its connection's counters.

The xt modules behave as nft does for a missing header: an IPv6 extension header, an ESP/AH/
IPComp/DCCP/SCTP/mobility header the packet does not carry makes the match false, negated or
not (``-m frag``, ``-m rt``, ``-m esp``...). Each option is lowered to a Match on a probe_headers
field (``h:`` keys), so iptables and nft rules read the same values.

"""

from __future__ import annotations

import re
from collections.abc import Callable

from cntrace.netfilter.steps import Atom, Effect, Field, Match, Step
from cntrace.netfilter.values import int_value

Handler = Callable[[str, list[str], bool, "int | None", str], "Step | None"]


def _value(args: list[str], default: int) -> Atom:
    """The option's number or range; a list (``--dst-opts 92,12:12``) or a flag: ``default``
    (the header is absent on a probe, so only the match's falseness matters)."""
    if args and re.fullmatch(r"\d+(:\d*)?|0x[0-9a-fA-F]+", args[0]):
        return _range(args[0])
    return Atom(default)


def _range(spec: str) -> Atom:
    lo, sep, hi = spec.partition(":")
    a = int_value(lo) if lo else 0
    b = int_value(hi) if hi else (0xFFFFFFFF if sep else a)
    return Atom(a, b if b != a else None)


def _on(key: str, arg: str | None, proto: int | None, neg: bool, text: str, atom: Atom) -> Match:
    f = Field(f"h:{key}", arg=arg, proto=proto)
    return Match((f,), "!=" if neg else "==", ((atom,),), text=text)


_EXTHDR = {"frag": "frag", "rt": "rt", "dst": "dst", "hbh": "hbh", "srh": "srh"}
_PROTO = {"esp": (50, "esp"), "ah": (51, "ah"), "ipcomp": (108, "comp"), "mh": (135, "mh")}


def m_exthdr(module: str) -> Handler:
    """``-m frag/rt/dst/hbh/srh``: an IPv6 extension header a probe never carries."""

    def handler(opt: str, args: list[str], neg: bool, _p: int | None, text: str) -> Step | None:
        value = _value(args, 0)
        f = Field("h:exthdr", arg=f"{_EXTHDR[module]}.{opt.lstrip('-')}", family=6)
        return Match((f,), "!=" if neg else "==", ((value,),), text=text)

    return handler


def m_proto_header(module: str) -> Handler:
    """``-m esp/ah/ipcomp/mh``: the header of another protocol (false for any other packet)."""
    num, name = _PROTO[module]

    def handler(opt: str, args: list[str], neg: bool, _p: int | None, text: str) -> Step | None:
        value = _value(args, 0)
        return _on(f"{name}.{opt.lstrip('-')}", None, num, neg, text, value)

    return handler


def sctp_dccp_option(opt: str, args: list[str], neg: bool, proto: int | None, text: str) -> Match:
    """``--chunk-types``, ``--verification-tag`` (sctp), ``--dccp-types``/``--dccp-option``."""
    if opt in ("--chunk-types", "--verification-tag"):
        return _on("sctpchunk", opt.lstrip("-"), 132, neg, text, Atom(1))
    return _on(f"dccp.{opt.lstrip('-')}", None, 33, neg, text, Atom(1))


def m_tcpmss(opt: str, args: list[str], neg: bool, proto: int | None, text: str) -> Step | None:
    """``--mss A[:B]``: the MSS option of a SYN (no option: false)."""
    if opt != "--mss" or not args:
        raise ValueError(f"unknown option {opt}")
    return _on("tcpopt", "maxseg.size", 6, neg, text, _range(args[0]))


def m_ecn(opt: str, args: list[str], neg: bool, proto: int | None, text: str) -> Step | None:
    """``--ecn-tcp-cwr``/``--ecn-tcp-ece`` (TCP flags), ``--ecn-ip-ect N`` (the IP ECN bits)."""
    if opt in ("--ecn-tcp-cwr", "--ecn-tcp-ece"):
        bit = 0x80 if opt.endswith("cwr") else 0x40
        f = Field("tcpflags", mask=bit, proto=6)
        return Match((f,), "!=" if neg else "==", ((Atom(bit),),), text=text)
    if opt == "--ecn-ip-ect" and args:
        return Match((Field("ecn"),), "!=" if neg else "==", ((Atom(int(args[0])),),), text=text)
    raise ValueError(f"unknown option {opt}")


def m_mac(opt: str, args: list[str], neg: bool, proto: int | None, text: str) -> Step | None:
    """``--mac-source``: the frame's source MAC (known when the path knows the sender)."""
    if opt != "--mac-source" or not args:
        raise ValueError(f"unknown option {opt}")
    f = Field("ether.saddr")
    return Match((f,), "!=" if neg else "==", ((Atom(args[0].lower()),),), text=text)


def m_cgroup(opt: str, args: list[str], neg: bool, proto: int | None, text: str) -> Step | None:
    """``--cgroup ID``/``--path P``: the sending socket's cgroup (no socket: false)."""
    if opt not in ("--cgroup", "--path") or not args:
        raise ValueError(f"unknown option {opt}")
    v: int | str = int_value(args[0]) if opt == "--cgroup" else args[0]
    f = Field("h:meta.cgroup")
    return Match((f,), "!=" if neg else "==", ((Atom(v),),), text=text)


_CONNBYTES = "connbytes"  # the arg of the --connbytes match until join_connbytes gives its field
_U64 = (1 << 64) - 1


def m_connbytes(opt: str, args: list[str], neg: bool, proto: int | None, text: str) -> Step | None:
    """``--connbytes FROM[:TO]`` with ``--connbytes-mode``/``--connbytes-dir``: the connection's
    counters, as nft ``ct bytes``/``packets``/``avgpkt`` (no TO: FROM and above; ``!``: outside)."""
    if opt == "--connbytes" and args:
        lo, sep, hi = args[0].partition(":")
        a = int_value(lo) if lo else 0
        b = int_value(hi) if hi else _U64
        if not sep:
            b = _U64
        f = Field("h:ct.bytes", arg=_CONNBYTES)
        return Match((f,), "!=" if neg else "==", ((Atom(a, b),),), text=text)
    if opt in ("--connbytes-mode", "--connbytes-dir") and args:
        return Effect(opt[2:], args[0])
    raise ValueError(f"unknown option {opt}")


def join_connbytes(steps: list[Step]) -> None:
    """Give the --connbytes match the counter (mode) and direction its sibling options name."""
    at = next((k for k, s in enumerate(steps) if isinstance(s, Match) and s.fields
               and s.fields[0].arg == _CONNBYTES), None)  # fmt: skip
    if at is None:
        return
    opts = {s.kind: s.detail for s in steps if isinstance(s, Effect) and s.kind.startswith(
        "connbytes-")}  # fmt: skip
    mode = opts.get("connbytes-mode", "packets")
    direction = opts.get("connbytes-dir", "both")
    m = steps[at]
    assert isinstance(m, Match)
    f = Field(f"h:ct.{mode}", arg="reply" if direction == "reply" else None)
    steps[at] = Match((f,), m.op, m.values, text=m.text)
    steps[:] = [s for s in steps if not (isinstance(s, Effect) and s.kind in opts)]
