"""Extension ready: from the extension's process start to its first /event/next, the monitor
against the floor (a Python extension that only registers and waits), both run by the layer's own
launcher, loader and interpreter (see layers.py).

The same runs give the monitor's Telemetry API subscription as it sent it, whose buffering
timeoutMs sets the ExtensionOverheadMs budget.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from bench import layers, sandbox
from bench.common import FULL_CPU_MB, FUNCTIONS, SMALL_MB, Context
from bench.stats import median, p99
from bench.table import Row

NODE_NOOP = FUNCTIONS / "node_noop"


@dataclass(frozen=True)
class Ready:
    rows: list[Row]
    subscription: dict[str, object] | None


def _probe(run: sandbox.Run, key: str) -> str | None:
    for line in run.probe_lines:
        parts = line.split(" ", 2)
        if len(parts) == 3 and parts[1] == key:
            return parts[2]
    return None


def ready_ms(run: sandbox.Run) -> float:
    launch, first_next = _probe(run, "launch"), _probe(run, "next")
    if launch is None or first_next is None:
        raise sandbox.SandboxFailed(
            "the probes wrote no launch or first-next time; extension stderr: "
            + run.extension_stderr[-400:]
        )
    return (float(first_next) - float(launch)) * 1000


def measure(ctx: Context) -> Ready:
    floor = layers.floor_layer(ctx.layer_zip, ctx.work / "floor-layer")
    probe = layers.probe_layer(ctx.layer_zip, ctx.work / "probe-layer")
    rows = []
    subscription = None
    for mb in (FULL_CPU_MB, SMALL_MB):
        times: dict[str, list[float]] = {"floor": [], "monitor": []}
        for i in range(ctx.settings.runs):
            order = (("floor", floor), ("monitor", probe))
            for name, layer in order if i % 2 == 0 else order[::-1]:
                run = sandbox.run(
                    NODE_NOOP,
                    "index.handler",
                    "nodejs20.x",
                    layers=[layer],
                    memory=mb,
                    invocations=1,
                    timeout=10,
                )
                times[name].append(ready_ms(run))
                text = _probe(run, "subscribe")
                if name == "monitor" and text is not None:
                    subscription = json.loads(text)
        mon, flo = times["monitor"], times["floor"]
        ratio = median(mon) / median(flo)
        text = (
            f"{ratio:.2f}x (monitor: median {median(mon):.1f} ms, p99 {p99(mon):.1f}; "
            f"floor: median {median(flo):.1f} ms, p99 {p99(flo):.1f}; n={len(mon)})"
        )
        rows.append(
            Row(
                f"ready_ratio_{mb}",
                f"extension ready (start to first next) vs minimal extension, {mb} MB",
                ratio,
                "x",
                text,
                1.5,
                {"monitor_ms": mon, "floor_ms": flo},
            )
        )
    return Ready(rows, subscription)


def timeout_ms(subscription: dict[str, object] | None) -> float | None:
    if subscription is None:
        return None
    buffering = subscription.get("buffering")
    if isinstance(buffering, dict) and isinstance(buffering.get("timeoutMs"), int | float):
        return float(buffering["timeoutMs"])
    return None
