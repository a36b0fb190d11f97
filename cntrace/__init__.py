"""cntrace: network diagnostics and packet tracing for Linux containers."""

__version__ = "0.1.0"

from cntrace import dccache as _dccache  # before any module declares a dataclass

_dccache.install()
