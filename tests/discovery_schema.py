"""Validate discovery documents against the published JSON Schema (docs/schemas/)."""

from __future__ import annotations

import json
from functools import cache
from typing import Any

import jsonschema
from harness import REPO

SCHEMA_PATH = REPO / "docs" / "schemas" / "discovery-v1.schema.json"


@cache
def _validator() -> jsonschema.Draft202012Validator:
    schema = json.loads(SCHEMA_PATH.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def validate(doc: Any) -> None:
    """Raise jsonschema.ValidationError (with the failing path) when ``doc`` does not conform."""
    errors = sorted(_validator().iter_errors(doc), key=lambda e: list(e.path))
    if errors:
        e = errors[0]
        raise AssertionError(f"{'/'.join(map(str, e.path))}: {e.message}")
