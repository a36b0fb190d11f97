"""Every ``--json`` document against its published JSON Schema (docs/schemas/), by ``schema``."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema

SCHEMAS = Path(__file__).resolve().parents[2] / "docs" / "schemas"
BY_NAME = {
    "cntrace.discovery/v1": "discovery-v1.schema.json",
    "cntrace.path/v2": "path.schema.json",
    "cntrace.rules/v1": "rules.schema.json",
    "cntrace.rules.walk/v2": "rules-walk.schema.json",
    "cntrace.lab-status/v1": "lab-status.schema.json",
    "cntrace.whatif/v1": "whatif.schema.json",
}


@cache
def validator(filename: str) -> jsonschema.Draft202012Validator:
    schema = json.loads((SCHEMAS / filename).read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def validate(doc: Any) -> None:
    """AssertionError naming the first failing path when ``doc`` breaks its schema."""
    assert isinstance(doc, dict) and doc.get("schema") in BY_NAME, f"no schema: {str(doc)[:80]}"
    errors = sorted(validator(BY_NAME[doc["schema"]]).iter_errors(doc), key=lambda e: list(e.path))
    if errors:
        e = errors[0]
        raise AssertionError(f"{doc['schema']} {'/'.join(map(str, e.path))}: {e.message[:300]}")
