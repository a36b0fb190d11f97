"""Runtime discovery: ask every runtime source for its containers and tie each to a namespace.

The sources (Docker, Podman, containerd, the lab, named namespaces, ``pid:N``) are asked on a
thread of their own while the namespace walk reads the kernel: their sockets, stats and
subprocesses wait at the same time as the netlink dumps do.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterable
from dataclasses import replace

from cntrace.model import Container, Resolver
from cntrace.sources import nsenter
from cntrace.sources.namespaces import Space
from cntrace.sources.procs import netns_inode, read_text
from cntrace.sources.runtimes import RuntimeSource
from cntrace.sources.runtimes.intent import Intent


def ask_runtimes(
    sources: Iterable[RuntimeSource], warnings: list[str], intent: Intent | None = None
) -> tuple[list[Container], set[int]]:
    """Every available source's containers, and the namespaces sources claim without listing
    (a lab's host namespace); a failing source becomes a warning. What a source says besides
    (its ``intent()``: networks, proxies, stopped containers) is added to ``intent``."""
    out: list[Container] = []
    claimed: set[int] = set()
    paths: set[str] = set()  # namespace paths the sources so far named (for the netns source)
    for source in sources:
        try:
            ok, why = source.available()
            if not ok:
                warnings.append(why)
                continue
            if isinstance(getattr(source, "known_paths", None), set):
                source.known_paths |= paths  # type: ignore[attr-defined]
            listed = source.containers()
            out.extend(listed)
            paths.update(c.netns_path for c in listed if c.netns_path)
            said = getattr(source, "intent", None)
            if intent is not None and callable(said):
                intent.extend(said())
            claim = getattr(source, "claimed_namespaces", None)
            for path in claim() if callable(claim) else ():
                paths.add(path)
                with contextlib.suppress(OSError):
                    claimed.add(nsenter.inode_of(path))
        except PermissionError as exc:
            warnings.append(f"{source.name}: permission denied ({exc})")
        except (OSError, ValueError, KeyError, TypeError) as exc:
            warnings.append(f"{source.name}: {type(exc).__name__}: {exc}")
    return out, claimed


class RuntimeAsker(threading.Thread):
    """``ask_runtimes`` on its own thread; ``result`` joins it on the reading thread."""

    def __init__(self, sources: list[RuntimeSource]) -> None:
        super().__init__(name="cntrace-runtimes", daemon=True)
        self.sources = sources
        self.found: list[Container] = []
        self.claimed: set[int] = set()
        self.warnings: list[str] = []
        self.intent = Intent()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.found, self.claimed = ask_runtimes(self.sources, self.warnings, self.intent)
        except BaseException as exc:  # handed to the reading thread, raised there
            self.error = exc

    def result(self, warnings: list[str]) -> tuple[list[Container], set[int]]:
        self.join()
        if self.error is not None:
            raise self.error
        warnings.extend(self.warnings)
        return self.found, self.claimed


def place(c: Container, spaces: dict[int, Space]) -> Container:
    """Fill the namespace inode and path; a container whose process is gone is marked gone.
    A namespace only the runtime knew is added to ``spaces``."""
    inode = c.netns
    state = c.state
    if c.pid is not None:
        # Asked again, not taken from the /proc scan: the runtime listing came later, and the
        # container may have exited in between.
        inode = netns_inode(c.pid)
        if inode is None:
            state = "gone"
    if inode is None and c.netns_path and state != "gone":
        try:
            inode = nsenter.inode_of(c.netns_path)
        except OSError:
            state = "gone"
    path = c.netns_path
    if inode is not None:
        space = spaces.get(inode)
        if space is None:
            space = spaces[inode] = Space(inode)
            if path:
                space.paths.append(path)
        if c.pid is not None and c.pid not in space.pids:
            space.pids.insert(0, c.pid)
        if path is None:
            path = space.paths[0] if space.paths else (f"/proc/{c.pid}/ns/net" if c.pid else None)
    if inode == c.netns and path == c.netns_path and state == c.state:
        return c  # a named namespace as listed: no copy (a host lists ~1,000)
    return replace(c, netns=inode, netns_path=path, state=state)


def dedupe(containers: list[Container], claimed: set[int]) -> list[Container]:
    """Drop named-namespace entries for namespaces another runtime already claims."""
    claimed = claimed | {
        c.netns for c in containers if c.runtime not in ("netns", "pid") and c.netns is not None
    }
    seen_ids: set[tuple[str, str]] = set()
    out = []
    for c in containers:
        if c.runtime == "netns" and c.netns in claimed:
            continue
        if (c.runtime, c.id) in seen_ids:
            continue
        seen_ids.add((c.runtime, c.id))
        out.append(c)
    return out


Seen = dict[tuple[str, str], tuple[str | None, str | None]]


def _files(pid: int, seen: Seen | None) -> tuple[str | None, str | None]:
    """resolv.conf and hosts as ``pid`` sees them. With ``seen`` (one read's memory),
    processes sharing a mount namespace and a root, which see the same files, have them read
    once (a lab's 1,000 containers are processes of the host's own filesystem)."""
    key = None
    if seen is not None:
        with contextlib.suppress(OSError):
            key = (os.readlink(f"/proc/{pid}/ns/mnt"), os.readlink(f"/proc/{pid}/root"))
    if key is not None and seen is not None and key in seen:
        return seen[key]
    found = (
        read_text(f"/proc/{pid}/root/etc/resolv.conf"),
        read_text(f"/proc/{pid}/root/etc/hosts"),
    )
    if key is not None and seen is not None:
        seen[key] = found
    return found


def resolver(pid: int, seen: Seen | None = None) -> Resolver | None:
    """The container's resolv.conf and /etc/hosts, seen through /proc/PID/root."""
    conf, hosts_text = _files(pid, seen)
    if conf is None and hosts_text is None:
        return None
    ns: list[str] = []
    search: list[str] = []
    options: list[str] = []
    for line in (conf or "").splitlines():
        parts = line.split("#", 1)[0].split()
        if not parts:
            continue
        if parts[0] == "nameserver" and len(parts) > 1:
            ns.append(parts[1])
        elif parts[0] in ("search", "domain"):
            search.extend(parts[1:])
        elif parts[0] == "options":
            options.extend(parts[1:])
    hosts: dict[str, str] = {}
    for line in (hosts_text or "").splitlines():
        parts = line.split("#", 1)[0].split()
        for name in parts[1:]:
            hosts.setdefault(name, parts[0])
    return Resolver(tuple(ns), tuple(search), tuple(options), hosts)
