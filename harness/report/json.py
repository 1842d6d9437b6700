"""The verdict as JSON text: FlowResult.to_json (flow, verdict, steps[checks], ...) for one instance;
for several, {"instances": [...], "summary": {...}} with one compact instance per line (a load
capture's report is tens of megabytes, and indenting it would triple the time to print it)."""

from __future__ import annotations

import json as _json

from harness.verify.verdict import CaptureResult, FlowResult


def render_json(result: FlowResult | CaptureResult, indent: int | None = 2) -> str:
    if isinstance(result, FlowResult):
        return _json.dumps(result.to_json(), indent=indent, ensure_ascii=False) + "\n"
    lines = ",\n".join(r.json_text() for r in result.instances)
    summary = _json.dumps(result.summary(), indent=indent, ensure_ascii=False)
    return f'{{"instances": [\n{lines}\n],\n"summary": {summary}}}\n'
