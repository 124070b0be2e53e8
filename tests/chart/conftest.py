"""Fixtures of the chart tests; helpers live in kftune_chart.py."""

from __future__ import annotations

from typing import Any

import pytest
from kftune_chart import VALUE_SETS, render_docs


@pytest.fixture(scope="session")
def rendered_sets() -> dict[str, list[dict[str, Any]]]:
    return {name: render_docs(values) for name, values in VALUE_SETS.items()}
