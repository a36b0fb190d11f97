"""Path prediction: one packet's way through the kernel state of a Snapshot."""

from cntrace.path.predict import predict

__all__ = ["predict"]
