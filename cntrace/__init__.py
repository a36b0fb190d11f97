"""cntrace: network diagnostics and packet tracing for Linux containers."""

__version__ = "0.1.0"
