"""Container runtimes as sources of Container records.

Each runtime module exposes a class implementing ``RuntimeSource``. A source lists the containers
its runtime knows with what only the runtime can say (name, id, PID, the namespace path, networks,
published ports, network mode, resolv.conf); the live reader fills in the namespace inode and
everything the kernel says. A runtime that is not installed or not reachable answers
``available() -> (False, why)`` and is skipped with that reason as a Snapshot warning.
"""

from __future__ import annotations

from typing import Protocol

from cntrace.model import Container


class RuntimeSource(Protocol):
    """One container runtime (docker, podman, containerd/kubernetes, lab, netns, pid)."""

    name: str

    def available(self) -> tuple[bool, str]:
        """Whether this runtime can be asked, and if not, why (one line)."""
        ...

    def containers(self) -> list[Container]:
        """Every container the runtime knows, running or not yet gone."""
        ...


# A source may also define ``claimed_namespaces() -> list[str]``: namespace paths it owns that are
# not containers (the lab's host namespace), so they are not listed as anonymous namespaces.
