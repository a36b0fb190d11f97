"""cntrace's own netlink client, in three parts.

- ``proto``: the protocol (named message types and attribute numbers, framing), shared with
  trace/tcnl and trace/nftlib;
- ``dumps``: sockets made inside each namespace and one dump request sent to many at once;
- ``decode``: those dumps decoded straight into the model's values.
"""

from cntrace.sources.netlink.proto import NetlinkError

__all__ = ["NetlinkError"]
