"""Which runtime sources a live discovery asks, in order of precedence.

Order matters: when two sources describe the same namespace, the earlier one owns it (the lab and
Podman before plain named namespaces). The lab's source is written elsewhere and may not exist
yet, so it is imported lazily and skipped when absent.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable

from cntrace.sources.procs import ProcTable
from cntrace.sources.runtimes import RuntimeSource
from cntrace.sources.runtimes.containerd import ContainerdSource
from cntrace.sources.runtimes.docker import DockerSource
from cntrace.sources.runtimes.netns import NetnsSource
from cntrace.sources.runtimes.pid import PidSource
from cntrace.sources.runtimes.podman import PodmanSource


def lab_source(procs: ProcTable | None = None) -> RuntimeSource | None:
    """The built-in lab's containers, when cntrace.sources.runtimes.lab is present."""
    try:
        module = importlib.import_module("cntrace.sources.runtimes.lab")
    except ModuleNotFoundError as exc:
        if exc.name == "cntrace.sources.runtimes.lab":
            return None
        raise
    cls = getattr(module, "LabSource", None)
    if cls is None:
        return None
    source: RuntimeSource = cls(procs)
    return source


def default_sources(procs: ProcTable, pids: Iterable[int] = ()) -> list[RuntimeSource]:
    sources: list[RuntimeSource] = [
        DockerSource(procs),
        PodmanSource(procs),
        ContainerdSource(procs),
    ]
    lab = lab_source(procs)
    if lab is not None:
        sources.append(lab)
    sources.append(NetnsSource())
    pid_list = list(pids)
    if pid_list:
        sources.append(PidSource(pid_list))
    return sources
