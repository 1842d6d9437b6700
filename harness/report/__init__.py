"""report layer (see docs/interfaces.md): verdict table, JSON, ladder."""

from harness.report.json import render_json
from harness.report.ladder import render_ladder
from harness.report.table import render_capture, render_table, step_reason

__all__ = ["render_capture", "render_json", "render_ladder", "render_table", "step_reason"]
