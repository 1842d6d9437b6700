"""The verdict as JSON text (the schema is FlowResult.to_json: flow, verdict, steps[checks])."""

from __future__ import annotations

import json as _json

from harness.verify.verdict import FlowResult


def render_json(result: FlowResult, indent: int | None = 2) -> str:
    return _json.dumps(result.to_json(), indent=indent, ensure_ascii=False) + "\n"
