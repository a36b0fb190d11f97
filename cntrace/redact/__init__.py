"""Redaction: a Snapshot and the documents that go with it (paths, the command line) with
consistent pseudonyms for everything that identifies a site, and the map back.

Addresses get prefix-preserving pseudonyms (redact.addresses), MACs keyed ones; container, pod,
namespace, host, network and image names, label values and rule comments get numbered ones
(``ctr-1``, ``ns-1``, ``net-1``, ``img-1``, ``host-1``, ``lbl-1``, ``cmt-1``). Every string is
rewritten the same way, wherever it sits (a field, a rule's text, a finding's prose, a sysctl's
name, the nft JSON held as text), so the rules' logic, the verdict and the findings stay the same.
Words cntrace itself uses (``bridge``, ``host``, ``none`` ...) are never treated as names.

Pure: the key comes from the caller (random per report), nothing is read or written here.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import re
from dataclasses import dataclass
from typing import Any

from cntrace import codec
from cntrace.model import Snapshot
from cntrace.redact.addresses import AddressMap, IPNet, mac

MAP_SCHEMA = "cntrace.redact-map/v1"
# Never names: what cntrace and the runtimes use as vocabulary.
_WORDS = """bridge host none default null overlay macvlan ipvlan container lab netns pid docker
podman containerd kubernetes local main true false yes no on off localhost running gone unknown
external all lo eth0 tcp udp icmp"""
VOCABULARY = frozenset(_WORDS.split())

_COMMENT = re.compile(r'(--comment )("(?:[^"\\]|\\.)*"|[^\s"]+)|(\bcomment )("(?:[^"\\]|\\.)*")')
_MAC = r"(?<![0-9A-Fa-f:])(?:[0-9A-Fa-f]{2}:){5}[0-9A-Fa-f]{2}(?![0-9A-Fa-f:])"
_V4 = r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?:/\d{1,2})?(?![\w.])"
_V6 = r"(?<![\w:.])[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7}(?:/\d{1,3})?(?![\w:])"
_TOKENS = re.compile(f"(?P<mac>{_MAC})|(?P<v4>{_V4})|(?P<v6>{_V6})")
_WORD = "A-Za-z0-9_"
_KEYED = ("sysctls", "hosts")


@dataclass(frozen=True)
class Redaction:
    """A redacted Snapshot, the documents redacted with it, and what was replaced."""

    snapshot: Snapshot
    documents: tuple[Any, ...]
    mapping: dict[str, Any]  # cntrace.redact-map/v1: category -> {original: pseudonym}


def _label_names(snap: Snapshot) -> dict[str, list[str]]:
    """Identifying names by category, in a stable order."""
    cats: dict[str, list[str]] = {k: [] for k in ("ns", "ctr", "net", "img", "host", "lbl", "dom")}

    def add(cat: str, name: str | None) -> None:
        if name and len(name) > 1 and name not in VOCABULARY and not name.isdigit():
            cats[cat].append(name)

    add("host", snap.hostname)
    for ns in snap.netns:
        add("ns", ns.name)
    for c in snap.containers:
        add("ctr", c.name)
        for part in c.name.split("/"):
            add("ctr", part)
        if c.id != c.name:
            add("ctr", c.id)
        add("img", c.image)
        for n in c.networks:
            add("net", n.name)
            for alias in n.aliases:
                add("ctr", alias)
        for value in c.labels.values():
            add("lbl", value)
        if c.resolver:
            for d in c.resolver.search:
                add("dom", d)
            for h in c.resolver.hosts:
                add("dom", h)
    return cats


class _Redactor:
    def __init__(self, snap: Snapshot, key: bytes) -> None:
        self.key = key
        subnets: set[IPNet] = set()
        for ns in snap.netns:
            for lk in ns.links:
                subnets.update(ipaddress.ip_network(a.cidr, strict=False) for a in lk.addresses)
        self.addresses = AddressMap(key, subnets)
        self.names: dict[str, str] = {}
        for cat, names in _label_names(snap).items():
            for name in names:
                if name not in self.names:
                    n = sum(1 for v in self.names.values() if v.startswith(cat + "-")) + 1
                    self.names[name] = f"{cat}-{n}"
        ordered = sorted(self.names, key=len, reverse=True)
        self._names_re = (
            re.compile(f"(?<![{_WORD}])(?:{'|'.join(map(re.escape, ordered))})(?![{_WORD}])")
            if ordered
            else None
        )
        self.comments: dict[str, str] = {}
        self.seen_addresses: dict[str, str] = {}
        self.seen_macs: dict[str, str] = {}

    # -- strings

    def comment(self, text: str) -> str:
        if text not in self.comments:
            self.comments[text] = f"cmt-{len(self.comments) + 1}"
        return self.comments[text]

    def _token(self, m: re.Match[str]) -> str | None:
        """The pseudonym of an address or MAC token; None when the token is no address."""
        text = m.group(0)
        if m.group("mac"):
            return self.seen_macs.setdefault(text, mac(text, self.key))
        try:
            if m.group("v6") and "/" not in text:
                ipaddress.IPv6Address(text)
            else:
                ipaddress.ip_network(text, strict=False)
        except ValueError:
            return None
        out = self.addresses.cidr(text) if "/" in text else self.addresses.address(text)
        self.seen_addresses[text] = out
        return out

    def _names(self, s: str) -> str:
        if self._names_re is None or not s:
            return s
        return self._names_re.sub(lambda m: self.names[m.group(0)], s)

    def text(self, s: str) -> str:
        """Addresses and MACs first, names only in the text between them: a pseudonym address
        can hold a group that spells a name (``fe80`` kept, a random ``db``), and rewriting it
        would leave an address that is no address."""
        if "comment" in s:
            s = _COMMENT.sub(self._comment_sub, s)
        out: list[str] = []
        pos = 0
        for m in _TOKENS.finditer(s):
            token = self._token(m)
            out.append(self._names(s[pos : m.start()]))
            out.append(self._names(m.group(0)) if token is None else token)
            pos = m.end()
        out.append(self._names(s[pos:]))
        return "".join(out)

    def _comment_sub(self, m: re.Match[str]) -> str:
        lead, raw = (m.group(1), m.group(2)) if m.group(1) else (m.group(3), m.group(4))
        inner = raw[1:-1].replace('\\"', '"') if raw.startswith('"') else raw
        pseudo = self.comment(inner)
        return f'{lead}"{pseudo}"' if raw.startswith('"') else f"{lead}{pseudo}"

    # -- documents

    def walk(self, value: Any, key: str | None = None) -> Any:
        if isinstance(value, str):
            if key == "nft_json" and value.strip().startswith("{"):
                try:
                    doc = json.loads(value)
                except ValueError:
                    return self.text(value)
                return json.dumps(self.walk(doc))
            if key == "comment":
                return self.comment(value)
            return self.text(value)
        if isinstance(value, dict):
            if key in _KEYED:  # keys that are data (interface and host names), not field names
                return {self.text(k): self.walk(v, k) for k, v in value.items()}
            return {k: self.walk(v, k) for k, v in value.items()}
        if isinstance(value, list):
            return [self.walk(v, key) for v in value]
        return value


def redact(snap: Snapshot, *documents: Any, key: bytes) -> Redaction:
    """Redacted copies of ``snap`` and ``documents`` (plain JSON values) and the map back.

    The key is re-derived until no pseudonym equals an original address or MAC (a redacted
    report never contains an original by chance)."""
    for attempt in range(16):
        k = hashlib.blake2b(key + bytes([attempt]), digest_size=32).digest()
        r = _Redactor(snap, k)
        plain = r.walk(codec.to_plain(snap, compact=True))
        docs = tuple(r.walk(d) for d in documents)
        seen = {**r.seen_addresses, **r.seen_macs}
        collides = any(p != o and p in seen for o, p in seen.items())
        if collides or len(set(seen.values())) != len(seen):
            continue
        mapping = {
            "schema": MAP_SCHEMA,
            "addresses": {o: p for o, p in r.seen_addresses.items() if o != p},
            "macs": dict(r.seen_macs),
            "names": dict(r.names),
            "comments": dict(r.comments),
        }
        return Redaction(codec.from_plain(Snapshot, plain), docs, mapping)
    raise RuntimeError("could not find a collision-free redaction key")  # 16 collisions: never


def reverse(text: str, mapping: dict[str, Any]) -> str:
    """Translate an answer about a redacted report back to the real names and addresses."""
    table: dict[str, str] = {}
    for cat in ("addresses", "macs", "names", "comments"):
        table.update({v: k for k, v in mapping.get(cat, {}).items()})
    if not table:
        return text
    alts = "|".join(re.escape(p) for p in sorted(table, key=len, reverse=True))
    pattern = re.compile(rf"(?<![\w.:])(?:{alts})(?!\w|\.\d)")
    return pattern.sub(lambda m: table[m.group(0)], text)
