"""The console's bug report: the path on screen together with the snapshot it came from.

One self-contained JSON file (``cntrace.report/v1``) so nothing can get separated in a ticket:
``path`` is the ``cntrace.path/v2`` document as shown (predicted or live), ``prediction`` the
prediction it started from when ``path`` is live, ``snapshot`` the whole ``cntrace.snapshot/v1``
Snapshot, and ``replay`` the command that recomputes the prediction anywhere
(``cntrace path --snapshot REPORT ...``: the recorded reader accepts a report).
"""

from __future__ import annotations

import datetime
import json
import os
import re
import shlex
from typing import Any

from cntrace import __version__, codec
from cntrace.model import REPORT_SCHEMA, Path, Snapshot
from cntrace.render.path import to_document
from cntrace.sources.recorded import write_text
from cntrace.tui.query import PathQuery

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def build_report(
    path: Path,
    snapshot: Snapshot,
    query: PathQuery,
    *,
    origin: str,
    created_at: str | None = None,
    file_name: str = "REPORT",
    prediction: Path | None = None,
) -> dict[str, Any]:
    """The report document; ``origin`` says where the snapshot came from (live or a file)."""
    argv = query.argv(file_name)
    doc: dict[str, Any] = {
        "schema": REPORT_SCHEMA,
        "created_at": created_at
        or datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "tool_version": __version__,
        "origin": origin,
        "query": {"source": query.source, "destination": query.destination, "proto": query.proto},
        "replay": {"argv": argv, "command": shlex.join(argv)},
        "path": to_document(path),
    }
    if prediction is not None and path.mode != "predicted":
        doc["prediction"] = to_document(prediction)
    doc["snapshot"] = codec.to_plain(snapshot)
    return doc


def report_name(query: PathQuery, when: datetime.datetime | None = None) -> str:
    """``cntrace-report-<src>-to-<dest>-<UTC time>.json``, safe as a file name."""
    stamp = (when or datetime.datetime.now(datetime.UTC)).strftime("%Y%m%d-%H%M%S")
    src = _UNSAFE.sub("_", query.source)[:40]
    dst = _UNSAFE.sub("_", query.destination)[:40]
    return f"cntrace-report-{src}-to-{dst}-{stamp}.json"


def write_report(
    path: Path,
    snapshot: Snapshot,
    query: PathQuery,
    *,
    directory: str,
    origin: str,
    prediction: Path | None = None,
) -> str:
    """Write the report into ``directory`` under a fresh name and return that file's path."""
    base = report_name(query)
    target = os.path.join(directory, base)
    n = 1
    while os.path.exists(target):
        n += 1
        target = os.path.join(directory, base.replace(".json", f"-{n}.json"))
    doc = build_report(
        path, snapshot, query, origin=origin, file_name=target, prediction=prediction
    )
    # the careful writer: atomic for a regular file, never replaces a device, FIFO or symlink
    write_text(target, json.dumps(doc, indent=1) + "\n")
    return target
