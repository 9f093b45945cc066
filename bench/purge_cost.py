"""The purge of 1,000 files / 100 MiB at 1,769 MB: what it frees and how long it takes.

The function writes the same 1,000 files every invocation; the monitor runs once with
TMP_MONITOR_PURGE=always and once with the purge off. If the monitor reports the purge's own
duration (a property named like purge...Ms), that is the figure (its p99); otherwise it is what
the purge adds to PostRuntimeMs, the difference of the medians with and without it (as for the
"added" rows): both hold the same walk of the same tree.
"""

from __future__ import annotations

import re

from bench import sandbox
from bench.common import FULL_CPU_MB, FUNCTIONS, MIB, Context, number
from bench.post_runtime import post_runtime_ms
from bench.stats import describe, median, p99
from bench.table import Row

PYTHON_FILES = FUNCTIONS / "python_fill"
FILES = 1000
BYTES = 100 * MIB
_PURGE_MS = re.compile(r"^purge.*ms$", re.IGNORECASE)


def _own_duration(docs: list[dict[str, object]]) -> tuple[str, list[float]] | None:
    for key in docs[0] if docs else ():
        if _PURGE_MS.match(key):
            values = [v for d in docs if (v := number(d, key)) is not None]
            if values:
                return key, values
    return None


def measure(ctx: Context) -> list[Row]:
    post: dict[str, list[float]] = {"always": [], "off": []}
    docs: list[dict[str, object]] = []
    for _ in range(ctx.settings.environments):
        for mode in ("always", "off"):
            run = sandbox.run(
                PYTHON_FILES,
                "app.handler",
                "python3.11",
                layers=[ctx.layer_zip],
                env={"TMP_MONITOR_PURGE": mode},
                memory=FULL_CPU_MB,
                invocations=max(2, ctx.settings.invocations // 3),
                events=[{"files": FILES, "bytes": BYTES}],
                timeout=60,
            )
            post[mode] += post_runtime_ms(run, skip_first=False)
            if mode == "always":
                docs += run.docs("invocation")
    freed = [v / MIB for d in docs if (v := number(d, "PurgedBytes")) is not None]
    files = [v for d in docs if (v := number(d, "PurgedFiles")) is not None]
    own = _own_duration(docs)
    if own is not None:
        key, values = own
        value = p99(values)
        text = f"{describe(values, 'ms')} (monitor's {key})"
    else:
        value = median(post["always"]) - median(post["off"])
        text = (
            f"{value:+.1f} ms (PostRuntimeMs with purge: median {median(post['always']):.1f}, "
            f"p99 {p99(post['always']):.1f}; without: median {median(post['off']):.1f}; "
            "the monitor reports no purge duration)"
        )
    rows = [
        Row(
            f"purge_ms_{FULL_CPU_MB}",
            f"purge of {FILES:,} files / 100 MiB, {FULL_CPU_MB} MB",
            value,
            "ms",
            text,
            50,
            {"postRuntimeMs": post},
        ),
    ]
    if freed and files:
        rows.append(
            Row(
                "purge_freed",
                "what the purge freed (PurgedBytes, PurgedFiles), per invocation",
                median(freed),
                "MiB",
                f"median {median(freed):.1f} MiB, {median(files):.0f} files (min {min(freed):.1f} "
                f"MiB, {min(files):.0f} files; written {BYTES / MIB:.0f} MiB, {FILES} files)",
                None,
                {"purgedMiB": freed, "purgedFiles": files},
            )
        )
    else:
        rows.append(
            Row(
                "purge_freed",
                "what the purge freed (PurgedBytes, PurgedFiles)",
                None,
                "MiB",
                "no PurgedBytes/PurgedFiles in the invocation documents",
            )
        )
    return rows
