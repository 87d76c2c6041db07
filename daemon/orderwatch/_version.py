"""orderwatch's version, written here only: pyproject.toml reads it from this file."""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"
