"""iptables targets (``-j ACCEPT``, ``-j DNAT --to-destination ...``, ``-g CHAIN``) as steps.

A terminal target becomes a Verdict, a NAT target a NatSpec, MARK/CONNMARK a Mangle; targets
that never end a rule's traversal (LOG, TCPMSS ...) are Effects; the rest are Unsupported, which
makes the rule's outcome uncertain.
"""

from __future__ import annotations

from cntrace.netfilter.iptables_matches import mask_value
from cntrace.netfilter.steps import MASK32, Effect, Mangle, NatSpec, Step, Unsupported, Verdict
from cntrace.netfilter.values import int_value, ip_to_int, port_number

VERDICTS = {"ACCEPT": "accept", "DROP": "drop", "RETURN": "return", "QUEUE": "queue"}
# Targets that never end a rule's traversal (the packet goes on to the next rule).
NON_TERMINAL = {
    "LOG",
    "NFLOG",
    "ULOG",
    "TRACE",
    "AUDIT",
    "CHECKSUM",
    "TCPMSS",
    "TCPOPTSTRIP",
    "TOS",
    "DSCP",
    "TTL",
    "HL",
    "ECN",
    "CLASSIFY",
    "CONNSECMARK",
    "SECMARK",
    "IDLETIMER",
    "LED",
    "RATEEST",
    "SET",
    "HMARK",
    "TEE",
    "NETMAP",
}


def target_steps(name: str, args: list[str], goto: bool, names: set[str]) -> list[Step]:
    """The steps of ``-j NAME args`` (``-g`` when ``goto``); ``names`` are the table's chains."""
    opts = _options(args)
    if goto:
        return [Verdict("goto", name)]
    if name in VERDICTS:
        return [Verdict(VERDICTS[name])]
    if name == "REJECT":
        with_ = opts.get("--reject-with", ["icmp-port-unreachable"])[0]
        return [Verdict("reject", detail=with_)]
    if name == "NFQUEUE":
        num = opts.get("--queue-num", ["0"])[0]
        return [Verdict("queue", detail=f"num {num}")]
    if name in ("DNAT", "SNAT"):
        key = "--to-destination" if name == "DNAT" else "--to-source"
        if key not in opts:
            return [Unsupported(f"-j {name} {' '.join(args)}", f"{name} without {key}")]
        return [_nat_spec(name.lower(), opts[key][0], _flags(opts))]
    if name == "MASQUERADE":
        port, port_hi = _port_range(opts.get("--to-ports", [""])[0])
        return [NatSpec("masquerade", port=port, port_hi=port_hi, flags=_flags(opts))]
    if name == "REDIRECT":
        port, port_hi = _port_range(opts.get("--to-ports", [""])[0])
        return [NatSpec("redirect", port=port, port_hi=port_hi, flags=_flags(opts))]
    if name == "MARK":
        return [_mark_target("mark", opts)]
    if name == "CONNMARK":
        return [_connmark_target(opts)]
    if name in ("NOTRACK",) or (name == "CT" and "--notrack" in opts):
        return [Effect("notrack", f"-j {name} {' '.join(args)}".strip())]
    if name == "CT":
        return [Effect("ct", f"-j CT {' '.join(args)}".strip())]
    if name in NON_TERMINAL:
        return [Effect(name.lower(), f"-j {name} {' '.join(args)}".strip())]
    if name in names:
        return [Verdict("jump", name)]
    if name == "TPROXY":
        text = f"-j TPROXY {' '.join(args)}"
        return [Unsupported(text, "TPROXY: needs a matching socket (kernel state, not the packet)")]
    if name.isupper() and args:
        return [Unsupported(f"-j {name} {' '.join(args)}", f"target {name} is not modelled")]
    # A chain defined in the table later is still declared before rules in save output, so a
    # name we do not know is an extension target without options.
    return [Unsupported(f"-j {name}", f"target {name} is not modelled")]


def _nat_spec(kind: str, spec: str, flags: tuple[str, ...]) -> NatSpec:
    addr_part, port_part = _split_addr_port(spec)
    addr = addr_hi = None
    if addr_part:
        lo, _, hi = addr_part.partition("-")
        ip_to_int(lo)
        addr = lo
        if hi:
            ip_to_int(hi)
            addr_hi = hi if hi != lo else None
    port, port_hi = _port_range(port_part)
    return NatSpec(kind, addr, addr_hi, port, port_hi, flags)


def _options(args: list[str]) -> dict[str, list[str]]:
    opts: dict[str, list[str]] = {}
    key = None
    for a in args:
        if a.startswith("--"):
            key = a
            opts[key] = []
        elif key is not None:
            opts[key].append(a)
    return opts


def _flags(opts: dict[str, list[str]]) -> tuple[str, ...]:
    return tuple(k[2:] for k in ("--random", "--random-fully", "--persistent") if k in opts)


def _split_addr_port(spec: str) -> tuple[str, str]:
    """'10.0.0.1:80', '10.0.0.1-10.0.0.3:80-90', '[2001:db8::1]:80', ':80', '2001:db8::1'."""
    if spec.startswith("["):
        addr, _, rest = spec[1:].partition("]")
        return addr, rest[1:] if rest.startswith(":") else ""
    if spec.count(":") > 1:  # bare IPv6
        return spec, ""
    addr, _, port = spec.partition(":")
    return addr, port


def _port_range(text: str) -> tuple[int | None, int | None]:
    if not text:
        return None, None
    lo, _, hi = text.partition("-")
    a = port_number(lo)
    b = port_number(hi) if hi else None
    return a, (b if b != a else None)


def _mark_target(dest: str, opts: dict[str, list[str]]) -> Mangle:
    for opt in ("--set-xmark", "--set-mark"):  # --set-mark: exact when v lies within m, as
        if opt in opts:  # iptables prints it
            v, m = mask_value(opts[opt][0])
            return Mangle(dest, keep=~m & MASK32, xor=v)
    if "--and-mark" in opts:
        return Mangle(dest, keep=int_value(opts["--and-mark"][0]))
    if "--or-mark" in opts:
        v = int_value(opts["--or-mark"][0])
        return Mangle(dest, keep=~v & MASK32, xor=v)
    if "--xor-mark" in opts:
        return Mangle(dest, keep=MASK32, xor=int_value(opts["--xor-mark"][0]))
    raise ValueError("MARK needs --set-xmark, --set-mark, --and-mark, --or-mark or --xor-mark")


def _connmark_target(opts: dict[str, list[str]]) -> Mangle:
    nfmask = int_value(opts.get("--nfmask", ["0xffffffff"])[0])
    ctmask = int_value(opts.get("--ctmask", ["0xffffffff"])[0])
    if "--save-mark" in opts:
        if "--mask" in opts:
            nfmask = ctmask = int_value(opts["--mask"][0])
        # ctmark = (ctmark & ~ctmask) ^ (mark & nfmask)   (xt_connmark)
        return Mangle("ctmark", keep=~ctmask & MASK32, src="mark", src_mask=nfmask)
    if "--restore-mark" in opts:
        if "--mask" in opts:
            nfmask = ctmask = int_value(opts["--mask"][0])
        # mark = (mark & ~nfmask) ^ (ctmark & ctmask)
        return Mangle("mark", keep=~nfmask & MASK32, src="ctmark", src_mask=ctmask)
    return _mark_target("ctmark", opts)
