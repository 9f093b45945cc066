"""`tmp-monitor report` over a real lambda-sandbox run of the example function with the layer."""

from __future__ import annotations

import io
import json
from pathlib import Path

from sandbox_run import run
from tmp_monitor_tools import chart, cli, report, sources

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "tmp-writer"
MIB = 1 << 20


def test_report_of_a_sandbox_run_gives_the_max_memory_used_of_its_report_lines(
    tmp_path: Path, monitor_layer: Path
) -> None:
    done = run(
        EXAMPLE, "index.handler", "nodejs20.x", layers=[monitor_layer], memory=256, invocations=4
    )
    assert done.returncode == 0, done.explain()
    assert len(done.reports) == 4, done.explain()
    telemetry = tmp_path / "telemetry.jsonl"
    telemetry.write_text("".join(json.dumps(e) + "\n" for e in done.events))

    result = report.build(sources.read_file(telemetry))
    by_id = {r.request_id: r for r in result.rows}
    assert set(by_id) == {line.request_id for line in done.reports}, done.explain()
    for line in done.reports:
        row = by_id[line.request_id]
        # Each row's Max Memory Used is the sandbox's own REPORT line, carried by the monitor's
        # report document (not by the platform fallback).
        assert row.max_memory_used_mb == line.max_memory_used_mb
        assert row.max_memory_source == "monitor"
    rows = result.rows
    assert [r.invocation for r in rows] == [1, 2, 3, 4]
    # The function leaves a new 10 MiB file per invocation.
    assert [round((r.tmp_used_bytes or 0) / MIB) for r in rows] == [10, 20, 30, 40]
    assert all((r.tmp_peak_bytes or 0) >= (r.tmp_used_bytes or 0) for r in rows)
    assert all(r.function_rss_bytes and r.monitor_rss_bytes for r in rows)
    assert len(result.environments) == 1 and result.environments[0].invocations == 4

    # The chart's bars hold the same Max Memory Used, and the table prints it.
    data = chart.series(rows)
    assert data.max_memory_used == tuple(float(r.max_memory_used_mb) for r in done.reports)
    out = io.StringIO()
    assert cli.main(["report", str(telemetry)], out) == 0
    lines = out.getvalue().splitlines()[1:5]
    for line, text in zip(done.reports, lines, strict=True):
        assert f" {line.max_memory_used_mb} MB " in f"{text} ", text
