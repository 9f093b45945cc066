"""The monitor's own RSS and CPU while a function sleeps, at 128 MB and 1,769 MB.

The function reads the monitor's CPU time (its process CPU clock, all threads) before and after
its sleep, so each figure is exactly the monitor's CPU during that invocation. Invocations of 1 s
and 3 s alternate in the same environment: the difference of their medians over the 2 s between
them is the monitor's CPU per second of invocation (its sampling), free of what every invocation
costs once whatever its length (the INVOKE, the previous invocation's report arriving and being
written); the 1 s figure is shown too, all included. The budget is 2 % of the CPU the function
gets, memory/1,769 of one CPU per second. The invocations also give ExtensionRssBytes.
"""

from __future__ import annotations

from bench import sandbox
from bench.common import FULL_CPU_MB, FUNCTIONS, MIB, SMALL_MB, Context, number, share
from bench.stats import describe, median
from bench.table import Row

PYTHON_SLEEP = FUNCTIONS / "python_sleep"
SHORT_S, LONG_S = 1.0, 3.0


def measure(ctx: Context) -> list[Row]:
    rows = []
    for mb in (SMALL_MB, FULL_CPU_MB):
        cpu_ms: dict[float, list[float]] = {SHORT_S: [], LONG_S: []}
        whole_ms: list[float] = []
        rss_mib: list[float] = []
        for _ in range(ctx.settings.environments):
            pairs = max(1, ctx.settings.invocations // 6)
            run = sandbox.run(
                PYTHON_SLEEP,
                "app.handler",
                "python3.11",
                layers=[ctx.layer_zip],
                memory=mb,
                invocations=2 * pairs + 1,
                # The first one is the cold start's: left out of the series.
                events=[{"seconds": SHORT_S}] + [{"seconds": s} for s in (SHORT_S, LONG_S)] * pairs,
                timeout=10,
            )
            run.require_monitor(2 * pairs + 1)
            for n, payload in enumerate(run.payloads()):
                if not payload.get("monitorPids"):
                    raise sandbox.SandboxFailed("the function found no monitor process")
                if n == 0:
                    continue
                seconds = SHORT_S if n % 2 == 1 else LONG_S
                cpu_ms[seconds].append(payload["monitorCpuNs"] / 1e6)
                # From one start to the next holds the previous invocation whole: keep those
                # that hold a warm 1 s one (n - 1 odd).
                since = payload.get("monitorCpuNsSinceLastStart")
                if n % 2 == 0 and since is not None:
                    whole_ms.append(since / 1e6)
            rss_mib += [
                v / MIB
                for d in run.docs("invocation")
                if (v := number(d, "ExtensionRssBytes")) is not None
            ]
        given_ms = 1000 * share(mb)  # CPU ms the function gets per second
        per_s = (median(cpu_ms[LONG_S]) - median(cpu_ms[SHORT_S])) / (LONG_S - SHORT_S)
        percent = 100 * per_s / given_ms
        short = [100 * v / given_ms for v in cpu_ms[SHORT_S]]
        rows.append(
            Row(
                f"sampling_cpu_{mb}",
                f"sampling cost: monitor CPU per s / CPU the function gets, {mb} MB",
                percent,
                "%",
                f"{percent:.2f} % ({per_s:.2f} ms per s of {given_ms:.0f}; medians: 3 s "
                f"invocation {median(cpu_ms[LONG_S]):.1f} ms, 1 s {median(cpu_ms[SHORT_S]):.1f} "
                f"ms; n={len(cpu_ms[SHORT_S])}+{len(cpu_ms[LONG_S])})",
                2,
                {"perSecondMs": per_s, "shortMs": cpu_ms[SHORT_S], "longMs": cpu_ms[LONG_S]},
            )
        )
        rows.append(
            Row(
                f"monitor_cpu_1s_{mb}",
                f"monitor CPU during a 1 s invocation, all included, {mb} MB",
                median(short),
                "%",
                f"{describe(short, '%', 2)} of the function's CPU; from one start to the "
                f"next: {describe(whole_ms, 'ms') if whole_ms else 'n/a'}",
                None,
                {"samples": short, "startToStartMs": whole_ms},
            )
        )
        rows.append(
            Row(
                f"extension_rss_{mb}",
                f"ExtensionRssBytes, {mb} MB",
                max(rss_mib) if rss_mib else None,
                "MiB",
                f"max {max(rss_mib):.1f} MiB, median {median(rss_mib):.1f} (n={len(rss_mib)})"
                if rss_mib
                else "no ExtensionRssBytes in the invocation documents",
                20,
                {"samples": rss_mib},
            )
        )
    return rows
