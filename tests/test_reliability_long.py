"""Long life (issue 9): 5,000 invocations in one execution environment.

The monitor's RSS comes from its own documents (ExtensionRssBytes, measured at the end of each
runtime); its open file descriptors from outside: the function (same user as the extensions)
counts /proc/<monitor pid>/fd on every invocation. Both must be flat: the least-squares slope
over the second half (after start-up and the first invocations have settled) is below a bound
chosen from measurement:

- RSS: measured 0 bytes per 100 invocations over invocations 2,501-5,000 (one page, 4 KiB, was
  added once before invocation 2,000); bound 1 KiB per 100 invocations, so a leak of 10 bytes
  per invocation fails.
- fds: 6 or 7 (a telemetry connection in flight or not), slope measured 0.0015 per 100
  invocations (its standard error is about 0.001); bound 0.01 per 100, so one leaked fd per
  10,000 invocations fails; and the second half never holds more than the first did.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

import emf_check
from sandbox_run import run

FUNCTION = Path(__file__).parent / "functions" / "reliability_fds"
INVOCATIONS = 5_000
RSS_SLOPE_BOUND = 1024 / 100  # bytes per invocation
FD_SLOPE_BOUND = 0.01 / 100  # descriptors per invocation


def slope(values: list[float]) -> float:
    """Least-squares slope of values against their index."""
    n = len(values)
    mean_x = (n - 1) / 2
    mean_y = sum(values) / n
    num = sum((x - mean_x) * (y - mean_y) for x, y in enumerate(values))
    den = sum((x - mean_x) ** 2 for x in range(n))
    return num / den


def test_slope() -> None:
    assert slope([1.0, 3.0, 5.0, 7.0]) == pytest.approx(2.0)
    assert slope([5.0, 5.0, 5.0]) == 0.0
    assert slope([0.0, 1.0, 0.0, 1.0]) == pytest.approx(0.2)


@pytest.mark.slow
def test_five_thousand_invocations_flat_and_complete(monitor_layer: Path) -> None:
    r = run(
        FUNCTION,
        "app.handler",
        "python3.11",
        layers=[monitor_layer],
        memory=1769,
        invocations=INVOCATIONS,
        process_timeout_s=900,
    )
    assert r.returncode == 0, "\n".join(r.stderr[-20:])
    assert [res["status"] for res in r.results] == ["success"] * INVOCATIONS
    docs = emf_check.parse_documents(r.output("extension-tmp-monitor.stdout"))
    inv = [d for d in docs if d["document"] == "invocation"]
    ids = Counter(d["requestId"] for d in inv)
    assert set(ids) == {rep.request_id for rep in r.reports}
    assert set(ids.values()) == {1}
    assert Counter(d["document"] for d in docs) == {
        "invocation": INVOCATIONS,
        "report": INVOCATIONS,
        "summary": 1,
    }
    assert [d["invocation"] for d in inv] == list(range(1, INVOCATIONS + 1))

    half = INVOCATIONS // 2
    rss = [float(emf_check.value(d, "ExtensionRssBytes")) for d in inv]
    assert slope(rss[half:]) < RSS_SLOPE_BOUND, (rss[half], rss[-1])

    fds = [float(res["payload"]["fds"]) for res in r.results]
    assert min(fds) > 0, "the function did not find the monitor's process"
    assert slope(fds[half:]) < FD_SLOPE_BOUND, Counter(fds[half:])
    assert max(fds[half:]) <= max(fds[:half]), (Counter(fds[:half]), Counter(fds[half:]))
