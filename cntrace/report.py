"""The incident report document (``cntrace.report/v1``, docs/schemas/report.schema.json): one file
holding what is needed to understand and replay an incident anywhere.

``path`` is the answer as shown (predicted, or live with its sightings, drops and loss counters in
``stats`` and ``notes``), ``prediction`` the prediction a live answer started from, ``snapshot`` the
evidence (the whole Snapshot; `cntrace path --snapshot REPORT ...` replays it), ``pcapng`` the
probe's packets (base64), ``environment`` cntrace's and the kernel's versions and features, and
``command`` the command line that made it. Pure: the command gathers, this assembles; redacting a
report rewrites this document and its snapshot together (cntrace.redact).
"""

from __future__ import annotations

import base64
import shlex
from typing import Any

from cntrace import codec
from cntrace.model import REPORT_SCHEMA, Path, Snapshot

REPORT_FILE = "@REPORT@"  # stands for the report's own file name in `replay` until it is known


def replay_argv(query: dict[str, Any], file_name: str = REPORT_FILE) -> list[str]:
    argv = ["cntrace", "path", "--snapshot", file_name, query["source"], query["destination"]]
    for opt in ("proto", "port", "size"):
        if query.get(opt) is not None:
            argv += [f"--{opt}", str(query[opt])]
    return argv


def build(
    snapshot: Snapshot,
    path: Path,
    *,
    query: dict[str, Any],
    command: list[str],
    environment: dict[str, Any],
    created_at: str,
    tool_version: str,
    prediction: Path | None = None,
    pcapng: bytes | None = None,
) -> dict[str, Any]:
    """The report document, its snapshot included."""
    argv = replay_argv(query)
    doc: dict[str, Any] = {
        "schema": REPORT_SCHEMA,
        "created_at": created_at,
        "tool_version": tool_version,
        "origin": "live host" if not environment.get("snapshot_file") else "snapshot file",
        "command": command,
        "environment": environment,
        "query": query,
        "replay": {"argv": argv, "command": shlex.join(argv)},
        "path": codec.to_plain(path),
    }
    if prediction is not None and path.mode != "predicted":
        doc["prediction"] = codec.to_plain(prediction)
    if pcapng is not None:
        doc["pcapng"] = {"encoding": "base64", "data": base64.b64encode(pcapng).decode()}
    doc["redacted"] = False
    doc["snapshot"] = codec.to_plain(snapshot, compact=True)
    return doc


def name_file(doc: dict[str, Any], file_name: str) -> dict[str, Any]:
    """The document with its replay command naming ``file_name``."""
    argv = [file_name if a == REPORT_FILE else a for a in doc["replay"]["argv"]]
    return {**doc, "replay": {"argv": argv, "command": shlex.join(argv)}}
