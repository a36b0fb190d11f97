"""A Snapshot read on demand: what a path reads is proportional to the path, not to the host.

``live.read_snapshot(lazy=True)`` lists every namespace with its links and addresses (what
``cntrace ls`` reads: the core asks "who holds this address", "which bridge is this port in"
across the whole host), but leaves each namespace's routes, policy rules, neighbours, FDB,
sockets, sysctls and ruleset unread, and each container's resolver too. The first time anything
(the pure core included) reads one of those fields, the namespace is read in full from the kernel
and the read is recorded. The core stays pure: it reads a Netns as always; only the objects'
class, made here, knows that a field is filled on first access.

:func:`evidence` turns such a Snapshot into plain model objects holding exactly what was read
(unread detail left empty, and a warning saying so), which is what ``path --save-snapshot``
writes: replaying it takes the same walk over the same facts and gives the same answer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields, replace
from typing import Any, TypeVar

from cntrace.model import Container, Netns, Snapshot
from cntrace.sources.namespaces import Space, detail, open_many, read_detail, to_netns

T = TypeVar("T")
Fill = Callable[[], dict[str, Any]]

NETNS_DETAIL = (
    "routes",
    "rules",
    "neighbors",
    "fdb",
    "sockets",
    "sysctls",
    "ruleset",
    "error",
)
CONTAINER_DETAIL = ("resolver",)
PARTIAL = (
    "partial snapshot: routes, rules, neighbours, FDB, sockets, sysctls and rulesets were "
    "read only for {read} of {total} namespaces (those the command needed)"
)


def _deferring(base: type[T], names: tuple[str, ...]) -> type[T]:
    """A subclass of the (slotted, frozen) dataclass ``base`` whose ``names`` fields run the
    instance's pending fill on first read. Other fields cost nothing extra: only these names
    become properties over the base's slots."""
    slots = {n: base.__dict__[n] for n in names}

    def prop(slot: Any) -> property:
        def get(self: Any) -> Any:
            fill = self.__dict__.get("_fill")
            if fill is not None:
                values = fill()
                del self.__dict__["_fill"]
                for key, value in values.items():
                    slots[key].__set__(self, value)
            return slot.__get__(self, base)

        return property(get, slot.__set__)

    listed = tuple(f.name for f in fields(base) if f.name not in names)  # type: ignore[arg-type]

    def eq(self: Any, other: object) -> bool:
        """Equal as the base compares, reading the detail only when all else is equal."""
        if self is other:
            return True
        if not isinstance(other, base):
            return NotImplemented  # type: ignore[no-any-return]
        return all(getattr(self, n) == getattr(other, n) for n in (*listed, *names))

    body: dict[str, Any] = {n: prop(s) for n, s in slots.items()}
    body["__eq__"] = eq
    body["__hash__"] = base.__hash__
    body["__module__"] = __name__
    body["__doc__"] = f"A {base.__name__} whose {', '.join(names)} are read on first access."
    return type(f"Lazy{base.__name__}", (base,), body)


LazyNetns = _deferring(Netns, NETNS_DETAIL)
LazyContainer = _deferring(Container, CONTAINER_DETAIL)


def _slots(base: type[Any]) -> tuple[Any, ...]:
    """The base class's slot descriptors, one per field: they read and write a field as held,
    past the lazy twin's properties (no fill is triggered)."""
    return tuple(base.__dict__[f.name] for f in fields(base))


_SLOTS: dict[type[Any], tuple[Any, ...]] = {Netns: _slots(Netns), Container: _slots(Container)}


def _copy(obj: object, base: type[Any], cls: type[T]) -> T:
    """``obj``'s fields as held, in a new ``cls`` (the base or its lazy twin): slot to slot,
    without the frozen __init__ (a host's 1,000 containers are copied on every read)."""
    out = object.__new__(cls)
    for slot in _SLOTS[base]:
        slot.__set__(out, slot.__get__(obj, base))
    return out


def defer(obj: T, fill: Fill) -> T:
    """``obj`` (a Netns or Container) as its lazy twin: ``fill()`` returns the detail fields,
    called once, the first time one of them is read."""
    base: type[Any] = Netns if isinstance(obj, Netns) else Container
    out = _copy(obj, base, LazyNetns if base is Netns else LazyContainer)
    out.__dict__["_fill"] = fill
    return out  # type: ignore[return-value]


def pending(obj: object) -> bool:
    """Whether ``obj``'s detail has not been read yet."""
    d = getattr(obj, "__dict__", None)
    return d is not None and d.get("_fill") is not None


def _plain(obj: T) -> T:
    base: type[Any] = Netns if isinstance(obj, Netns) else Container
    if type(obj) is base:
        return obj
    return _copy(obj, base, base)  # type: ignore[no-any-return]


def evidence(snap: Snapshot) -> Snapshot:
    """The Snapshot as read so far, in plain model objects (what `--save-snapshot` writes)."""
    unread = sum(1 for ns in snap.netns if pending(ns))
    if all(type(ns) is Netns for ns in snap.netns) and all(
        type(c) is Container for c in snap.containers
    ):
        return snap  # not lazily read (a recorded file, a full read)
    warnings = snap.warnings
    if unread:
        total = len(snap.netns)
        warnings = (*warnings, PARTIAL.format(read=total - unread, total=total))
    return replace(
        snap,
        netns=tuple(_plain(ns) for ns in snap.netns),
        containers=tuple(_plain(c) for c in snap.containers),
        warnings=warnings,
    )


def read_count(snap: Snapshot) -> tuple[int, int]:
    """(namespaces read in full, namespaces listed): what a lazy read cost so far."""
    return sum(1 for ns in snap.netns if not pending(ns)), len(snap.netns)


# --------------------------------------------------------------------------- the loader


def deferred(
    sp: Space,
    root: int | None,
    peers: dict[tuple[int, int], int],
    sockets: bool,
    rulesets: bool,
) -> Netns:
    """``sp``'s Netns with its links and addresses (read) and the rest read on first access:
    the namespace is entered once more for its diag and netfilter sockets, then its detail is
    dumped exactly as a full read does (namespaces.read_detail), so the values are the same."""

    def fill() -> dict[str, Any]:
        if sp.conn is not None or sp.listed:
            open_many([sp], full=True, sockets=sockets, rulesets=rulesets)
            read_detail([sp], sockets=sockets, rulesets=rulesets)
        values = detail(sp)
        if sp.conn is not None:
            sp.conn.close()
            sp.conn = None
        return values

    out = to_netns(sp, root, peers, cls=LazyNetns)
    out.__dict__["_fill"] = fill
    return out
