"""The report reads what the monitor's own sink writes: documents built by tmp_monitor.emf, in
both metric modes, go through `tmp-monitor report` with every figure intact."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from tmp_monitor import emf
from tmp_monitor import monitor as m
from tmp_monitor_tools import cli

MIB = 1 << 20
T = 1_796_684_400_000


def sink(metrics_all: bool, purge_on: bool) -> emf.EmfSink:
    return emf.EmfSink(
        emf.Context(
            namespace="TmpMonitor",
            dimension_sets=(("FunctionName",), ("FunctionName", "FunctionVersion")),
            function_name="tmp-writer",
            function_version="$LATEST",
            monitor_version="0.1.0",
            metrics_all=metrics_all,
            purge_on=purge_on,
            memory_source="cgroup1",
        )
    )


def records(purge_on: bool) -> list[m.InvocationRecord | m.ReportRecord | m.SummaryRecord]:
    out: list[m.InvocationRecord | m.ReportRecord | m.SummaryRecord] = []
    for n in (1, 2):
        rid = f"req-{n}"
        out.append(
            m.InvocationRecord(
                request_id=rid, invocation=n, timestamp_ms=T + 1000 * n,
                environment_age_ms=1000 * n, cold_start=n == 1,
                tmp_used_bytes=10 * n * MIB, tmp_peak_bytes=10 * n * MIB + 4096,
                tmp_delta_bytes=10 * MIB, tmp_files=n, tmp_free_bytes=400 * MIB,
                tmp_resident_bytes=10 * n * MIB - 8192, function_rss_bytes=50 * MIB,
                sandbox_memory_bytes=90 * MIB, extension_rss_bytes=15 * MIB,
                post_runtime_ms=1.5,
                purged_bytes=10 * MIB if purge_on else None,
                purged_files=1 if purge_on else None,
                purged_but_open=0 if purge_on else None,
                top_files=(), samples=5, fallback=None, runtime_status="success", errors=0,
            )
        )  # fmt: skip
        out.append(
            m.ReportRecord(
                request_id=rid, invocation=n, timestamp_ms=T + 1000 * n,
                environment_age_ms=1000 * n, status="success",
                max_memory_used_mb=80 + n, memory_size_mb=256, duration_ms=40.0,
                billed_duration_ms=41, init_duration_ms=120.0 if n == 1 else None,
                extension_overhead_ms=2.0, tmp_share_of_max_memory=12.5 * n, errors=0,
            )
        )  # fmt: skip
    out.append(
        m.SummaryRecord(
            invocation=2, timestamp_ms=T + 5000, environment_age_ms=5000, invocations=2,
            lifetime_tmp_peak_bytes=20 * MIB + 4096, lifetime_purged_bytes=20 * MIB,
            reports_missing=0, shutdown_reason="spindown", runtime_done_missing=0, errors=0,
        )
    )  # fmt: skip
    return out


@pytest.mark.parametrize("metrics_all", [False, True])
@pytest.mark.parametrize("purge_on", [False, True])
def test_report_reads_the_sinks_documents(
    tmp_path: Path, metrics_all: bool, purge_on: bool
) -> None:
    out = sink(metrics_all, purge_on)
    lines = [json.dumps(out.document(r), separators=(",", ":")) for r in records(purge_on)]
    telemetry = tmp_path / "telemetry.jsonl"
    telemetry.write_text(
        "".join(
            json.dumps({"time": "2026-12-07T23:00:00.000Z", "type": "extension", "record": ln})
            + "\n"
            for ln in lines
        )
    )
    text = io.StringIO()
    assert cli.main(["report", "--json", str(telemetry)], text) == 0
    body = json.loads(text.getvalue())
    rows = body["invocations"]
    assert [r["invocation"] for r in rows] == [1, 2]
    assert [r["tmp_used_bytes"] for r in rows] == [10 * MIB, 20 * MIB]
    assert [r["tmp_peak_bytes"] for r in rows] == [10 * MIB + 4096, 20 * MIB + 4096]
    assert [r["tmp_resident_bytes"] for r in rows] == [10 * MIB - 8192, 20 * MIB - 8192]
    assert [r["function_rss_bytes"] for r in rows] == [50 * MIB] * 2
    assert [r["monitor_rss_bytes"] for r in rows] == [15 * MIB] * 2
    assert [r["max_memory_used_mb"] for r in rows] == [81, 82]
    assert [r["memory_size_mb"] for r in rows] == [256, 256]
    assert [r["tmp_share_percent"] for r in rows] == [12.5, 25.0]
    assert [r["max_memory_source"] for r in rows] == ["monitor", "monitor"]
    assert [r["purged_bytes"] for r in rows] == ([10 * MIB] * 2 if purge_on else [None, None])
    (env,) = body["environments"]
    assert (env["invocations"], env["shutdown_reason"]) == (2, "spindown")
    assert env["lifetime_purged_bytes"] == 20 * MIB
