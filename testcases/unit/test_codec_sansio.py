"""The codec and the sans-IO core stay free of I/O and clocks (project practice 1)."""

import ast
from pathlib import Path

import pytest

import harness.sip

FORBIDDEN = {"asyncio", "socket", "time", "subprocess"}
SIP_DIR = Path(harness.sip.__file__).parent
MODULES = sorted(SIP_DIR.rglob("*.py"))


def imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
        elif isinstance(node, ast.Call) and getattr(node.func, "id", None) == "__import__":
            roots |= {arg.value.split(".")[0] for arg in node.args if isinstance(arg, ast.Constant)}
    return roots


def test_modules_found() -> None:
    assert {p.name for p in MODULES} >= {"message.py", "headers.py", "errors.py", "ids.py"}


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_no_io_or_clock_imports(path: Path) -> None:
    assert not imported_roots(path) & FORBIDDEN
