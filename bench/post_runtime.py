"""PostRuntimeMs (end of the runtime to the monitor's next call) with 0, 1,000 and 10,000 files
in /tmp, no purge, at 1,769 MB. The function makes the files on its first invocation; the series
is the invocations after it, when the walk meets a tree that no longer changes."""

from __future__ import annotations

from bench import sandbox
from bench.common import FULL_CPU_MB, FUNCTIONS, Context, number
from bench.stats import describe, p99
from bench.table import Row

PYTHON_FILES = FUNCTIONS / "python_files"
COUNTS = (0, 1000, 10_000)


def post_runtime_ms(run: sandbox.Run, skip_first: bool) -> list[float]:
    docs = run.docs("invocation")
    if not docs:
        raise sandbox.SandboxFailed(
            "the monitor wrote no invocation document; its stderr: " + run.extension_stderr[-400:]
        )
    values = [
        v for d in docs[1 if skip_first else 0 :] if (v := number(d, "PostRuntimeMs")) is not None
    ]
    if not values:
        raise sandbox.SandboxFailed("no PostRuntimeMs in the monitor's invocation documents")
    return values


def measure(ctx: Context) -> list[Row]:
    rows = []
    for count in COUNTS:
        values: list[float] = []
        for _ in range(ctx.settings.environments):
            run = sandbox.run(
                PYTHON_FILES,
                "app.handler",
                "python3.11",
                layers=[ctx.layer_zip],
                memory=FULL_CPU_MB,
                invocations=ctx.settings.invocations + 1,
                events=[{"files": count}],
                timeout=60,
            )
            values += post_runtime_ms(run, skip_first=True)
        rows.append(
            Row(
                f"post_runtime_{count}",
                f"PostRuntimeMs p99, {count:,} files in /tmp, {FULL_CPU_MB} MB",
                p99(values),
                "ms",
                describe(values, "ms"),
                5 if count == 1000 else None,
                {"samples": values},
            )
        )
    return rows
