"""Median and p99 of a series, the two figures every row of the table shows."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def p99(values: Sequence[float]) -> float:
    """Nearest rank: with fewer than 100 values this is the largest but one in 100, i.e. the max."""
    ordered = sorted(values)
    return float(ordered[max(0, math.ceil(0.99 * len(ordered)) - 1)])


def describe(values: Sequence[float], unit: str, digits: int = 1) -> str:
    return (
        f"median {median(values):.{digits}f} {unit}, p99 {p99(values):.{digits}f} (n={len(values)})"
    )
