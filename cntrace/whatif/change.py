"""A proposed change as typed: its namespace prefix, its kind, and applying it to a Snapshot."""

from __future__ import annotations

import shlex
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Protocol

from cntrace.errors import BadInput
from cntrace.model import Netns, Path, Snapshot
from cntrace.topology import Topology, resolve_ref

Reader = Callable[[str], str]


class Op(Protocol):
    """One kind's parsed change; ``apply`` is pure."""

    @property
    def kind(self) -> str: ...

    @property
    def needs_netns(self) -> bool: ...

    def apply(self, snap: Snapshot, ns: Netns | None) -> Snapshot: ...


@dataclass(frozen=True)
class Change:
    """A change as the user wrote it, with the namespace it names (None: the path's host)."""

    text: str
    target: str | None
    op: Op

    @property
    def kind(self) -> str:
        return self.op.kind


@dataclass(frozen=True)
class Applied:
    """Where a change was applied: ``netns`` is the label, ``default`` says cntrace chose it."""

    change: Change
    netns: str | None
    default: bool


def _no_files(path: str) -> str:
    raise BadInput(f"what-if: cannot read {path} here")


def parse(text: str, read: Reader | None = None) -> Change:
    """The typed change for ``text``; malformed or unsupported text raises BadInput (one line)."""
    from cntrace.whatif import iproute, iptables, nft, runtime, sysctl  # noqa: PLC0415 (cycle)

    reader = read or _no_files
    stripped = text.strip()
    if not stripped:
        raise BadInput("what-if: empty change")
    if "\n" in stripped and stripped.lstrip().startswith(("*", "#")):
        return Change(text, None, iptables.parse_restore(stripped, noflush=False, v6=False))
    try:
        words = shlex.split(stripped, comments=False)
    except ValueError as exc:
        raise BadInput(f"what-if: cannot split {stripped!r}: {exc}") from None
    target, words = split_target(words)
    if not words:
        raise BadInput(f"what-if: no command in {text!r}")
    head = words[0].rsplit("/", 1)[-1]
    op: Op
    if head in iptables.COMMANDS:
        op = iptables.parse_command(head, words[1:])
    elif head in iptables.RESTORE:
        op = iptables.parse_restore_command(head, words[1:], reader)
    elif head == "nft":
        op = nft.parse_command(words[1:], reader)
    elif head == "ip":
        op = iproute.parse(words[1:])
    elif head in ("sysctl", "echo"):
        op = sysctl.parse(words)
    elif head in runtime.ENGINES or head in runtime.LISTENERS:
        op = runtime.parse(words)
    else:
        raise BadInput(
            f"what-if: {words[0]!r} is not a change cntrace can apply (iptables, ip6tables, "
            "iptables-restore, nft, ip route|rule|link, sysctl, docker network connect, "
            "docker run -p, a listener)"
        )
    return Change(text, target, op)


def _opts_then_word(words: list[str], with_value: set[str]) -> tuple[dict[str, str], list[str]]:
    """Leading options (and the values of those in ``with_value``), then the rest."""
    opts: dict[str, str] = {}
    i = 0
    while i < len(words) and words[i].startswith("-") and words[i] != "--":
        w = words[i]
        key, eq, value = w.partition("=")
        if not eq and key in with_value and i + 1 < len(words):
            value = words[i + 1]
            i += 1
        opts[key] = value
        i += 1
    if i < len(words) and words[i] == "--":
        i += 1
    return opts, words[i:]


def split_target(words: list[str]) -> tuple[str | None, list[str]]:
    """Strip the prefixes that name a namespace; the ref is in `resolve_ref` syntax."""
    target: str | None = None

    def set_target(ref: str) -> None:
        nonlocal target
        if target is not None:
            raise BadInput(f"what-if: two namespaces named ({target} and {ref})")
        target = ref

    while words:
        w = words[0]
        if w == "sudo":
            _, words = _opts_then_word(words[1:], {"-u", "-g"})
        elif words[:3] == ["ip", "netns", "exec"] and len(words) > 3:
            set_target(f"netns:{words[3]}")
            words = words[4:]
        elif w == "ip" and len(words) > 2 and words[1] in ("-n", "-netns", "--netns"):
            set_target(f"netns:{words[2]}")
            words = ["ip", *words[3:]]
        elif w == "nsenter":
            opts, words = _opts_then_word(words[1:], {"-t", "--target"})
            pid = opts.get("-t") or opts.get("--target")
            net = opts.get("-n", opts.get("--net"))
            if net:
                set_target(f"netns:{net}")
            elif pid:
                set_target(f"pid:{pid}")
            else:
                raise BadInput("what-if: nsenter needs -t PID -n (or --net=FILE)")
        elif w in ("docker", "podman", "nerdctl") and len(words) > 1 and words[1] == "exec":
            _, rest = _opts_then_word(words[2:], {"-u", "--user", "-e", "--env", "-w"})
            if len(rest) < 2:
                raise BadInput("what-if: docker exec needs a container and a command")
            set_target(rest[0])
            words = rest[1:]
        elif w.startswith("netns:") and len(words) > 1:
            set_target(w)
            words = words[1:]
        elif w.endswith(":") and len(w) > 1 and len(words) > 1 and w[:-1] != "host":
            set_target(w[:-1])
            words = words[1:]
        else:
            break
    return target, words


def target_netns(snap: Snapshot, ref: str) -> Netns:
    found = resolve_ref(snap, ref)
    if isinstance(found, Netns):
        return found
    ns = snap.ns(found.netns)
    if ns is None:
        raise BadInput(f"what-if: {found.name} has no network namespace in this snapshot")
    return ns


def host_of_path(snap: Snapshot, path: Path | None) -> Netns | None:
    """The namespace acting as the host on ``path``: the first host the packet passes, else the
    source's host, else the root namespace."""
    topo = Topology(snap)
    hosts = {ns.inode for ns in topo.hosts()}
    if path is not None:
        for hop in path.hops:
            if hop.netns in hosts:
                return snap.ns(hop.netns)
        owner = topo.owner(path.source.netns)
        if owner is not None:
            found = snap.ns(owner.host_netns or topo.host_netns(owner))
            if found is not None:
                return found
        if path.source.kind == "host":
            return snap.ns(path.source.netns)
    return snap.root


def apply(snap: Snapshot, change: Change, default: Netns | None) -> tuple[Snapshot, Applied]:
    """``snap`` after ``change``; ``default`` is where a change without a namespace goes."""
    ns: Netns | None = None
    chosen = False
    if change.op.needs_netns:
        if change.target is not None:
            ns = target_netns(snap, change.target)
        else:
            ns, chosen = default, True
            if ns is None:
                raise BadInput(f"what-if: name a namespace for {change.text!r}")
    after = change.op.apply(snap, ns)
    label = Topology(snap).label(ns.inode) if ns is not None else None
    return after, Applied(change, label, chosen)


def apply_all(
    snap: Snapshot, changes: Sequence[Change], default: Netns | None
) -> tuple[Snapshot, list[Applied]]:
    """Apply in order; each change sees the Snapshot the previous one left."""
    done: list[Applied] = []
    for change in changes:
        if default is not None:
            default = snap.ns(default.inode) or default
        snap, applied = apply(snap, change, default)
        done.append(applied)
    return snap, done


def with_netns(snap: Snapshot, *changed: Netns) -> Snapshot:
    """``snap`` with these namespaces replaced (matched by inode)."""
    by_inode = {ns.inode: ns for ns in changed}
    return replace(snap, netns=tuple(by_inode.get(ns.inode, ns) for ns in snap.netns))
