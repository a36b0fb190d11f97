"""Named network namespaces (``ip netns``) as containers of their own.

A namespace made with ``ip netns add`` is a workload as far as networking goes, and often the one
an engineer built by hand to reproduce something. The live reader drops every entry whose
namespace another runtime already claims (Podman's ``netns-*``, CNI's ``cni-*``, the lab), so
only namespaces nobody else explains are listed here.
"""

from __future__ import annotations

import os

from cntrace.model import Container
from cntrace.sources.nsenter import named


class NetnsSource:
    """Every /run/netns entry; ownership by other runtimes is settled by the live reader.

    ``known_paths`` (filled by sources.containers.ask_runtimes with the namespace paths the
    runtimes asked before named) are skipped unread: a lab of 1,000 containers names 1,000 of
    them, which the reader would drop anyway. A namespace known under another name (a bind
    mount) is still dropped by inode, later."""

    name = "netns"

    def __init__(self) -> None:
        self.known_paths: set[str] = set()

    def available(self) -> tuple[bool, str]:
        return True, ""

    def containers(self) -> list[Container]:
        out = []
        for name, path in named().items():
            if path in self.known_paths:
                continue
            try:
                inode = os.stat(path).st_ino
            except OSError:
                continue  # deleted while listing
            out.append(
                Container(
                    id=f"netns:{name}",
                    name=name,
                    runtime="netns",
                    netns=inode,
                    netns_path=path,
                    network_mode="unknown",
                )
            )
        return out
