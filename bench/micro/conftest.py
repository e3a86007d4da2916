"""Settings shared by the micro-benchmarks.

Every benchmark warms up first (the first calls fill caches and let the
interpreter specialise its bytecode) and runs enough rounds for a stable
median; the medians are what we compare with the budget in docs/design.md. Speed
is never asserted: the machines are shared and noisy.
"""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "benchmark" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.benchmark(warmup=True, warmup_iterations=2000, min_rounds=2000))
