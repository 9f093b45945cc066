"""The shortest-lived /tmp file TmpPeakBytes catches, at 1,769 MB and 128 MB.

A Python function writes 8 MiB, holds the file T ms and deletes it, after a random delay that
moves the file's life against the sampling clock. A lifetime counts as caught when every
invocation that held the file T ms shows TmpPeakBytes of at least the file's size; the figure is
the shortest lifetime caught for which every longer one is caught too.
"""

from __future__ import annotations

import random

from bench import sandbox
from bench.common import FULL_CPU_MB, FUNCTIONS, MIB, SMALL_MB, Context, number
from bench.table import Row

PYTHON_TRANSIENT = FUNCTIONS / "python_transient"
LIFETIMES_MS = (25, 50, 100, 250, 500, 1000)
FILE_MIB = 8
MAX_DELAY_MS = 200


def shortest_caught(rates: dict[int, float]) -> int | None:
    caught = None
    for lifetime in sorted(rates, reverse=True):
        if rates[lifetime] < 1.0:
            break
        caught = lifetime
    return caught


def measure(ctx: Context) -> list[Row]:
    rng = random.Random(ctx.settings.seed)
    rows = []
    for mb, budget in ((FULL_CPU_MB, 100), (SMALL_MB, 250)):
        events = [
            {"mib": FILE_MIB, "hold_ms": t, "delay_ms": rng.uniform(0, MAX_DELAY_MS)}
            for t in LIFETIMES_MS
            for _ in range(ctx.settings.repeats)
        ]
        rng.shuffle(events)
        run = sandbox.run(
            PYTHON_TRANSIENT,
            "app.handler",
            "python3.11",
            layers=[ctx.layer_zip],
            memory=mb,
            invocations=len(events),
            events=events,
            timeout=10,
        )
        peaks = {
            d.get("requestId"): number(d, "TmpPeakBytes") or 0.0 for d in run.docs("invocation")
        }
        hits: dict[int, list[bool]] = {t: [] for t in LIFETIMES_MS}
        for result in run.results:
            payload = result["payload"]
            if result["requestId"] not in peaks:
                raise sandbox.SandboxFailed(f"no invocation document for {result['requestId']}")
            caught = peaks[result["requestId"]] >= FILE_MIB * MIB
            hits[int(payload["hold_ms"])].append(caught)
        rates = {t: sum(h) / len(h) for t, h in hits.items() if h}
        shortest = shortest_caught(rates)
        text = ", ".join(f"{t} ms {rates[t]:.0%}" for t in sorted(rates))
        rows.append(
            Row(
                f"transient_{mb}",
                f"shortest transient file TmpPeakBytes catches, {mb} MB",
                None if shortest is None else float(shortest),
                "ms",
                f"{shortest if shortest is not None else f'> {LIFETIMES_MS[-1]}'} ms "
                f"(caught: {text})",
                budget,
                {"catchRate": {str(t): r for t, r in rates.items()}},
                beyond_range=shortest is None,
            )
        )
    return rows
