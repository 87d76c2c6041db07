"""The public surface is what ``__all__`` says, every name in it exists, and a private module
exports only what another module (or a test) uses."""

from __future__ import annotations

import ast
import importlib
import importlib.metadata
import pkgutil
from collections import defaultdict
from pathlib import Path

import orderwatch


def test_every_name_in_all_is_exported() -> None:
    for name in orderwatch.__all__:
        assert hasattr(orderwatch, name), name


def test_public_names_are_exactly_all() -> None:
    modules = {"annotations"}  # the __future__ import, not an export
    public = {n for n in vars(orderwatch) if not n.startswith("_")} - modules
    assert public == set(orderwatch.__all__) - {"__version__"}


def _private_modules() -> list[str]:
    """Every module of the package, those of its subpackages (``_store``) included."""
    return [
        info.name
        for info in pkgutil.walk_packages(orderwatch.__path__, "orderwatch.")
        if info.name != "orderwatch.__main__"
    ]


def test_every_private_module_declares_what_it_exports() -> None:
    assert "orderwatch._store._sqlite" in _private_modules()
    for name in _private_modules():
        module = importlib.import_module(name)
        assert hasattr(module, "__all__"), name
        for exported in module.__all__:
            assert hasattr(module, exported), f"{name}.{exported}"


def test_the_version_has_one_source_that_packaging_reads() -> None:
    from orderwatch._version import __version__

    assert importlib.metadata.version("orderwatch") == orderwatch.__version__ == __version__


def _uses_by_file() -> dict[Path, set[str]]:
    """``module.name`` for every name each file of the package, tests and benchmarks imports
    from an orderwatch module, or reads as an attribute of one it imported."""
    root = Path(orderwatch.__file__).parents[2]
    found: dict[Path, set[str]] = defaultdict(set)
    for path in [*root.glob("daemon/orderwatch/**/*.py"), *root.glob("*/*.py")]:
        aliases: dict[str, str] = {}
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("orderwatch"):
                for alias in node.names:
                    found[path].add(f"{node.module}.{alias.name}")
                    aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id in aliases
            ):
                found[path].add(f"{aliases[node.value.id]}.{node.attr}")
    return found


def test_every_exported_name_is_used_outside_its_module() -> None:
    uses = _uses_by_file()
    unused = []
    for name in _private_modules():
        module = importlib.import_module(name)
        own = Path(module.__file__ or "")
        elsewhere = set().union(*(names for path, names in uses.items() if path != own))
        unused += [f"{name}.{n}" for n in module.__all__ if f"{name}.{n}" not in elsewhere]
    assert unused == [], "exported but used only inside their module"
