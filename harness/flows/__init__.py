"""Flows: each is a package with `steps.FLOW` (data) and `play.run_flow` (choreography).

Adding a flow is adding a package and one line in FLOWS.
"""

from __future__ import annotations

import importlib
from types import SimpleNamespace

FLOWS: dict[str, str] = {"a2.1": "harness.flows.a2_1"}


def _normalise(flow_id: str) -> str:
    """'A.2.1', 'a2.1', 'a2_1' all name the same flow."""
    return "".join(ch for ch in flow_id.lower() if ch.isalnum())


def load_flow(flow_id: str) -> SimpleNamespace:
    """Return the flow's FLOW table and (lazily) its run_flow; KeyError names the known flows."""
    wanted = _normalise(flow_id)
    key = next((known for known in FLOWS if _normalise(known) == wanted), None)
    if key is None:
        raise KeyError(f"unknown flow {flow_id!r}; known flows: {', '.join(sorted(FLOWS))}")
    base = FLOWS[key]
    steps = importlib.import_module(base + ".steps")

    def run_flow(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202 - imported lazily: verify needs no agents
        return importlib.import_module(base + ".play").run_flow(*args, **kwargs)

    return SimpleNamespace(id=key, FLOW=steps.FLOW, run_flow=run_flow)
