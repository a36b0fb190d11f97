"""One pass over /proc: which process lives in which network namespace, read lazily beyond that.

Every runtime source and the namespace finder need "processes by namespace" or "processes by
container id", so /proc is walked once per discovery and shared. Anything a process may take with
it when it exits (cgroup, parent, command line) is read on demand and treated as possibly gone.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

_NS_RE = re.compile(r"net:\[(\d+)\]")
# Container ids in cgroup paths: docker/<id>, docker-<id>.scope, libpod-<id>.scope,
# cri-containerd-<id>.scope, kubepods/.../<id>, crio-<id>.scope.
_ID_RE = re.compile(r"[/\-]([0-9a-f]{64})(?:\.scope)?(?:/|$)", re.M)


def which(name: str) -> str | None:
    """shutil.which for a command name: the first executable file of that name on PATH.
    shutil itself imports the compression modules, ~3 ms of every command that asks."""
    for d in os.environ.get("PATH", os.defpath).split(os.pathsep):
        path = os.path.join(d or ".", name)
        if os.access(path, os.X_OK) and not os.path.isdir(path):
            return path
    return None


def read_text(path: str) -> str | None:
    """A small file's text, or None when it (or its process) is gone or unreadable."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:  # os-level reads: a scan reads ~1,000 comm files, and io.open costs 3x the syscalls
        parts = []
        while chunk := os.read(fd, 65536):
            parts.append(chunk)
    except OSError:
        return None
    finally:
        os.close(fd)
    return b"".join(parts).decode(errors="replace")


def netns_inode(pid: int | str) -> int | None:
    """The network namespace inode of a process, None when it is gone."""
    try:
        m = _NS_RE.match(os.readlink(f"/proc/{pid}/ns/net"))
    except OSError:
        return None
    return int(m.group(1)) if m else None


def netns_denied(pid: int) -> str | None:
    """Why /proc will not say which network namespace ``pid`` is in, when it exists but its
    ns link is shielded (PID 1 in some sandboxes); None when readable or when there is no such
    process (the ref's own error says that)."""
    try:
        os.readlink(f"/proc/{pid}/ns/net")
    except FileNotFoundError:
        return None
    except OSError as exc:
        if os.path.exists(f"/proc/{pid}"):
            return f"/proc/{pid}/ns/net is not readable ({exc.strerror})"
    return None


@dataclass
class ProcTable:
    """pid -> netns inode for every process, plus cached per-process look-ups."""

    netns_of: dict[int, int] = field(default_factory=dict)
    _by_netns: dict[int, list[int]] | None = None
    _cgroups: dict[int, str | None] = field(default_factory=dict)
    _ids: dict[str, list[int]] | None = None
    _comms: dict[int, str | None] | None = None

    @classmethod
    def scan(cls) -> ProcTable:
        table = cls()
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                inode = netns_inode(entry)
                if inode is not None:
                    table.netns_of[int(entry)] = inode
        return table

    def by_netns(self) -> dict[int, list[int]]:
        """netns inode -> its pids, ascending (the oldest process first, usually the init)."""
        if self._by_netns is None:
            out: dict[int, list[int]] = {}
            for pid in sorted(self.netns_of):
                out.setdefault(self.netns_of[pid], []).append(pid)
            self._by_netns = out
        return self._by_netns

    def cgroup(self, pid: int) -> str | None:
        """The process's /proc/PID/cgroup text (every hierarchy, v1 and v2), None if gone."""
        if pid not in self._cgroups:
            self._cgroups[pid] = read_text(f"/proc/{pid}/cgroup")
        return self._cgroups[pid]

    def container_id(self, pid: int) -> str | None:
        """The 64-hex container id in the process's cgroup paths, if any."""
        found = _ID_RE.search(self.cgroup(pid) or "")
        return found.group(1) if found else None

    def by_container_id(self) -> dict[str, list[int]]:
        """64-hex container id found in a cgroup path -> the pids in that cgroup."""
        if self._ids is None:
            ids: dict[str, list[int]] = {}
            for pid in sorted(self.netns_of):
                cid = self.container_id(pid)
                if cid:
                    ids.setdefault(cid, []).append(pid)
            self._ids = ids
        return self._ids

    def named(self, name: str) -> list[int]:
        """Processes whose comm is ``name``, ascending. Every comm is read once per table:
        containerd's and Podman's monitors are looked for on the same scan (a host of 1,000
        containers runs as many processes, and each scan reads a file of each)."""
        if self._comms is None:
            self._comms = {pid: comm(pid) for pid in sorted(self.netns_of)}
        return [pid for pid, c in self._comms.items() if c == name]

    def pids_in(self, inodes: set[int]) -> list[int]:
        """Every process whose network namespace is one of ``inodes``."""
        return [pid for pid, ino in self.netns_of.items() if ino in inodes]

    def init_of(self, pids: list[int]) -> int | None:
        """The first process of a group: the one whose parent is outside the group."""
        members = set(pids)
        for pid in pids:
            parent = ppid(pid)
            if parent is not None and parent not in members:
                return pid
        return pids[0] if pids else None


def ppid(pid: int) -> int | None:
    text = read_text(f"/proc/{pid}/stat")
    if not text:
        return None
    # comm may contain spaces and parentheses; the fields after the last ')' are fixed.
    rest = text.rsplit(")", 1)[-1].split()
    return int(rest[1]) if len(rest) > 1 else None


def comm(pid: int) -> str | None:
    text = read_text(f"/proc/{pid}/comm")
    return text.strip() if text else None


def cmdline(pid: int) -> list[str]:
    text = read_text(f"/proc/{pid}/cmdline")
    return [a for a in text.split("\0") if a] if text else []


def socket_owners(pids: Iterable[int]) -> dict[int, tuple[int, str]]:
    """socket inode -> (pid, comm) for the given processes' open fds (the first owner wins).

    The fd links are read directly: psutil's connection tables read the caller's /proc/net, not
    the namespace each process lives in, and name no inode.
    """
    out: dict[int, tuple[int, str]] = {}
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        name = comm(pid) or "?"
        for fd in fds:
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                out.setdefault(int(target[8:-1]), (pid, name))
    return out
