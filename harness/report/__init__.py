"""report layer (see docs/interfaces.md): verdict table, JSON, ladder (text and HTML), run report."""

from harness.report.html import render_ladder_html, render_report_html, write_run_report
from harness.report.json import render_json
from harness.report.ladder import render_ladder
from harness.report.table import render_capture, render_table, step_reason

__all__ = ["render_capture", "render_json", "render_ladder", "render_ladder_html", "render_report_html",
           "render_table", "step_reason", "write_run_report"]
