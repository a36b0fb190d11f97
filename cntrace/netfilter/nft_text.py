"""nft JSON expressions and statements as ``nft list ruleset`` prints them.

The JSON carries no rule text, yet a user finds a rule again by reading it: rules are rendered in
nft syntax when first read, and messages about unsupported statements quote them the same way.
"""

from __future__ import annotations

import json
from typing import Any

# Meta keys nft prints without the "meta" keyword.
_BARE_META = {
    "iif",
    "oif",
    "iifname",
    "oifname",
    "iiftype",
    "oiftype",
    "skuid",
    "skgid",
    "nftrace",
    "rtclassid",
    "ibrname",
    "obrname",
    "cpu",
    "iifgroup",
    "oifgroup",
    "cgroup",
    "ipsec",
}
_VERDICT_KEYS = ("accept", "drop", "continue", "return", "jump", "goto", "queue")


def expr_text(expr: Any) -> str:
    """A JSON expression in ``nft list`` syntax."""
    if isinstance(expr, dict) and len(expr) == 1:
        ((k, v),) = expr.items()
        if k == "payload" and isinstance(v, dict):
            if "protocol" in v:
                return f"{v['protocol']} {v.get('field')}"
            return f"@{v.get('base')},{v.get('offset')},{v.get('len')}"
        if k == "meta" and isinstance(v, dict):
            key = v.get("key")
            return str(key) if key in _BARE_META else f"meta {key}"
        if k == "ct" and isinstance(v, dict):
            parts = ["ct"]
            if v.get("dir"):
                parts.append(str(v["dir"]))
            parts.append(str(v.get("key")))
            return " ".join(parts)
        if k == "fib" and isinstance(v, dict):
            flags = v.get("flags", [])
            flags = [flags] if isinstance(flags, str) else flags
            return f"fib {' . '.join(flags)} {v.get('result')}"
        if k in ("&", "|", "^", "<<", ">>") and isinstance(v, list) and len(v) == 2:
            return f"{expr_text(v[0])} {k} {value_text(v[1], mark=True)}"
        if k == "concat" and isinstance(v, list):
            return " . ".join(expr_text(x) for x in v)
        if k == "numgen" and isinstance(v, dict):
            off = f" offset {v['offset']}" if v.get("offset") else ""
            return f"numgen {v.get('mode')} mod {v.get('mod')}{off}"
        if k in ("jhash", "symhash"):
            return f"{k} ..."
        if k in _OPTION_HEADERS and isinstance(v, dict):
            return _option_text(k, v)
        if k in ("socket", "osf", "rt") and isinstance(v, dict):
            return " ".join(str(x) for x in (k, v.get("family"), v.get("key")) if x)
    if isinstance(expr, dict):
        return json.dumps(expr, sort_keys=True)
    return value_text(expr)


_OPTION_HEADERS = ("exthdr", "tcp option", "ip option", "sctp chunk", "dccp option")


def _option_text(k: str, v: dict[str, Any]) -> str:
    """``frag nexthdr``, ``exthdr frag`` (exists), ``tcp option maxseg size``."""
    name, fld = v.get("name"), v.get("field")
    if k == "exthdr":
        return f"{name} {fld}" if fld else f"exthdr {name}"
    if k == "dccp option":
        return f"dccp option {v.get('type')}"
    return " ".join(str(x) for x in (k, name, fld) if x is not None)


def value_text(value: Any, mark: bool = False) -> str:
    """A JSON right-hand value in ``nft list`` syntax."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "exists" if value else "missing"
    if isinstance(value, int):
        return f"0x{value:08x}" if mark else str(value)
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return ",".join(value_text(v, mark) for v in value)
    if isinstance(value, dict) and len(value) == 1:
        ((k, v),) = value.items()
        if k == "prefix":
            return f"{v.get('addr')}/{v.get('len')}"
        if k == "range":
            return f"{value_text(v[0])}-{value_text(v[1])}"
        if k == "set":
            items = v if isinstance(v, list) else [v]
            return "{ " + ", ".join(_set_item_text(i) for i in items) + " }"
        if k == "concat":
            return " . ".join(value_text(x) for x in v)
        if k == "elem" and isinstance(v, dict):
            return value_text(v.get("val"))
        if k in _VERDICT_KEYS:
            return _verdict_text(k, v)
        return expr_text(value)
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True)
    return str(value)


def _set_item_text(item: Any) -> str:
    if isinstance(item, list) and len(item) == 2:
        return f"{value_text(item[0])} : {value_text(item[1])}"
    return value_text(item)


def _verdict_text(k: str, v: Any) -> str:
    if k in ("jump", "goto") and isinstance(v, dict):
        return f"{k} {v.get('target')}"
    return k


def stmt_text(k: str, v: Any) -> str:
    """A JSON statement in ``nft list`` syntax (close to what ``nft list ruleset`` prints)."""
    if k == "match" and isinstance(v, dict):
        left = v.get("left")
        right = v.get("right")
        op = v.get("op", "==")
        lt = expr_text(left)
        mark = _is_mark(left)
        rt = value_text(right, mark=mark)
        if _is_ifname(left) and isinstance(right, str) and not right.startswith("@"):
            rt = f'"{right}"'
        elif _is_ifname(left) and isinstance(right, dict) and "set" in right:
            rt = (
                "{ "
                + ", ".join(f'"{x}"' if isinstance(x, str) else value_text(x) for x in right["set"])
                + " }"
            )
        binop = isinstance(left, dict) and any(b in left for b in ("&", "|", "^"))
        if op in ("==", "in") and not binop:
            return f"{lt} {rt}"
        return f"{lt} {op} {rt}"
    if k in ("accept", "drop", "continue", "return"):
        return k
    if k in ("jump", "goto") and isinstance(v, dict):
        return f"{k} {v.get('target')}"
    if k == "counter":
        if isinstance(v, dict):
            return f"counter packets {v.get('packets', 0)} bytes {v.get('bytes', 0)}"
        return f"counter name {value_text(v)}"
    if k == "reject":
        if isinstance(v, dict) and v.get("expr") and v.get("expr") != "port-unreachable":
            return f"reject with {v.get('type')} {v.get('expr')}"
        if isinstance(v, dict) and v.get("type") == "tcp reset":
            return "reject with tcp reset"
        return "reject"
    if k in ("dnat", "snat"):
        if not isinstance(v, dict):
            return k
        fam = f" {v['family']}" if v.get("family") else ""
        addr = value_text(v.get("addr")) if v.get("addr") is not None else ""
        port = value_text(v.get("port")) if v.get("port") is not None else ""
        to = addr + (f":{port}" if port else "")
        flags = _flags_text(v.get("flags"))
        return f"{k}{fam} to {to}{flags}"
    if k in ("masquerade", "redirect"):
        if not isinstance(v, dict):
            return k
        port = f" to :{value_text(v.get('port'))}" if v.get("port") is not None else ""
        return f"{k}{port}{_flags_text(v.get('flags'))}"
    if k == "vmap" and isinstance(v, dict):
        key = v.get("key")
        data = v.get("data")
        if isinstance(data, dict) and "set" in data and _is_ifname(key):
            items = ", ".join(
                f'"{p[0]}" : {value_text(p[1])}' if isinstance(p[0], str) else _set_item_text(p)
                for p in data["set"]
            )
            return f"{expr_text(key)} vmap {{ {items} }}"
        return f"{expr_text(key)} vmap {value_text(data)}"
    if k == "mangle" and isinstance(v, dict):
        key = v.get("key")
        return f"{expr_text(key)} set {_mangle_value_text(v.get('value'), _is_mark(key))}"
    if k == "log":
        if isinstance(v, dict) and v.get("prefix") is not None:
            return f'log prefix "{v["prefix"]}"'
        return "log"
    if k == "notrack":
        return "notrack"
    if k == "queue":
        return "queue" + (
            f" num {value_text(v.get('num'))}"
            if isinstance(v, dict) and v.get("num") is not None
            else ""
        )
    if k == "limit" and isinstance(v, dict):
        return f"limit rate {v.get('rate')}/{v.get('per')}"
    if k == "xt":
        if isinstance(v, dict):
            return f"xt {v.get('type')} {v.get('name')}"
        return f"xt {v}"
    if k in ("set", "map") and isinstance(v, dict):
        return f"{k} {v.get('op')} {value_text(v.get('elem'))} {v.get(k)}"
    return f"{k} {value_text(v)}".strip()


def _mangle_value_text(value: Any, mark: bool) -> str:
    if isinstance(value, dict) and len(value) == 1:
        ((k, v),) = value.items()
        if k in ("&", "|", "^") and isinstance(v, list) and len(v) == 2:
            return f"{_mangle_value_text(v[0], mark)} {k} {value_text(v[1], mark=mark)}"
        return expr_text(value)
    return value_text(value, mark=mark)


def _flags_text(flags: Any) -> str:
    if not flags:
        return ""
    items = [flags] if isinstance(flags, str) else list(flags)
    return " " + ",".join(str(f) for f in items)


def _is_mark(expr: Any) -> bool:
    if not isinstance(expr, dict):
        return False
    if "&" in expr and isinstance(expr["&"], list) and expr["&"]:
        return _is_mark(expr["&"][0])
    if "meta" in expr and isinstance(expr["meta"], dict):
        return expr["meta"].get("key") == "mark"
    if "ct" in expr and isinstance(expr["ct"], dict):
        return expr["ct"].get("key") == "mark"
    return False


def _is_ifname(expr: Any) -> bool:
    return (
        isinstance(expr, dict)
        and isinstance(expr.get("meta"), dict)
        and expr["meta"].get("key") in ("iifname", "oifname", "iif", "oif")
    )
