"""Writes to /tmp count in Max Memory Used, as on Lambda, and only while their pages are cached.

A function appends 10 MiB to one file in /tmp per invocation, 6 invocations at 256 MB. Its REPORT
lines' Max Memory Used (the environment's memory cgroup high-water mark) must rise by one write per
invocation while the function's own RSS stays flat. Deleting the file before returning, or
dropping its pages from the page cache, keeps Max Memory Used flat: the memory is the page cache,
not the file on disk. Both language runtimes, each with its own writer.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from sandbox_run import run

FUNCTIONS = Path(__file__).resolve().parent / "functions"
MIB = 1024 * 1024
WRITE_MIB = 10
INVOCATIONS = 6
WRITERS = [
    ("node_tmp_writer", "index.handler", "nodejs20.x"),
    ("python_tmp_writer", "app.handler", "python3.11"),
]


def run_writer(writer: tuple[str, str, str], options: dict) -> tuple[list[int], list[dict]]:
    function, handler, runtime = writer
    result = run(
        FUNCTIONS / function,
        handler,
        runtime,
        memory=256,
        timeout=10,
        invocations=INVOCATIONS,
        event={"mib": WRITE_MIB, **options},
    )
    assert result.returncode == 0, result.explain()
    answers = [r["payload"] for r in result.results]
    assert [r["status"] for r in result.results] == ["success"] * INVOCATIONS, answers
    peaks = [report.max_memory_used_mb for report in result.reports]
    assert len(peaks) == INVOCATIONS
    return peaks, answers


@pytest.mark.parametrize("writer", WRITERS, ids=[w[2] for w in WRITERS])
def test_each_10_mib_appended_to_tmp_raises_max_memory_used_while_rss_stays_flat(
    writer: tuple[str, str, str],
) -> None:
    peaks, answers = run_writer(writer, {})
    assert [a["size"] for a in answers] == [WRITE_MIB * MIB * n for n in range(1, INVOCATIONS + 1)]
    steps = [later - earlier for earlier, later in itertools.pairwise(peaks)]
    # +-15 % of 10 MiB; the REPORT gives whole MB, so each step is 9, 10 or 11.
    assert all(WRITE_MIB * 0.85 <= step <= WRITE_MIB * 1.15 for step in steps), peaks
    rss = [a["rss"] for a in answers]
    assert max(rss) - min(rss) < 2 * MIB, rss


@pytest.mark.parametrize("writer", WRITERS, ids=[w[2] for w in WRITERS])
@pytest.mark.parametrize("option", ["delete", "drop_cache"])
def test_max_memory_used_stays_flat_when_the_pages_do_not_stay_cached(
    writer: tuple[str, str, str], option: str
) -> None:
    peaks, answers = run_writer(writer, {option: True})
    if option == "delete":
        assert [a["size"] for a in answers] == [WRITE_MIB * MIB] * INVOCATIONS
    else:
        # The file keeps growing on disk; only its pages left memory.
        assert answers[-1]["size"] == WRITE_MIB * MIB * INVOCATIONS
    # Each invocation's own 10 MiB still counts once (the second peak includes it), then no more.
    assert peaks[1] - peaks[0] <= 2, peaks
    assert max(peaks[1:]) - peaks[1] <= 2, peaks
