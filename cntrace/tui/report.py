"""The console's bug report (`e`): the path on screen with the snapshot it came from, as one
``cntrace.report/v1`` document built by cntrace.report, the same builder as `cntrace report`.

``path`` is the ``cntrace.path/v2`` answer as shown (predicted or live), ``prediction`` the
prediction a live path started from, ``snapshot`` the whole Snapshot, ``replay`` the command that
recomputes the prediction anywhere (``cntrace path --snapshot REPORT ...``: the recorded reader
accepts a report). This module only names the file and says where the snapshot came from.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import re
from typing import Any

from cntrace import __version__, report
from cntrace.model import Path, Snapshot
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
    asked = {"source": query.source, "destination": query.destination, "proto": query.proto}
    doc = report.build(
        snapshot,
        path,
        query=asked,
        command=["cntrace", "tui"],
        environment={
            "cntrace": __version__,
            "python": platform.python_version(),
            "snapshot_file": not origin.startswith("live"),
        },
        created_at=created_at or datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        tool_version=__version__,
        prediction=prediction,
    )
    return report.name_file({**doc, "origin": origin}, file_name)


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
    while os.path.lexists(target):
        n += 1
        target = os.path.join(directory, base.replace(".json", f"-{n}.json"))
    doc = build_report(
        path, snapshot, query, origin=origin, file_name=target, prediction=prediction
    )
    # the careful writer: atomic for a regular file, never replaces a device, FIFO or symlink
    write_text(target, json.dumps(doc, indent=1) + "\n")
    return target
