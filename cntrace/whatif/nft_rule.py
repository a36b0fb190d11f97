"""nft's rule language lowered to the statements ``nft -j`` lists for it (see whatif/nft.py)."""

from __future__ import annotations

import re
from typing import Any

from cntrace.errors import BadInput
from cntrace.netfilter.values import port_number

_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|#[^\n]*|\n|[{};,]|[^\s{};,"]+')
_OPS = {"==": "==", "eq": "==", "!=": "!=", "ne": "!=", "<": "<", "lt": "<", ">": ">",
        "gt": ">", "<=": "<=", "le": "<=", ">=": ">=", "ge": ">="}  # fmt: skip
_PAYLOAD = {
    "ip": ("saddr", "daddr", "protocol", "ttl", "length", "dscp", "version", "id"),
    "ip6": ("saddr", "daddr", "nexthdr", "hoplimit", "length", "dscp"),
    "tcp": ("dport", "sport", "flags"),
    "udp": ("dport", "sport", "length"),
    "sctp": ("dport", "sport"),
    "th": ("dport", "sport"),
    "icmp": ("type", "code"),
    "icmpv6": ("type", "code"),
    "ether": ("saddr", "daddr", "type"),
}
_META = ("iifname", "oifname", "iif", "oif", "mark", "l4proto", "nfproto", "protocol",
         "pkttype", "skuid", "skgid", "iiftype", "oiftype", "length", "priority")  # fmt: skip
_BARE_META = ("iifname", "oifname", "iif", "oif", "mark")
_CT = ("state", "status", "mark", "direction", "zone")
_BITMASK = {("ct", "state"), ("ct", "status"), ("tcp", "flags")}
_FIB_FLAGS = ("saddr", "daddr", "mark", "iif", "oif")
_VERDICTS = ("accept", "drop", "continue", "return")


def tokens(text: str) -> list[str]:
    out = []
    for t in _TOKEN.findall(text):
        if t.startswith("#"):
            continue
        out.append(t)
    return out


def unquote(t: str) -> str:
    return t[1:-1].replace('\\"', '"') if t.startswith('"') else t


# --------------------------------------------------------------------------- rule expressions


class Rule:
    """Lowers one rule's tokens into nft JSON statements."""

    def __init__(self, words: list[str], family: str = "ip") -> None:
        self.family = family
        self.w = words
        self.i = 0
        self.comment: str | None = None

    def peek(self, k: int = 0) -> str | None:
        return self.w[self.i + k] if self.i + k < len(self.w) else None

    def take(self) -> str:
        if self.i >= len(self.w):
            raise BadInput("what-if: nft: the rule ends too early")
        self.i += 1
        return self.w[self.i - 1]

    def parse(self) -> list[Any]:
        out: list[Any] = []
        while self.peek() is not None:
            out.append(self.statement())
        return [s for s in out if s is not None]

    def statement(self) -> Any:
        w = self.take()
        if w == "counter":
            counts = {"packets": 0, "bytes": 0}
            while self.peek() in ("packets", "bytes"):
                key = self.take()
                counts[key] = int(self.take())
            return {"counter": counts}
        if w in _VERDICTS:
            return {w: None}
        if w in ("jump", "goto"):
            return {w: {"target": self.take()}}
        if w == "comment":
            self.comment = unquote(self.take())
            return None
        if w == "notrack":
            return {"notrack": None}
        if w == "reject":
            return self.reject()
        if w == "log":
            return self.log()
        if w in ("masquerade", "snat", "dnat", "redirect"):
            return self.nat(w)
        if w in ("meta", "ct") and self.peek() in ("mark",) and self.peek(1) == "set":
            key = self.take()
            self.take()
            return {"mangle": {"key": {w: {"key": key}}, "value": number(self.take())}}
        if w == "mark" and self.peek() == "set":
            self.take()
            return {"mangle": {"key": {"meta": {"key": "mark"}}, "value": number(self.take())}}
        self.i -= 1
        return self.match()

    def reject(self) -> Any:
        if self.peek() != "with":
            kind = {"ip": "icmp", "ip6": "icmpv6", "inet": "icmpx"}.get(self.family)
            return {"reject": {"type": kind, "expr": "port-unreachable"} if kind else None}
        self.take()
        kind = self.take()
        if kind == "tcp" and self.peek() == "reset":
            self.take()
            return {"reject": {"type": "tcp reset"}}
        if self.peek() == "type":
            self.take()
        return {"reject": {"type": kind, "expr": self.take()}}

    def log(self) -> Any:
        opts: dict[str, Any] = {}
        while self.peek() in ("prefix", "level", "group"):
            key = self.take()
            value = unquote(self.take())
            opts[key] = int(value) if key == "group" else value
        return {"log": opts or None}

    def nat(self, kind: str) -> Any:
        body: dict[str, Any] = {}
        if self.peek() in ("ip", "ip6") and self.peek(1) == "to":
            body["family"] = self.take()
        if self.peek() != "to":
            return {kind: None}
        self.take()
        target = self.take()
        if target.startswith(":"):
            body["port"] = _port(target[1:])
        else:
            addr, port = _split_hostport(target)
            body["addr"] = addr
            if port is not None:
                body["port"] = _port(port)
        return {kind: body}

    def match(self) -> Any:
        left, bitmask = self.lhs()
        if self.peek() in (".", "&", "|", "^", ">>", "<<"):
            raise BadInput(f"what-if: nft: {self.peek()!r} expressions are not supported")
        if self.peek() == "vmap":
            self.take()
            data = self.take()
            if not data.startswith("@"):
                raise BadInput("what-if: nft: only named verdict maps (vmap @NAME) are supported")
            return {"vmap": {"key": left, "data": data}}
        op = "=="
        explicit = False
        if self.peek() in _OPS:
            op, explicit = _OPS[self.take()], True
        right = self.value(left)
        if bitmask and not explicit and not (isinstance(right, dict) and "set" in right):
            op = "in"
        return {"match": {"op": op, "left": left, "right": right}}

    def lhs(self) -> tuple[Any, bool]:
        w = self.take()
        if w in _PAYLOAD and self.peek() in _PAYLOAD[w]:
            field = self.take()
            return {"payload": {"protocol": w, "field": field}}, (w, field) in _BITMASK
        if w == "meta":
            key = self.take()
            if key not in _META:
                raise BadInput(f"what-if: nft: meta {key} is not supported")
            return {"meta": {"key": key}}, False
        if w in _BARE_META:
            return {"meta": {"key": w}}, False
        if w == "ct":
            key = self.take()
            if key not in _CT:
                raise BadInput(f"what-if: nft: ct {key} is not supported")
            return {"ct": {"key": key}}, ("ct", key) in _BITMASK
        if w == "fib":
            flags = [self.take()]
            while self.peek() == "." or (self.peek() or "").startswith("."):
                t = self.take()
                flags.append(t[1:] if len(t) > 1 else self.take())
            if any(f not in _FIB_FLAGS for f in flags):
                raise BadInput(f"what-if: nft: fib {' . '.join(flags)} is not supported")
            return {"fib": {"result": self.take(), "flags": flags}}, False
        raise BadInput(f"what-if: nft: {w!r} is not a statement cntrace models")

    def value(self, left: Any) -> Any:
        w = self.take()
        if w == "{":
            items: list[Any] = []
            while True:
                t = self.take()
                if t == "}":
                    break
                if t in (",", "\n"):
                    continue
                items.append(_scalar(t, left))
            return {"set": items}
        items = [_scalar(w, left)]
        while self.peek() == ",":
            self.take()
            items.append(_scalar(self.take(), left))
        return items if len(items) > 1 else items[0]


def number(text: str) -> int:
    try:
        return int(text, 0)
    except ValueError:
        raise BadInput(f"what-if: nft: {text!r} is not a number") from None


def _port(text: str) -> int:
    try:
        return port_number(text)
    except ValueError as exc:
        raise BadInput(f"what-if: nft: {exc}") from None


def _split_hostport(text: str) -> tuple[str, str | None]:
    if text.startswith("["):
        addr, _, rest = text[1:].partition("]")
        return addr, rest[1:] if rest.startswith(":") else None
    if text.count(":") == 1:
        addr, _, port = text.partition(":")
        return addr, port
    return text, None


def _is_port_field(left: Any) -> bool:
    p = left.get("payload") if isinstance(left, dict) else None
    return bool(p and p.get("field") in ("dport", "sport"))


def _scalar(text: str, left: Any) -> Any:
    t = unquote(text)
    if text.startswith('"'):
        return t
    if "/" in t and not t.startswith("/"):
        addr, _, plen = t.partition("/")
        if plen.isdigit():
            return {"prefix": {"addr": addr, "len": int(plen)}}
    if "-" in t and not t.startswith("-"):
        lo, _, hi = t.partition("-")
        if _is_port_field(left) or (lo.isdigit() and hi.isdigit()) or ("." in lo and "." in hi):
            return {"range": [_scalar(lo, left), _scalar(hi, left)]}
    if _is_port_field(left):
        return _port(t)
    if isinstance(left, dict) and "fib" in left and t in ("missing", "exists"):
        return t == "exists"
    if re.fullmatch(r"0x[0-9a-fA-F]+|\d+", t):
        return int(t, 0)
    return t
