"""What the layer adds to a function that does nothing: cold start, duration, Max Memory Used,
and what each invocation waited for the monitor (the platform's extensionOverhead span).

Node.js function, fresh environments with and without the layer, alternated so that a drift of
the machine falls on both alike.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bench import sandbox
from bench.common import FULL_CPU_MB, FUNCTIONS, SMALL_MB, Context, metric, span_ms
from bench.stats import median, p99
from bench.table import Row

NODE_NOOP = FUNCTIONS / "node_noop"
INVOCATIONS = 5  # per environment: the first, and four later ones


@dataclass
class Series:
    init_ms: list[float] = field(default_factory=list)
    first_ms: list[float] = field(default_factory=list)
    later_ms: list[float] = field(default_factory=list)
    max_memory_mb: list[float] = field(default_factory=list)
    overhead_ms: list[float] = field(default_factory=list)
    invocations: int = 0
    fallbacks: list[str] = field(default_factory=list)  # invocations closed without runtimeDone


def _collect(into: Series, run: sandbox.Run) -> None:
    reports = run.reports
    if len(reports) != INVOCATIONS:
        raise sandbox.SandboxFailed(
            f"{len(reports)} platform reports for {INVOCATIONS} invocations"
        )
    init = metric(reports[0], "initDurationMs")
    if init is None:
        raise sandbox.SandboxFailed("the cold start's report has no initDurationMs")
    into.init_ms.append(init)
    into.first_ms.append(metric(reports[0], "durationMs") or 0.0)
    into.later_ms += [metric(r, "durationMs") or 0.0 for r in reports[1:]]
    into.max_memory_mb.append(max(metric(r, "maxMemoryUsedMB") or 0.0 for r in reports))
    into.overhead_ms += [v for r in reports if (v := span_ms(r, "extensionOverhead")) is not None]
    docs = run.docs("invocation")
    into.invocations += len(docs)
    into.fallbacks += [str(d["fallback"]) for d in docs if d.get("fallback")]


def _added(
    key: str, what: str, base: list[float], layered: list[float], unit: str, budget: float | None
) -> Row:
    added = median(layered) - median(base)
    text = (
        f"{added:+.1f} {unit} (with: median {median(layered):.1f}, p99 {p99(layered):.1f}; "
        f"without: median {median(base):.1f}, p99 {p99(base):.1f}; n={len(layered)})"
    )
    return Row(key, what, added, unit, text, budget, {"with": layered, "without": base})


def measure(ctx: Context, subscription_timeout_ms: float | None) -> list[Row]:
    series = {(mb, layered): Series() for mb in (FULL_CPU_MB, SMALL_MB) for layered in (0, 1)}
    for i in range(ctx.settings.runs):
        for mb in (FULL_CPU_MB, SMALL_MB):
            for layered in (0, 1) if i % 2 == 0 else (1, 0):
                run = sandbox.run(
                    NODE_NOOP,
                    "index.handler",
                    "nodejs20.x",
                    layers=[ctx.layer_zip] if layered else [],
                    memory=mb,
                    invocations=INVOCATIONS,
                    idle_ms=20,
                    timeout=10,
                )
                if layered:
                    run.require_monitor(INVOCATIONS)
                _collect(series[(mb, layered)], run)
    rows = []
    for mb in (FULL_CPU_MB, SMALL_MB):
        base, lay = series[(mb, 0)], series[(mb, 1)]
        full = mb == FULL_CPU_MB
        rows += [
            _added(
                f"cold_start_added_{mb}",
                f"added cold start (Node.js initDurationMs), {mb} MB",
                base.init_ms,
                lay.init_ms,
                "ms",
                30 if full else None,
            ),
            _added(
                f"first_duration_added_{mb}",
                f"added duration, first invocation, {mb} MB",
                base.first_ms,
                lay.first_ms,
                "ms",
                50 if full else None,
            ),
            _added(
                f"later_duration_added_{mb}",
                f"added duration, later invocations, {mb} MB",
                base.later_ms,
                lay.later_ms,
                "ms",
                None,
            ),
            _added(
                f"max_memory_added_{mb}",
                f"added Max Memory Used, {mb} MB",
                base.max_memory_mb,
                lay.max_memory_mb,
                "MiB",
                30,
            ),
        ]
    layered = [series[(mb, 1)] for mb in (FULL_CPU_MB, SMALL_MB)]
    total = sum(s.invocations for s in layered)
    fallbacks = [f for s in layered for f in s.fallbacks]
    kinds = ", ".join(sorted(set(fallbacks))) or "none"
    rows.append(
        Row(
            "closed_without_runtime_done",
            "invocations the monitor closed without their runtimeDone (held near the deadline)",
            float(len(fallbacks)),
            "",
            f"{len(fallbacks)} of {total} (Node.js, 128 and 1769 MB; {kinds})",
            None,
            {"fallbacks": fallbacks, "invocations": total},
        )
    )
    overhead = series[(FULL_CPU_MB, 1)].overhead_ms
    budget = None if subscription_timeout_ms is None else subscription_timeout_ms + 5
    basis = (
        f"; timeoutMs {subscription_timeout_ms:g} + 5"
        if subscription_timeout_ms is not None
        else "; subscription timeoutMs unknown"
    )
    if overhead:
        value: float | None = median(overhead)
        text = (
            f"median {median(overhead):.1f} ms, p99 {p99(overhead):.1f} (n={len(overhead)}){basis}"
        )
    else:
        value, text = None, "no extensionOverhead span in the platform's reports"
    rows.append(
        Row(
            f"extension_overhead_{FULL_CPU_MB}",
            f"ExtensionOverheadMs (platform span), {FULL_CPU_MB} MB",
            value,
            "ms",
            text,
            budget,
            {"samples": overhead},
        )
    )
    return rows
