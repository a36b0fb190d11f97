"""`--snapshot` accepts a cntrace.report/v1 bug report and replays its embedded snapshot."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cntrace import codec
from cntrace.errors import BadInput
from cntrace.model import REPORT_SCHEMA
from cntrace.sources import recorded

LAB = Path(__file__).resolve().parents[2] / "fixtures" / "snapshots" / "lab"


def test_report_embeds_a_loadable_snapshot(tmp_path: Path) -> None:
    snap = recorded.load(str(LAB / "healthy.json"))
    report = tmp_path / "report.json"
    report.write_text(
        json.dumps({"schema": REPORT_SCHEMA, "path": {}, "snapshot": codec.to_plain(snap)})
    )
    assert recorded.load(str(report)) == snap


def test_report_without_snapshot_is_one_line_error(tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    report.write_text(json.dumps({"schema": REPORT_SCHEMA, "path": {}}))
    with pytest.raises(BadInput, match="report without a snapshot"):
        recorded.load(str(report))
