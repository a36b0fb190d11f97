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
    """Every /run/netns entry; ownership by other runtimes is settled by the live reader."""

    name = "netns"

    def available(self) -> tuple[bool, str]:
        return True, ""

    def containers(self) -> list[Container]:
        out = []
        for name, path in named().items():
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
