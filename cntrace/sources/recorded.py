"""Snapshots on disk: ``cntrace snapshot --save FILE`` writes one, ``--snapshot FILE`` reads it.

``--snapshot`` also reads a ``cntrace.report/v1`` bug report (its embedded snapshot).

A recorded Snapshot is the whole Snapshot as JSON (cntrace.codec), so a bug report carries exactly
what the host looked like. The schema string is checked first, so a file from another tool or a
future incompatible version fails with one clear line instead of a decoding error deep inside.
"""

from __future__ import annotations

import gc
import json
import os
import sys
import tempfile

from cntrace import codec
from cntrace.errors import BadInput
from cntrace.model import REPORT_SCHEMA, SNAPSHOT_SCHEMA, Snapshot

SCHEMA_FAMILY = SNAPSHOT_SCHEMA.rsplit("/", 1)[0]  # cntrace.snapshot


def save(snapshot: Snapshot, path: str) -> None:
    """Write atomically (``-`` is stdout): a killed save never leaves half a file."""
    text = codec.dumps(snapshot, indent=None, compact=True)
    if path == "-":
        sys.stdout.write(text + "\n")
        return
    directory = os.path.dirname(os.path.abspath(path))
    try:
        fd, tmp = tempfile.mkstemp(prefix=".cntrace-snapshot-", dir=directory)
    except OSError as exc:
        raise BadInput(f"cannot write {path}: {exc.strerror}") from exc
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.write("\n")
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # like open(): mkstemp's 0600 would surprise
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def loads(text: str, origin: str = "snapshot") -> Snapshot:
    # A large snapshot is ~100k small objects: the cyclic GC would run dozens of full passes
    # over them while they are built (it halves load time to hold it off; none are cycles).
    gc_was_on = gc.isenabled()
    gc.disable()
    try:
        return _loads(text, origin)
    finally:
        if gc_was_on:
            gc.enable()


def _loads(text: str, origin: str) -> Snapshot:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadInput(f"{origin}: not a cntrace snapshot (invalid JSON: {exc.msg})") from None
    if not isinstance(data, dict) or "schema" not in data:
        raise BadInput(f"{origin}: not a cntrace snapshot (no schema field)")
    schema = str(data["schema"])
    if schema == REPORT_SCHEMA:
        # A bug report (`e` in `cntrace tui`) embeds its snapshot, so it replays directly.
        data = data.get("snapshot")
        if not isinstance(data, dict) or "schema" not in data:
            raise BadInput(f"{origin}: a cntrace report without a snapshot")
        schema = str(data["schema"])
    if schema != SNAPSHOT_SCHEMA:
        if schema.startswith(SCHEMA_FAMILY + "/"):
            raise BadInput(
                f"{origin}: snapshot schema {schema} is not supported by this cntrace "
                f"(it reads {SNAPSHOT_SCHEMA})"
            )
        raise BadInput(f"{origin}: not a cntrace snapshot (schema {schema!r})")
    try:
        return codec.from_plain(Snapshot, data)
    except (codec.CodecError, TypeError, ValueError) as exc:
        raise BadInput(f"{origin}: damaged snapshot: {exc}") from None


def load(path: str) -> Snapshot:
    """Read a saved Snapshot (``-`` is stdin)."""
    if path == "-":
        return loads(sys.stdin.read(), "stdin")
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        raise BadInput(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInput(f"{path}: cannot read: {exc}") from None
    return loads(text, path)
