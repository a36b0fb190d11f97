"""A big host's read leaves the descriptors below FD_SETSIZE to C code that select()s.

libnftables 1.0.6 waits on its netlink socket with select(): a descriptor of its own past 1,023
aborts the whole process ("bit out of range 0 - FD_SETSIZE on fd_set"). A read of 1,000
containers holds ~3,000 netlink sockets, so `path --live` (an nft trace through libnftables)
died on such a host. Here, in a child process in a network namespace of its own (unshared:
it vanishes with the child), with the usual soft limit of 1,024 raised as cntrace's CLI does,
1,100 netlink sockets are opened as a read of that host would, then libnftables commits a
batch in-process (the select()ing path): it must answer, not abort. With the sockets left on
low descriptors the child aborts (SIGABRT, checked by hand when this was written).
"""

from __future__ import annotations

import subprocess
import sys

from tests.harness import require_root

CHILD = r"""
import ctypes, resource, sys
from cntrace import cli
from cntrace.sources.libnftables import library
from cntrace.sources.netlink import dumps, proto

soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (1024, hard))  # the usual soft limit
cli._more_descriptors()
assert ctypes.CDLL("libc.so.6", use_errno=True).unshare(0x40000000) == 0  # CLONE_NEWNET
socks = [dumps.netlink_socket(proto.NETLINK_ROUTE) for _ in range(1100)]
low = sum(1 for s in socks if s.fileno() < dumps.HIGH_FD)
lib = library()
assert lib is not None, "no libnftables"
done = lib.run("add table ip cntrace_fdtest", "add chain ip cntrace_fdtest c")
assert all(rc == 0 for rc, _out, _err in done), done
print(low, min(s.fileno() for s in socks))
"""


def test_libnftables_commits_while_a_thousand_namespace_sockets_are_open() -> None:
    require_root()
    done = subprocess.run(
        [sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr[-400:]
    low, lowest = (int(x) for x in done.stdout.split())
    assert low == 0 and lowest >= 1024  # cntrace's own sockets never take a select()able slot
