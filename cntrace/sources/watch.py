"""A cheap signal that containers started or stopped, so a console re-reads discovery only then.

A full discovery read costs tens of milliseconds per hundred containers; asking "did anything
change?" must cost next to nothing, because a console asks every second. Two signals cover every
runtime cntrace knows without scanning /proc:

* rtnetlink link events (RTMGRP_LINK) in each namespace that plays "host": a container starting
  or stopping adds or removes its host-side veth there (Docker, Podman, CNI, the lab). The
  sockets are created inside those namespaces once (nsenter.socket_in) and then read without
  blocking; idle, they cost nothing.
* the modification time of the directories runtimes bind-mount namespaces into (``ip netns``,
  netavark, CNI, Docker): a namespace without a veth (``--network none``) still shows there.

Anything else (a container that only changes state, a runtime with an unusual exec root) is
caught by the console's periodic full refresh.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterable

from cntrace.sources import nsenter

RTMGRP_LINK = 0x1
NAMESPACE_DIRS = ("/run/netns", "/run/docker/netns", "/var/run/docker/netns", "/run/cntrace/labs")
_RECV_SIZE = 65536


class ChangeWatch:
    """Answers ``poll()``: did a container start or stop since the last call?"""

    def __init__(self, dirs: Iterable[str] = NAMESPACE_DIRS) -> None:
        self._dirs = tuple(dirs)
        self._mtimes = self._stat_dirs()
        self._socks: dict[str, socket.socket] = {}
        self.errors: dict[str, str] = {}  # namespace path -> why it cannot be watched

    def _stat_dirs(self) -> tuple[int, ...]:
        out = []
        for d in self._dirs:
            try:
                out.append(os.stat(d).st_mtime_ns)
            except OSError:
                out.append(0)
        return tuple(out)

    def watch_namespaces(self, paths: Iterable[str]) -> None:
        """Listen for link events in exactly these namespaces (paths or /proc/PID/ns/net)."""
        wanted = list(dict.fromkeys(paths))
        for path in list(self._socks):
            if path not in wanted:
                self._socks.pop(path).close()
        for path in wanted:
            if path in self._socks:
                continue
            try:
                sock = nsenter.socket_in(
                    path, socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE
                )
            except OSError as exc:
                self.errors[path] = exc.strerror or str(exc)
                continue
            try:
                sock.setblocking(False)
                sock.bind((0, RTMGRP_LINK))
            except OSError as exc:
                sock.close()
                self.errors[path] = exc.strerror or str(exc)
                continue
            self.errors.pop(path, None)
            self._socks[path] = sock

    @property
    def watched(self) -> tuple[str, ...]:
        return tuple(self._socks)

    def poll(self) -> bool:
        """True when a link appeared or vanished in a watched namespace, or a namespace directory
        changed, since the previous poll. Never blocks."""
        changed = False
        for sock in self._socks.values():
            while True:
                try:
                    data = sock.recv(_RECV_SIZE)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError:  # ENOBUFS: events were lost, so something happened
                    changed = True
                    break
                if not data:
                    break
                changed = True
        mtimes = self._stat_dirs()
        if mtimes != self._mtimes:
            self._mtimes = mtimes
            changed = True
        return changed

    def close(self) -> None:
        for sock in self._socks.values():
            with contextlib.suppress(OSError):
                sock.close()
        self._socks.clear()

    def __enter__(self) -> ChangeWatch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
