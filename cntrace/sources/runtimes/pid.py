"""Any process as a container: ``pid:1234`` names the network namespace that process lives in.

Useful for workloads no runtime describes (a systemd service with PrivateNetwork, a process a
debugger started in its own namespace). Only the PIDs asked for are listed, never all processes.
"""

from __future__ import annotations

from collections.abc import Iterable

from cntrace.model import Container
from cntrace.sources import procs


class PidSource:
    """The processes named by ``pid:N`` refs."""

    name = "pid"

    def __init__(self, pids: Iterable[int] = ()) -> None:
        self.pids = sorted(set(pids))

    def available(self) -> tuple[bool, str]:
        return True, ""

    def containers(self) -> list[Container]:
        out = []
        for pid in self.pids:
            inode = procs.netns_inode(pid)
            if inode is None:
                continue  # no such process: resolving the ref reports it
            comm = procs.comm(pid) or "?"
            out.append(
                Container(
                    id=f"pid:{pid}",
                    name=f"pid:{pid}",
                    runtime="pid",
                    pid=pid,
                    netns=inode,
                    network_mode="unknown",
                    labels={"comm": comm, "cmdline": " ".join(procs.cmdline(pid))[:200]},
                )
            )
        return out
