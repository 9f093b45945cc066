"""What every suite shares: its settings, the layer under test, and readers of the platform's
records and the monitor's documents."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

FUNCTIONS = Path(__file__).resolve().parent / "functions"
FULL_CPU_MB = 1769  # one vCPU (SPEC 8): the sandbox gives memory/1769 of one CPU
SMALL_MB = 128
MIB = 1024 * 1024


@dataclass(frozen=True)
class Settings:
    runs: int  # fresh environments per variant, for what only a cold start shows
    environments: int  # environments per steady-state series
    invocations: int  # invocations per environment in a steady-state series
    repeats: int  # invocations per transient-file lifetime
    seed: int


DEFAULT = Settings(runs=10, environments=2, invocations=30, repeats=5, seed=8)
QUICK = Settings(runs=1, environments=1, invocations=2, repeats=1, seed=8)


@dataclass(frozen=True)
class Context:
    settings: Settings
    layer_zip: Path  # dist/tmp-monitor-x86_64.zip
    dist: Path
    work: Path  # scratch folder for derived layers


def share(memory_mb: int) -> float:
    """The CPUs the sandbox gives a function of this size (at most the one Lambda gives)."""
    return min(1.0, memory_mb / FULL_CPU_MB)


def metric(report: dict[str, Any], name: str) -> float | None:
    value = (report.get("metrics") or {}).get(name)
    return None if value is None else float(value)


def span_ms(report: dict[str, Any], name: str) -> float | None:
    for span in report.get("spans") or ():
        if span.get("name") == name:
            return float(span["durationMs"])
    return None


def number(doc: dict[str, Any], name: str) -> float | None:
    """A figure of an EMF document: a plain property, or a metric (Powertools writes a metric's
    values as a list, one value per document here)."""
    value = doc.get(name)
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
