"""The report's chart: Max Memory Used per invocation, split into its parts, beside `/tmp` used.

`series` computes every number drawn; `draw` only draws them, so tests check the data.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .report import MIB, Row


@dataclass(frozen=True)
class ChartData:
    """One bar group per invocation, in MiB. The four parts stack up to Max Memory Used; `rest`
    is what the parts do not explain (runtime overhead, kernel memory, other extensions), never
    below zero; `overlap` is how far the parts exceed Max Memory Used (RSS also counts shared
    file pages, such as the runtime's binaries, whose page cache may be charged elsewhere). An
    invocation without Max Memory Used has `None` there and 0 for `rest` and `overlap`."""

    labels: tuple[str, ...]
    function_rss: tuple[float, ...]
    tmp_resident: tuple[float, ...]
    monitor_rss: tuple[float, ...]
    rest: tuple[float, ...]
    overlap: tuple[float, ...]
    max_memory_used: tuple[float | None, ...]
    tmp_used: tuple[float, ...]
    memory_size: float | None


def _mib(value: float | None) -> float:
    return 0.0 if value is None else value / MIB


def series(rows: Sequence[Row]) -> ChartData:
    several = len({r.environment for r in rows}) > 1
    labels, fn, res, mon, rest, over, used, tmp = [], [], [], [], [], [], [], []
    for row in rows:
        number = "?" if row.invocation is None else str(row.invocation)
        labels.append(f"{row.environment}.{number}" if several else number)
        parts = (
            _mib(row.function_rss_bytes),
            _mib(row.tmp_resident_bytes),
            _mib(row.monitor_rss_bytes),
        )
        fn.append(parts[0])
        res.append(parts[1])
        mon.append(parts[2])
        used.append(row.max_memory_used_mb)
        gap = 0.0 if row.max_memory_used_mb is None else row.max_memory_used_mb - sum(parts)
        rest.append(max(0.0, gap))
        over.append(max(0.0, -gap))
        tmp.append(_mib(row.tmp_used_bytes))
    sizes = {r.memory_size_mb for r in rows if r.memory_size_mb is not None}
    return ChartData(
        labels=tuple(labels),
        function_rss=tuple(fn),
        tmp_resident=tuple(res),
        monitor_rss=tuple(mon),
        rest=tuple(rest),
        overlap=tuple(over),
        max_memory_used=tuple(used),
        tmp_used=tuple(tmp),
        memory_size=sizes.pop() if len(sizes) == 1 else None,
    )


PARTS = (
    ("function RSS", "function_rss", "#4c72b0"),
    ("/tmp resident", "tmp_resident", "#dd8452"),
    ("monitor RSS", "monitor_rss", "#55a868"),
    ("the rest", "rest", "#c8c8c8"),
)


def draw(path: Path, panels: Sequence[tuple[str, ChartData]]) -> None:
    """One PNG with a panel per (title, data), side by side on one memory scale."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    figure, axes = pyplot.subplots(
        1, len(panels), figsize=(1.0 + 5.5 * len(panels), 4.8), sharey=True, squeeze=False
    )
    for ax, (title, data) in zip(axes[0], panels, strict=True):
        xs = range(len(data.labels))
        bottom = [0.0] * len(data.labels)
        for label, attr, color in PARTS:
            values: tuple[float, ...] = getattr(data, attr)
            ax.bar([x - 0.2 for x in xs], values, 0.4, bottom=bottom, label=label, color=color)
            bottom = [b + v for b, v in zip(bottom, values, strict=True)]
        # The platform's figure itself, so that parts adding up to more than it still show it.
        known = [(x - 0.2, v) for x, v in zip(xs, data.max_memory_used, strict=True) if v]
        ax.scatter(
            [x for x, _ in known],
            [v for _, v in known],
            marker="_",
            s=900,
            color="black",
            label="Max Memory Used",
            zorder=3,
        )
        ax.bar(
            [x + 0.2 for x in xs],
            data.tmp_used,
            0.4,
            label="/tmp used",
            color="white",
            edgecolor="#8c564b",
            hatch="//",
        )
        if data.memory_size is not None:
            ax.axhline(data.memory_size, color="#c44e52", linestyle="--", label="memory size")
        ax.set_title(title)
        ax.set_xticks(list(xs), data.labels)
        ax.set_xlabel("invocation")
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].set_ylabel("MiB (left bar: Max Memory Used and its parts)")
    if any(max(data.overlap, default=0) > 0 for _, data in panels):
        figure.text(
            0.01,
            0.01,
            "Where the parts rise above the Max Memory Used mark, they overlap: RSS also counts "
            "shared file pages (the runtime's binaries) that may be charged outside the "
            "environment.",
            fontsize="small",
            color="#555555",
        )
    axes[0][-1].legend(loc="upper left", fontsize="small", framealpha=0.9)
    figure.tight_layout(rect=(0, 0.03, 1, 1))
    figure.savefig(path, dpi=100)
    pyplot.close(figure)
