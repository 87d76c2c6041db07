"""The map from modules to tests in tests/README.md is complete and true."""

from __future__ import annotations

import re
from pathlib import Path

TESTS = Path(__file__).parent
PACKAGE = TESTS.parent / "daemon" / "orderwatch"


def table() -> dict[str, list[str]]:
    rows = re.findall(
        r"^\| `([\w.]+)` \| (.+) \|$", (TESTS / "README.md").read_text(), re.MULTILINE
    )
    return {module: re.findall(r"test_\w+\.py", files) for module, files in rows}


def package_modules() -> set[str]:
    """Every module of the package: ``_x`` for ``_x.py`` or a package ``_x/``, and
    ``_x._y`` for each module of a package."""
    found = {path.stem for path in PACKAGE.glob("*.py")}
    for init in PACKAGE.glob("*/__init__.py"):
        package = init.parent.name
        found.add(package)
        found.update(f"{package}.{path.stem}" for path in init.parent.glob("*.py") if path != init)
    return found


def uses(test_file: str, module: str) -> bool:
    text = (TESTS / test_file).read_text()
    if module == "__init__":
        return "from orderwatch import" in text or "import orderwatch\n" in text
    if module == "__main__":
        return '"-m", "orderwatch"' in text or "run_cli(" in text or "Daemon" in text
    if "." in module:
        # A package's module is used directly, or through what its package exports.
        return f"orderwatch.{module}" in text or f"orderwatch.{module.partition('.')[0]}" in text
    return f"orderwatch.{module}" in text or f"from orderwatch import {module}" in text


def test_every_module_has_a_row_and_its_own_test_file_comes_first() -> None:
    rows = table()
    assert set(rows) == package_modules()
    for module, files in rows.items():
        own = f"test_{module.strip('_')}.py"
        if (TESTS / own).exists():
            assert files[0] == own, module


def test_every_listed_file_exists_and_one_of_them_imports_the_module() -> None:
    for module, files in table().items():
        assert files, module
        for name in files:
            assert (TESTS / name).exists(), f"{module}: {name}"
        assert any(uses(name, module) for name in files), module
