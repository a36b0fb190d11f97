"""Container refs as people type them: a name, an id prefix, ``pid:N``, ``netns:NAME``, ``host``;
and Kubernetes pods as ``pod:NAME``, ``NAMESPACE/POD`` and ``NAMESPACE/POD/CONTAINER``.

Pure: a ref and a Snapshot in, a Container or Netns out; unknown or ambiguous refs raise BadInput
(exit 2) with the candidates on the same line.
"""

from __future__ import annotations

from collections.abc import Iterable

from cntrace.errors import BadInput
from cntrace.model import Container, Netns, Snapshot


def _describe(c: Container) -> str:
    if c.id.startswith(c.runtime):
        return c.name
    short = c.id[:12] if all(ch in "0123456789abcdef" for ch in c.id) else c.id
    return f"{c.name} ({c.runtime} {short})"


def _candidates(names: Iterable[str], ref: str, limit: int = 8) -> list[str]:
    import difflib  # noqa: PLC0415  (only on the error path)

    pool = sorted(set(names))
    near = [n for n in pool if ref.lower() in n.lower()]
    near += [n for n in difflib.get_close_matches(ref, pool, n=limit) if n not in near]
    return (near or pool)[:limit]


def resolve_ref(snapshot: Snapshot, ref: str) -> Container | Netns:
    """A container by name, id prefix, ``pid:N``, a namespace by ``netns:NAME``, or ``host``
    (the root namespace, unless a container is named so).

    Unknown or ambiguous refs raise BadInput (exit 2) with the candidates on the same line.
    """
    ref = ref.strip()
    if not ref:
        raise BadInput("empty container ref")
    containers = snapshot.containers
    if ref.startswith("pid:"):
        try:
            pid = int(ref[4:])
        except ValueError:
            raise BadInput(f"bad ref {ref!r}: pid:N needs a number") from None
        owned = [c for c in containers if c.pid == pid]
        owned.sort(key=lambda c: c.runtime == "pid")  # a runtime's own record first
        if owned:
            return owned[0]
        for ns in snapshot.netns:
            if pid in ns.pids:
                return ns
        raise BadInput(f"pid:{pid}: no such process (or it left before discovery finished)")
    if ref.startswith("pod:"):
        return _pod(snapshot.containers, ref[4:])
    if ref.startswith("netns:"):
        key = ref[6:]
        for ns in snapshot.netns:
            if key in (ns.name, str(ns.inode)) or key in ns.paths:
                return ns
        raise BadInput(
            f"unknown namespace {ref!r}; candidates: "
            + ", ".join(
                "netns:" + n
                for n in _candidates((ns.name for ns in snapshot.netns if ns.name), key)
            )
        )
    exact = [c for c in containers if c.name == ref and c.runtime != "pid"]
    if len(exact) == 1:
        return exact[0]
    if not exact:
        exact = [c for c in containers if c.id.startswith(ref) and c.runtime != "pid"]
        if len(exact) == 1:
            return exact[0]
    if not exact:
        # Kubernetes pods are named namespace/pod: accept the bare pod name when unique.
        exact = [c for c in containers if c.runtime == "kubernetes" and c.name.endswith("/" + ref)]
        if len(exact) == 1:
            return exact[0]
    if len(exact) > 1:
        raise BadInput(
            f"ambiguous container {ref!r}; candidates: "
            + ", ".join(_describe(c) for c in exact[:8])
        )
    if ref == "host" and snapshot.root is not None:
        return snapshot.root  # the root namespace, whoever shares it
    names = [c.name for c in containers if c.runtime != "pid"]
    cands = _candidates(names, ref)
    raise BadInput(
        f"unknown container {ref!r}; "
        + ("candidates: " + ", ".join(cands) if cands else "no containers found")
    )


def _pod(containers: tuple[Container, ...], key: str) -> Container:
    """A pod's sandbox by ``name`` (unique across namespaces) or ``namespace/name``."""
    pods = [
        c
        for c in containers
        if c.runtime == "kubernetes" and not c.network_mode.startswith("container:")
    ]
    found = [c for c in pods if c.name == key or ("/" not in key and c.name.endswith("/" + key))]
    if len(found) == 1:
        return found[0]
    if found:
        raise BadInput(
            f"ambiguous pod 'pod:{key}' (in several namespaces); use pod:NAMESPACE/NAME: "
            + ", ".join(c.name for c in found[:8])
        )
    cands = _candidates((c.name for c in pods), key)
    raise BadInput(
        f"unknown pod 'pod:{key}'; " + ("candidates: " + ", ".join(cands) if cands else "no pods")
    )
