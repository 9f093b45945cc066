"""EMF validation for tests: the published JSON schema (Draft 7) plus what the schema omits.

The schema (tests/data/emf-schema.json) lets through 150 metric definitions, a 150-value array,
StorageResolution 5, missing target members and oversized events; CloudWatch rejects them.
So `problems` also enforces (reference/emf-and-powertools.md, section 2):
at most 100 metric definitions per directive and 100 values per metric, resolution 1 or 60,
every referenced metric present at the root as a number or array of numbers, every referenced
dimension present at the root as a string of at most 1,024 characters, the event size, and the
time stamp window (14 days back, 2 hours ahead).
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import jsonschema

SCHEMA = json.loads((Path(__file__).parent / "data" / "emf-schema.json").read_text())
_VALIDATOR = jsonschema.Draft7Validator(SCHEMA)
MAX_EVENT_BYTES = 256 * 1024  # CloudWatch Logs' event limit (the EMF page now says 1 MB)
MAX_METRICS = 100
MAX_VALUES = 100
MAX_DIMENSION_VALUE = 1024
PAST_MS = 14 * 24 * 3600 * 1000
FUTURE_MS = 2 * 3600 * 1000


def _is_number(value: object) -> bool:
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(float(value))
    )


def problems(line: str, now_ms: int | None = None) -> list[str]:
    """Everything wrong with one log line as an EMF document; empty when it is valid."""
    if len(line.encode()) > MAX_EVENT_BYTES:
        return [f"event of {len(line.encode())} bytes, over {MAX_EVENT_BYTES}"]
    try:
        doc = json.loads(line)
    except json.JSONDecodeError as exc:
        return [f"not one JSON document: {exc}"]
    if not isinstance(doc, dict):
        return ["not a JSON object"]
    found = [f"schema: {e.message} at {list(e.absolute_path)}" for e in _VALIDATOR.iter_errors(doc)]
    if found:
        return found
    aws = doc["_aws"]
    now = int(time.time() * 1000) if now_ms is None else now_ms
    ts = aws["Timestamp"]
    if not now - PAST_MS <= ts <= now + FUTURE_MS:
        found.append(f"Timestamp {ts} outside [now - 14 d, now + 2 h]")
    for directive in aws["CloudWatchMetrics"]:
        metrics = directive["Metrics"]
        if len(metrics) > MAX_METRICS:
            found.append(f"{len(metrics)} metric definitions, over {MAX_METRICS}")
        names = [m["Name"] for m in metrics]
        if len(set(names)) != len(names):
            found.append(f"a metric defined twice: {names}")
        for metric in metrics:
            found += _metric_problems(doc, metric)
        for dimension_set in directive["Dimensions"]:
            for name in dimension_set:
                value = doc.get(name)
                if not isinstance(value, str):
                    found.append(f"dimension {name!r} is not a string member of the root")
                elif not 0 < len(value) <= MAX_DIMENSION_VALUE:
                    found.append(f"dimension {name!r} has {len(value)} characters")
    return found


def _metric_problems(doc: dict[str, Any], metric: dict[str, Any]) -> list[str]:
    name = metric["Name"]
    found = []
    resolution = metric.get("StorageResolution", 60)
    if resolution not in (1, 60):
        found.append(f"metric {name!r}: StorageResolution {resolution}")
    if name not in doc:
        return [*found, f"metric {name!r} has no member at the root"]
    value = doc[name]
    if isinstance(value, list):
        if not value or len(value) > MAX_VALUES:
            found.append(f"metric {name!r} has {len(value)} values")
        if not all(_is_number(v) for v in value):
            found.append(f"metric {name!r} holds a non-number: {value!r}")
    elif not _is_number(value):
        found.append(f"metric {name!r} is not a number: {value!r}")
    return found


def parse_documents(text: str, now_ms: int | None = None) -> list[dict[str, Any]]:
    """Every line of text as an EMF document; AssertionError naming the first invalid line."""
    docs = []
    for number, line in enumerate(text.splitlines(), 1):
        bad = problems(line, now_ms)
        assert not bad, f"line {number} is not valid EMF: {bad}: {line[:300]!r}"
        docs.append(json.loads(line))
    return docs


def metric_names(doc: dict[str, Any]) -> set[str]:
    """The names a document declares as CloudWatch metrics."""
    return {m["Name"] for d in doc["_aws"]["CloudWatchMetrics"] for m in d["Metrics"]}


def value(doc: dict[str, Any], name: str) -> float:
    """A metric's (single) value, or a plain property's number."""
    v = doc[name]
    if isinstance(v, list):
        assert len(v) == 1, f"{name} holds {v}"
        return float(v[0])
    return float(v)
