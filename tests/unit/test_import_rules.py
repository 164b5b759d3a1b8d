"""Import rules a contract file cannot say: agent/protocol.py, shared by both daemons and any other client
of the topics, needs only the standard library and pydantic; the state machines need nothing of the
project but themselves."""

from __future__ import annotations

import ast
import importlib.util
import sys
from pathlib import Path

import pytest


def source_of(module: str) -> Path:
    spec = importlib.util.find_spec(module)
    assert spec is not None and spec.origin is not None
    return Path(spec.origin)


def imported(path: Path) -> set[str]:
    """Every module an import statement of the file names (relative imports as '.name')."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            names.add("." * node.level + (node.module or ""))
    return names


def test_protocol_imports_only_the_standard_library_and_pydantic() -> None:
    names = imported(source_of("obstop.agent.protocol"))
    assert names, "no imports found: wrong file?"
    outside = {
        n
        for n in names
        if n.split(".")[0] not in sys.stdlib_module_names
        and n.split(".")[0] not in ("__future__", "pydantic")
    }
    assert outside == set()


STATES = sorted(source_of("obstop.controller.states").parent.glob("*.py"))


@pytest.mark.parametrize("path", STATES, ids=lambda p: p.name)
def test_state_machines_import_only_the_standard_library_and_each_other(path: Path) -> None:
    for n in imported(path):
        top = n.split(".")[0]
        assert (
            top in sys.stdlib_module_names or top == "__future__" or n.startswith("obstop.controller.states.")
        ), f"{path.name} imports {n}"
