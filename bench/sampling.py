"""The monitor's own RSS and CPU while a function sleeps 1 s, at 128 MB and 1,769 MB.

The function reads the monitor's CPU time from /proc (summed over its threads) before and after
its sleep, so the figure is exactly the monitor's CPU during the invocation: its sampling. It also
gives the CPU from one invocation's start to the next one's, which adds the work after the
runtime (walk, documents) and the handling of the next event. The sampling budget is 2 % of the
CPU the function gets: memory/1,769 of one CPU for each second.
"""

from __future__ import annotations

from bench import sandbox
from bench.common import FULL_CPU_MB, FUNCTIONS, MIB, SMALL_MB, Context, number, share
from bench.stats import describe, median
from bench.table import Row

PYTHON_SLEEP = FUNCTIONS / "python_sleep"
SLEEP_S = 1.0


def measure(ctx: Context) -> list[Row]:
    rows = []
    for mb in (SMALL_MB, FULL_CPU_MB):
        percent: list[float] = []
        whole_ms: list[float] = []
        rss_mib: list[float] = []
        for _ in range(ctx.settings.environments):
            run = sandbox.run(
                PYTHON_SLEEP,
                "app.handler",
                "python3.11",
                layers=[ctx.layer_zip],
                memory=mb,
                invocations=max(2, ctx.settings.invocations // 3),
                events=[{"seconds": SLEEP_S}],
                timeout=10,
            )
            for payload in run.payloads():
                if not payload.get("monitorPids"):
                    raise sandbox.SandboxFailed("the function found no monitor process")
                cpu_s = payload["monitorCpuNs"] / 1e9
                percent.append(100 * cpu_s / (payload["wallS"] * share(mb)))
                if payload.get("monitorCpuNsSinceLastStart") is not None:
                    whole_ms.append(payload["monitorCpuNsSinceLastStart"] / 1e6)
            rss_mib += [
                v / MIB
                for d in run.docs("invocation")
                if (v := number(d, "ExtensionRssBytes")) is not None
            ]
        given_ms = 1000 * SLEEP_S * share(mb)
        rows.append(
            Row(
                f"sampling_cpu_{mb}",
                f"sampling cost: monitor CPU / CPU the function gets, {mb} MB",
                median(percent),
                "%",
                f"{describe(percent, '%', 2)}; the function gets {given_ms:.0f} ms CPU per s",
                2,
                {"samples": percent},
            )
        )
        rows.append(
            Row(
                f"monitor_cpu_per_invocation_{mb}",
                f"monitor CPU per 1 s invocation, start to next start, {mb} MB",
                median(whole_ms) if whole_ms else None,
                "ms",
                describe(whole_ms, "ms") if whole_ms else "needs 2 invocations or more",
                None,
                {"samples": whole_ms},
            )
        )
        if rss_mib:
            rows.append(
                Row(
                    f"extension_rss_{mb}",
                    f"ExtensionRssBytes, {mb} MB",
                    max(rss_mib),
                    "MiB",
                    f"max {max(rss_mib):.1f} MiB, median {median(rss_mib):.1f} (n={len(rss_mib)})",
                    20,
                    {"samples": rss_mib},
                )
            )
        else:
            rows.append(
                Row(
                    f"extension_rss_{mb}",
                    f"ExtensionRssBytes, {mb} MB",
                    None,
                    "MiB",
                    "no ExtensionRssBytes in the invocation documents",
                    20,
                )
            )
    return rows
