"""Load mode: many A.2.1 instances against one reference network, one capture, per-instance verdicts.

Imported lazily: `python -m harness` loads only the command-line part until `load` runs.
"""

from __future__ import annotations

from typing import Any

__all__ = ["LoadOutcome", "run_load"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from harness.load import session

        return getattr(session, name)
    raise AttributeError(name)
