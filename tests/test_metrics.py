"""The metric names are a contract: every metric registered is named where readers look for it.

Scrapes, health and the dashboard are tested against a running daemon in test_operations.py.
"""

from __future__ import annotations

import re
from pathlib import Path

from orderwatch import _metrics
from orderwatch._metrics import Metrics

ROOT = Path(__file__).parent.parent


def registered() -> set[str]:
    """Every metric family the daemon registers, as it is scraped (counters with ``_total``)."""
    return {
        f"{family.name}_total" if family.type == "counter" else family.name
        for family in Metrics().registry.collect()
    }


def test_the_module_docstring_names_every_metric_and_no_other() -> None:
    assert _metrics.__doc__ is not None
    named = set(re.findall(r"``(orderwatch_\w+)", _metrics.__doc__))
    assert named == registered()


def test_the_operations_guide_has_a_row_for_every_metric_and_no_other() -> None:
    guide = (ROOT / "docs" / "operations.md").read_text()
    rows = set(re.findall(r"^\| `(orderwatch_\w+)`", guide, re.MULTILINE))
    assert rows == registered()
