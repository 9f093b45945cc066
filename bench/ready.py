"""Extension ready: from the extension's process start to its first /event/next, the monitor
against the floor (a Python extension that only registers and waits), both run by the layer's own
launcher, loader and interpreter (see layers.py). Each is split at its registration: before it,
the interpreter starts and imports; after it, the extension sets up (the monitor subscribes to
the Telemetry API and starts its listener).

The same rounds run the function with no layer, so that the floor's own cold start (what any
Python extension costs) stands next to the monitor's; and the monitor's runs give its Telemetry
API subscription as sent, whose buffering timeoutMs sets the ExtensionOverheadMs budget.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from bench import layers, sandbox
from bench.common import FULL_CPU_MB, FUNCTIONS, SMALL_MB, Context, metric
from bench.stats import median, p99
from bench.table import Row

NODE_NOOP = FUNCTIONS / "node_noop"


@dataclass(frozen=True)
class Ready:
    rows: list[Row]
    subscription: dict[str, object] | None


@dataclass(frozen=True)
class Times:
    ready_ms: float  # launch to first next
    import_ms: float  # launch to register
    init_ms: float  # the platform's initDurationMs
    cpu_ms: float  # the interpreter's CPU time at its first next (all threads)


def _probe(run: sandbox.Run, key: str) -> str | None:
    for line in run.probe_lines:
        parts = line.split(" ", 2)
        if len(parts) == 3 and parts[1] == key:
            return parts[2]
    return None


def times(run: sandbox.Run) -> Times:
    stamps = {k: _probe(run, k) for k in ("launch", "register", "next")}
    missing = [k for k, v in stamps.items() if v is None]
    if missing:
        raise sandbox.SandboxFailed(
            f"the probes wrote no {', '.join(missing)} time; extension stderr: "
            + run.extension_stderr[-400:]
        )
    launch, register = (float(stamps[k] or 0) for k in ("launch", "register"))
    first_next, cpu = (float(v) for v in (stamps["next"] or "").split())
    return Times(
        (first_next - launch) * 1000,
        (register - launch) * 1000,
        metric(run.reports[0], "initDurationMs") or 0.0,
        cpu * 1000,
    )


def _spread(values: list[float]) -> str:
    return f"median {median(values):.1f} ms, p99 {p99(values):.1f}"


def measure(ctx: Context) -> Ready:
    variants: dict[str, Path | None] = {
        "none": None,
        "floor": layers.floor_layer(ctx.layer_zip, ctx.work / "floor-layer"),
        "monitor": layers.probe_layer(ctx.layer_zip, ctx.work / "probe-layer"),
    }
    rows = []
    subscription = None
    for mb in (FULL_CPU_MB, SMALL_MB):
        found: dict[str, list[Times]] = {name: [] for name in variants}
        baseline: list[float] = []
        for i in range(ctx.settings.runs):
            order = list(variants.items())
            for name, layer in order if i % 2 == 0 else order[::-1]:
                run = sandbox.run(
                    NODE_NOOP,
                    "index.handler",
                    "nodejs20.x",
                    layers=[] if layer is None else [layer],
                    memory=mb,
                    invocations=1,
                    timeout=10,
                )
                if layer is None:
                    baseline.append(metric(run.reports[0], "initDurationMs") or 0.0)
                    continue
                if name == "monitor":
                    run.require_monitor(1)
                found[name].append(times(run))
                text = _probe(run, "subscribe")
                if name == "monitor" and text is not None:
                    subscription = json.loads(text)
        mon = [t.ready_ms for t in found["monitor"]]
        flo = [t.ready_ms for t in found["floor"]]
        mon_imp = [t.import_ms for t in found["monitor"]]
        flo_imp = [t.import_ms for t in found["floor"]]
        mon_cpu = [t.cpu_ms for t in found["monitor"]]
        flo_cpu = [t.cpu_ms for t in found["floor"]]
        ratio = median(mon) / median(flo)
        text = (
            f"{ratio:.2f}x (monitor {_spread(mon)}, of which to register {median(mon_imp):.1f}; "
            f"floor {_spread(flo)}, to register {median(flo_imp):.1f}; CPU by the first next: "
            f"monitor {median(mon_cpu):.0f} ms, floor {median(flo_cpu):.0f} ms; n={len(mon)})"
        )
        rows.append(
            Row(
                f"ready_ratio_{mb}",
                f"extension ready (start to first next) vs minimal extension, {mb} MB",
                ratio,
                "x",
                text,
                1.5,
                {
                    "monitor_ms": mon,
                    "floor_ms": flo,
                    "monitor_register_ms": mon_imp,
                    "floor_register_ms": flo_imp,
                    "monitor_cpu_ms": mon_cpu,
                    "floor_cpu_ms": flo_cpu,
                },
            )
        )
        floor_init = [t.init_ms for t in found["floor"]]
        added = median(floor_init) - median(baseline)
        rows.append(
            Row(
                f"floor_cold_start_added_{mb}",
                f"added cold start of the minimal extension (reference), {mb} MB",
                added,
                "ms",
                f"{added:+.1f} ms (floor {_spread(floor_init)}; no layer {_spread(baseline)})",
                None,
                {"with": floor_init, "without": baseline},
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
