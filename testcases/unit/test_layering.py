"""Imports point one way: each layer of harness/ imports only the layers listed before it.

A reader finds each layer by its folder name; this test keeps the folders honest.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "harness"
# Order matters: a layer may import itself and anything to its left.
LAYERS = ["procs", "sip", "profile", "rtp", "net", "agents", "flows", "capture", "peers", "verify", "report", "stats",
          "session", "sut_run", "load", "robustness", "cli"]
# flows/*/steps.py is pure data that verify reads; verify must not reach the choreography.
SANS_IO_FORBIDDEN = {"asyncio", "socket", "time", "subprocess", "threading", "selectors"}


def _layer_of(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "harness" or len(parts) < 2:
        return None
    return parts[1]


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append(node.module)
    return found


def _sources(layer: str) -> list[Path]:
    folder = PACKAGE / layer
    return sorted(folder.rglob("*.py")) if folder.is_dir() else [PACKAGE / f"{layer}.py"]


@pytest.mark.parametrize("layer", LAYERS)
def test_layer_imports_only_lower_layers(layer: str) -> None:
    allowed = set(LAYERS[: LAYERS.index(layer) + 1])
    bad = []
    for path in _sources(layer):
        if not path.exists():
            continue
        for module in _imports(path):
            target = _layer_of(module)
            if target is not None and target in LAYERS and target not in allowed:
                bad.append(f"{path.relative_to(PACKAGE)} imports {module}")
    assert not bad, "upward imports:\n" + "\n".join(bad)


def test_sip_core_is_sans_io() -> None:
    bad = [f"{path.relative_to(PACKAGE)} imports {module}"
           for path in _sources("sip") for module in _imports(path)
           if module.split(".")[0] in SANS_IO_FORBIDDEN]
    assert not bad, "the codec and core must not do I/O:\n" + "\n".join(bad)


def test_verifier_reads_only_the_step_tables_of_flows() -> None:
    """verify/ may read flows/*/steps.py (data) but never the choreography or the agents."""
    bad = [f"{path.relative_to(PACKAGE)} imports {module}"
           for path in _sources("verify") for module in _imports(path)
           if module.startswith(("harness.agents", "harness.net", "harness.rtp.stream"))
           or (module.startswith("harness.flows.") and not module.endswith((".steps", ".step")))]
    assert not bad, "\n".join(bad)
