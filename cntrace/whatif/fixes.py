"""Check a finding's fix before it is printed: apply it as a what-if and predict again.

A fix is prose with a command in it (``sysctl -w ... in namespace X``, ``iptables -D ...``,
`` `ip link set X mtu 1500` ``); the command is taken out of the prose and run as a what-if in the
namespace the fix names, else the one the finding points at. Fixes that are actions rather than
commands (make the server listen on 0.0.0.0, attach both containers to one network) become the
change that action makes. A fix that cannot be expressed as a change is reported as not verified,
with why.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from cntrace.errors import BadInput
from cntrace.model import Container, Finding, Path, Snapshot
from cntrace.topology import Topology, resolve_ref
from cntrace.whatif.change import Change, apply_all, host_of_path, parse

Predict = Callable[[Snapshot], Path]

_STARTS = (
    r"(?:sysctl -w|ip6?tables(?:-nft|-legacy)? |ip (?:-n \S+ )?(?:link|route|rule) |nft "
    r"|docker network connect |podman network connect )"
)
_COMMAND = re.compile(r"`([^`]+)`|(" + _STARTS + r"[^`;()]*?)(?=\s+\(|\s+in namespace |;|,| or |$)")
_IN_NAMESPACE = re.compile(r"in namespace (\S+?)\)?(?:\s|$)")
_IN_OWNER = re.compile(r"in (\S+)'s namespace")


@dataclass(frozen=True)
class FixCheck:
    """How one finding's fix fared: ``status`` is delivers | does-not-deliver | not-verified."""

    code: str
    changes: tuple[str, ...]
    status: str
    why: str
    after: Path | None = None

    @property
    def note(self) -> str:
        what = "; ".join(self.changes)
        if self.status == "delivers":
            return f"fix for {self.code} checked as a what-if ({what}): the path delivers"
        if self.status == "does-not-deliver":
            return f"fix for {self.code} checked as a what-if ({what}): {self.why}"
        return f"fix for {self.code} not verified: {self.why}"


def commands_in(text: str) -> list[str]:
    """The commands a fix's prose contains, in order."""
    out = []
    for m in _COMMAND.finditer(text):
        cmd = (m.group(1) or m.group(2) or "").strip()
        if re.match(_STARTS, cmd + " "):
            out.append(cmd)
    return out


def _target(snap: Snapshot, path: Path, f: Finding) -> str | None:
    m = _IN_NAMESPACE.search(f.fix)
    if m:
        return f"netns:{m.group(1)}"
    m = _IN_OWNER.search(f.fix)
    if m:
        return m.group(1)
    if f.hop is not None and 0 < f.hop <= len(path.hops):
        inode = path.hops[f.hop - 1].netns
        host = host_of_path(snap, path)
        ns = snap.ns(inode)
        if ns is None or (host is not None and host.inode == ns.inode):
            return None  # the path's host: where a change without a prefix goes
        owner = Topology(snap).owner(ns.inode)
        if owner is not None:
            return owner.name
        return f"netns:{ns.name or ns.inode}"
    return None


def _container(snap: Snapshot, name: str | None) -> Container | None:
    if not name:
        return None
    try:
        found = resolve_ref(snap, name)
    except BadInput:
        return None
    return found if isinstance(found, Container) else None


def changes_for(snap: Snapshot, path: Path, f: Finding) -> tuple[list[str], str]:
    """The what-if texts that make ``f``'s fix, or no texts and the reason why not."""
    dst = path.destination
    if f.code in ("loopback-bind", "no-listener"):
        hop = path.hops[f.hop - 1] if f.hop is not None and 0 < f.hop <= len(path.hops) else None
        if hop is None or hop.packet.dport is None or hop.netns is None:
            return [], "the finding names no socket"
        owner = Topology(snap).owner(hop.netns)
        where = f"{owner.name}:" if owner is not None else f"netns:{hop.netns}"
        return [f"{where} listen {hop.packet.proto} 0.0.0.0:{hop.packet.dport}"], ""
    if f.code == "isolated-networks":
        src = _container(snap, path.source.name)
        other = _container(snap, dst.name)
        nets = [n for n in other.networks if n.bridge] if other is not None else []
        if src is None or not nets:
            return [], "both ends must be containers on bridge networks"
        engine = src.runtime if src.runtime in ("docker", "podman") else "docker"
        return [f"{engine} network connect {nets[0].name} {src.name}"], ""
    found = commands_in(f.fix)
    if not found:
        return [], "the fix is advice, not a change cntrace can apply"
    target = _target(snap, path, f)
    out = []
    for cmd in found:
        if "GATEWAY" in cmd or "PORT" in cmd:
            return [], f"`{cmd}` has a placeholder to fill in"
        if target is None or re.match(r"ip -n ", cmd):
            out.append(cmd)
        elif target.startswith("netns:"):
            out.append(f"{target} {cmd}")
        else:
            out.append(f"{target}: {cmd}")
    return out, ""


def check(snap: Snapshot, path: Path, f: Finding, again: Predict) -> FixCheck:
    texts, why = changes_for(snap, path, f)
    if not texts:
        return FixCheck(f.code, (), "not-verified", why)
    try:
        changes: list[Change] = [parse(t) for t in texts]
        after_snap, _ = apply_all(snap, changes, host_of_path(snap, path))
        after = again(after_snap)
    except BadInput as exc:
        return FixCheck(f.code, tuple(texts), "not-verified", f"it does not apply here ({exc})")
    if after.verdict.status == "delivered" and not any(x.code == f.code for x in after.findings):
        return FixCheck(f.code, tuple(texts), "delivers", "", after)
    if after.verdict.status == "delivered":
        return FixCheck(f.code, tuple(texts), "does-not-deliver", f"{f.code} remains", after)
    why = f"the path is still {after.verdict.status}: {after.verdict.summary}"
    return FixCheck(f.code, tuple(texts), "does-not-deliver", why, after)


def check_all(snap: Snapshot, path: Path, again: Predict) -> list[FixCheck]:
    """Every finding with a fix, checked."""
    return [check(snap, path, f, again) for f in path.findings if f.fix]
