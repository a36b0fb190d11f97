"""Where every containerd on the machine keeps its task state: found by its process, not by path.

A containerd is a process named ``containerd``. Its state directory (and socket) come from its
command line (``--state``, ``--address``/``-a``, ``--config``/``-c``), then from its config file
(``state``, ``[grpc] address``), then the default (/run/containerd). Paths are read through
``/proc/PID/root``, so a containerd in another mount namespace (a kind node's, inside a
container; one with a private /run) is read as it sees its own files. Known places are tried too,
for when no process is visible (cntrace in a container without hostPID): containerd's default,
k3s and RKE2 (/run/k3s/containerd), microk8s (/var/snap/microk8s/common/run/containerd).
``CNTRACE_CONTAINERD_STATE`` (state directories, ``:``-separated) adds or replaces them.

The init pids in the task directories are in the containerd's own pid namespace; when that is
not ours they are mapped to ours through /proc/*/status NSpid.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cntrace.sources.procs import ProcTable, cmdline, comm, read_text

DEFAULT_STATE = "/run/containerd"
DEFAULT_CONFIG = "/etc/containerd/config.toml"
KNOWN_STATES = (
    ("containerd", DEFAULT_STATE),
    ("k3s/rke2", "/run/k3s/containerd"),
    ("microk8s", "/var/snap/microk8s/common/run/containerd"),
)
TASKS = "io.containerd.runtime.v2.task"
ENV_OVERRIDE = "CNTRACE_CONTAINERD_STATE"


@dataclass(frozen=True)
class Instance:
    """One containerd: where its task state is, as seen from here."""

    state: str  # the state directory as containerd names it
    address: str | None = None
    pid: int | None = None
    prefix: str = ""  # /proc/PID/root when read through the process's root
    found_by: str = "process"  # process | default | override

    @property
    def task_root(self) -> str:
        return self.prefix + os.path.join(self.state, TASKS)

    def local(self, path: str) -> str:
        """A path in containerd's mount namespace, as this process can open it."""
        return self.prefix + path if path.startswith("/") else path


def parse_args(argv: list[str]) -> dict[str, str]:
    """containerd's flags that say where things are (``--flag value`` and ``--flag=value``)."""
    names = {"--config": "config", "-c": "config", "--state": "state", "--root": "root",
             "--address": "address", "-a": "address"}  # fmt: skip
    out: dict[str, str] = {}
    i = 1
    while i < len(argv):
        arg = argv[i]
        key, eq, value = arg.partition("=")
        if key in names:
            if eq:
                out[names[key]] = value
            elif i + 1 < len(argv):
                out[names[key]] = argv[i + 1]
                i += 1
        i += 1
    return out


def parse_config(text: str) -> dict[str, str]:
    """``state``, ``root`` and the gRPC address of a containerd config.toml (v1, v2 or v3)."""
    import tomllib  # noqa: PLC0415  (only when a containerd runs: 4 ms of every command)

    try:
        doc: dict[str, Any] = tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        return {}
    out = {k: str(doc[k]) for k in ("state", "root") if isinstance(doc.get(k), str)}
    grpc = doc.get("grpc")
    if isinstance(grpc, dict) and isinstance(grpc.get("address"), str):
        out["address"] = grpc["address"]
    return out


def from_process(pid: int, argv: list[str], read: Any = read_text) -> Instance:
    """The instance a containerd process runs, from its flags and its config file."""
    prefix = f"/proc/{pid}/root"
    if not os.path.isdir(prefix + "/"):
        prefix = ""  # not allowed to look through its root: assume our mount namespace
    flags = parse_args(argv)
    conf_path = flags.get("config", DEFAULT_CONFIG)
    text = read(prefix + conf_path) if conf_path.startswith("/") else None
    conf = parse_config(text) if text else {}
    state = flags.get("state") or conf.get("state") or DEFAULT_STATE
    address = flags.get("address") or conf.get("address") or f"{DEFAULT_STATE}/containerd.sock"
    return Instance(state=state, address=address, pid=pid, prefix=prefix)


def _processes(procs: ProcTable | None = None) -> list[tuple[int, list[str]]]:
    """containerd processes and their argv; from ``procs`` when given (its comm scan is
    shared with the other runtimes' look-ups), else from /proc."""
    out: list[tuple[int, list[str]]] = []
    if procs is not None:
        pids = procs.named("containerd")
    else:
        try:
            pids = [int(e) for e in os.listdir("/proc") if e.isdigit()]
        except OSError:
            return out
        pids = [pid for pid in pids if comm(pid) == "containerd"]
    for pid in pids:
        argv = cmdline(pid)
        if argv:
            out.append((pid, argv))
    return sorted(out)


def instances(
    env: Mapping[str, str] | None = None, procs: ProcTable | None = None
) -> list[Instance]:
    """Every containerd: running ones by process, then known places and the override."""
    env = os.environ if env is None else env
    found: list[Instance] = []
    seen: set[str] = set()

    def add(inst: Instance) -> None:
        key = os.path.realpath(inst.task_root)
        if key not in seen:
            seen.add(key)
            found.append(inst)

    override = [s for s in env.get(ENV_OVERRIDE, "").split(":") if s]
    for state in override:
        add(Instance(state=state, found_by="override"))
    for pid, argv in _processes(procs):
        add(from_process(pid, argv))
    if not override:
        for _name, state in KNOWN_STATES:
            if os.path.isdir(os.path.join(state, TASKS)):
                add(Instance(state=state, found_by="default"))
    return found


def _nspids(pid: int) -> list[int]:
    for line in (read_text(f"/proc/{pid}/status") or "").splitlines():
        if line.startswith("NSpid:"):
            return [int(x) for x in line.split()[1:]]
    return []


def _pid_ns(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/pid")
    except OSError:
        return None


class PidMapper:
    """Maps pids of a containerd's pid namespace to ours (identity when it is ours)."""

    def __init__(self, inst: Instance) -> None:
        self.level = 0
        self.table: dict[int, int] | None = None
        if inst.pid is None or _pid_ns(inst.pid) in (None, _pid_ns(os.getpid())):
            return
        own = _nspids(inst.pid)
        self.level = len(own) - 1
        if self.level <= 0:
            return
        target_ns = _pid_ns(inst.pid)
        table: dict[int, int] = {}
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            ns = _nspids(int(entry))
            if len(ns) <= self.level:
                continue
            # A task's init is the child of its shim, which lives in containerd's pid namespace.
            parent = (read_text(f"/proc/{entry}/stat") or "").rsplit(")", 1)[-1].split()
            ppid = int(parent[1]) if len(parent) > 1 else 0
            if _pid_ns(int(entry)) == target_ns or _pid_ns(ppid) == target_ns:
                table.setdefault(ns[self.level], int(entry))
        self.table = table

    def __call__(self, pid: int) -> int | None:
        if self.table is None:
            return pid
        return self.table.get(pid)
