"""The package's modules depend on each other one way: no import cycle, counting imports under
``TYPE_CHECKING`` and inside functions (a hidden cycle still ties two modules together)."""

from __future__ import annotations

import ast
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

import orderwatch

PACKAGE = Path(orderwatch.__file__).parent


def _name(path: Path) -> str:
    """``orderwatch._x`` for ``_x.py``, ``orderwatch._p`` for ``_p/__init__.py``, and
    ``orderwatch._p._y`` for a module of a subpackage."""
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, name: str) -> set[str]:
    found: set[str] = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:  # relative: from the module's package upwards
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                module = f"{base}.{module}" if module else base
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


def modules() -> dict[str, Path]:
    return {_name(path): path for path in PACKAGE.rglob("*.py")}


def test_the_graph_covers_subpackages() -> None:
    assert {"orderwatch._store", "orderwatch._store._sqlite", "orderwatch._poller"} <= set(
        modules()
    )


def test_the_package_has_no_import_cycle() -> None:
    found = modules()
    graph = {name: _imports(path, name) & set(found) - {name} for name, path in found.items()}
    try:
        tuple(TopologicalSorter(graph).static_order())
    except CycleError as error:
        raise AssertionError(f"import cycle: {' -> '.join(error.args[1])}") from None
