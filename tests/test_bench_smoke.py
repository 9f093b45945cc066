"""`bench/run.py --quick`: one iteration of every benchmark suite, in the real sandbox with the
built layer. It shows the harness runs end to end and yields a sane figure for every row of the
table; whether the budgets pass is for `./build.sh bench` to say, never for a test."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ROWS = {
    "zip_x86_64",
    "zip_arm64",
    "ready_ratio_1769",
    "ready_ratio_128",
    "floor_cold_start_added_1769",
    "floor_cold_start_added_128",
    "cold_start_added_1769",
    "cold_start_added_128",
    "first_duration_added_1769",
    "first_duration_added_128",
    "later_duration_added_1769",
    "later_duration_added_128",
    "max_memory_added_1769",
    "max_memory_added_128",
    "extension_overhead_1769",
    "closed_without_runtime_done",
    "post_runtime_0",
    "post_runtime_1000",
    "post_runtime_10000",
    "purge_ms_1769",
    "purge_freed",
    "sampling_cpu_128",
    "sampling_cpu_1769",
    "monitor_cpu_1s_128",
    "monitor_cpu_1s_1769",
    "extension_rss_128",
    "extension_rss_1769",
    "transient_1769",
    "transient_128",
}


@pytest.fixture(scope="module")
def quick(monitor_layer: Path) -> dict:
    if monitor_layer.suffix != ".zip":
        pytest.fail("the benchmark needs the built layer zip: run ./build.sh layer")
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run.py"), "--quick", "--json"],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    try:
        result = json.loads(done.stdout)
    except ValueError:
        pytest.fail(f"bench/run.py wrote no JSON (exit {done.returncode}): {done.stderr[-3000:]}")
    errors = [f"{r['key']}: {r['measured']}" for r in result["rows"] if r["status"] == "ERROR"]
    assert done.returncode == 0, "rows not measured:\n" + "\n".join(errors)
    return result


@pytest.mark.slow
def test_every_row_is_measured(quick: dict) -> None:
    rows = {r["key"]: r for r in quick["rows"]}
    assert set(rows) == ROWS
    errors = {k: r["measured"] for k, r in rows.items() if r["status"] == "ERROR"}
    assert not errors
    for row in rows.values():
        assert row["status"] in ({"pass", "MISS"} if row["budget"] is not None else {"-"}), row


@pytest.mark.slow
def test_figures_are_sane(quick: dict) -> None:
    rows = {r["key"]: r for r in quick["rows"]}
    for arch in ("x86_64", "arm64"):
        size = rows[f"zip_{arch}"]["detail"]["bytes"]
        assert size > 1024 * 1024
        assert rows[f"zip_{arch}"]["value"] == size / (1024 * 1024)
    for mb in (128, 1769):
        ready = rows[f"ready_ratio_{mb}"]["detail"]
        assert all(t > 0 for t in ready["monitor_ms"] + ready["floor_ms"])
        assert all(t > 0 for t in ready["monitor_cpu_ms"] + ready["floor_cpu_ms"])
        # Registering comes before the first next, for the monitor as for the floor.
        assert all(
            r <= t for r, t in zip(ready["monitor_register_ms"], ready["monitor_ms"], strict=True)
        )
        assert all(
            r <= t for r, t in zip(ready["floor_register_ms"], ready["floor_ms"], strict=True)
        )
        cold = rows[f"cold_start_added_{mb}"]["detail"]
        assert all(t > 0 for t in cold["with"] + cold["without"])
        # The monitor is a process of its own: with it the environment holds more memory.
        assert rows[f"max_memory_added_{mb}"]["value"] > 0
        assert 1 < rows[f"extension_rss_{mb}"]["value"] < 200
        # The monitor samples while the function sleeps: it spends CPU in every invocation.
        sampling = rows[f"sampling_cpu_{mb}"]["detail"]
        assert all(v > 0 for v in sampling["shortMs"] + sampling["longMs"])
        assert rows[f"monitor_cpu_1s_{mb}"]["value"] > 0
        rates = rows[f"transient_{mb}"]["detail"]["catchRate"]
        assert set(rates) == {"25", "50", "100", "250", "500", "1000"}
        assert all(0 <= r <= 1 for r in rates.values())
    for count in (0, 1000, 10000):
        assert all(v >= 0 for v in rows[f"post_runtime_{count}"]["detail"]["samples"])
    assert all(v >= 0 for v in rows["extension_overhead_1769"]["detail"]["samples"])
    freed = rows["purge_freed"]["detail"]
    # The function writes 1,000 files of 100 KiB each invocation; the purge frees all of them.
    assert min(freed["purgedFiles"]) == 1000
    assert min(freed["purgedMiB"]) >= 99


@pytest.mark.slow
def test_the_table_names_the_machine_and_the_command(quick: dict) -> None:
    assert quick["command"] == "./build.sh bench --quick --json"
    assert int(quick["machine"]["nproc"]) >= 1
    assert quick["machine"]["kernel"]
