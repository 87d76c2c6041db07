"""The public surface is what ``__all__`` says, and every name in it exists."""

from __future__ import annotations

import importlib
import importlib.metadata
import pkgutil

import orderwatch


def test_every_name_in_all_is_exported() -> None:
    for name in orderwatch.__all__:
        assert hasattr(orderwatch, name), name


def test_public_names_are_exactly_all() -> None:
    modules = {"annotations"}  # the __future__ import, not an export
    public = {n for n in vars(orderwatch) if not n.startswith("_")} - modules
    assert public == set(orderwatch.__all__) - {"__version__"}


def test_every_private_module_declares_what_it_exports() -> None:
    for info in pkgutil.iter_modules(orderwatch.__path__):
        if info.name == "__main__":
            continue
        module = importlib.import_module(f"orderwatch.{info.name}")
        assert hasattr(module, "__all__"), info.name
        for name in module.__all__:
            assert hasattr(module, name), f"{info.name}.{name}"


def test_the_version_has_one_source_that_packaging_reads() -> None:
    assert importlib.metadata.version("orderwatch") == orderwatch.__version__
