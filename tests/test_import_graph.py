"""The package's modules depend on each other one way: no import cycle, counting imports under
``TYPE_CHECKING`` and inside functions (a hidden cycle still ties two modules together)."""

from __future__ import annotations

import ast
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

import orderwatch

PACKAGE = Path(orderwatch.__file__).parent


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def test_the_package_has_no_import_cycle() -> None:
    modules = {
        "orderwatch" if p.stem == "__init__" else f"orderwatch.{p.stem}": p
        for p in PACKAGE.glob("*.py")
    }
    graph = {name: _imports(path) & set(modules) - {name} for name, path in modules.items()}
    try:
        tuple(TopologicalSorter(graph).static_order())
    except CycleError as error:
        raise AssertionError(f"import cycle: {' -> '.join(error.args[1])}") from None
