"""Rows of the benchmark table: what, measured, budget, pass or MISS; as text or JSON."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Row:
    key: str  # stable identifier, for --json readers and the smoke test
    what: str
    value: float | None  # the figure compared with the budget (None: could not be measured)
    unit: str
    measured: str  # the figure as the table shows it, with its spread
    budget: float | None = None  # value must be at most this; None: shown for information
    detail: dict[str, Any] = field(default_factory=dict)
    beyond_range: bool = False  # measured, but past the largest figure the suite tries

    @property
    def status(self) -> str:
        if self.beyond_range:
            return "MISS" if self.budget is not None else "-"
        if self.value is None or math.isnan(self.value):
            return "ERROR"
        if self.budget is None:
            return "-"
        return "pass" if self.value <= self.budget else "MISS"

    def budget_text(self) -> str:
        if self.budget is None:
            return "-"
        return f"<= {self.budget:g} {self.unit}"


def failed(key: str, what: str, unit: str, reason: str, budget: float | None = None) -> Row:
    """A row that could not be measured: the table shows the reason's last line, JSON all of it."""
    lines = [line.strip() for line in reason.strip().splitlines() if line.strip()]
    short = lines[-1] if lines else "unknown reason"
    return Row(key, what, None, unit, f"not measured: {short[:160]}", budget, {"error": reason})


def render(rows: Sequence[Row]) -> str:
    header = ("what", "measured", "budget", "status")
    cells = [header] + [(r.what, r.measured, r.budget_text(), r.status) for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(3)]
    lines = []
    for n, cell in enumerate(cells):
        lines.append(
            "| " + " | ".join(cell[i].ljust(widths[i]) for i in range(3)) + f" | {cell[3]} |"
        )
        if n == 0:
            lines.append("| " + " | ".join("-" * w for w in widths) + " | --- |")
    return "\n".join(lines)


def as_json(rows: Sequence[Row]) -> list[dict[str, Any]]:
    return [
        {
            "key": r.key,
            "what": r.what,
            "value": r.value,
            "unit": r.unit,
            "measured": r.measured,
            "budget": r.budget,
            "status": r.status,
            "detail": r.detail,
        }
        for r in rows
    ]
