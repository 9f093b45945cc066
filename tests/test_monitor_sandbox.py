"""The monitor in lambda-sandbox, attached as a layer the way a user attaches it (issue 4).

Every test parses every line the monitor wrote to stdout as EMF (tests/emf_check.py) and checks
the number of documents of each kind, besides its own claims.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest

import emf_check
from sandbox_run import Run, run

FUNCTIONS = Path(__file__).parent / "functions"
MIB = 2**20


def documents(r: Run) -> list[dict[str, Any]]:
    """The monitor's stdout: every line valid EMF (else AssertionError naming it)."""
    assert r.returncode == 0, r.explain()
    return emf_check.parse_documents(r.output("extension-tmp-monitor.stdout"))


def of_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["document"] == kind]


def kinds(docs: list[dict[str, Any]]) -> Counter[str]:
    return Counter(d["document"] for d in docs)


v = emf_check.value


def test_node_writer_six_invocations(monitor_layer: Path) -> None:
    r = run(
        FUNCTIONS / "node_tmp_writer",
        "index.handler",
        "nodejs20.x",
        layers=[monitor_layer],
        memory=512,
        invocations=6,
    )
    docs = documents(r)
    assert kinds(docs) == {"invocation": 6, "report": 6, "summary": 1}, r.explain()
    inv = of_kind(docs, "invocation")
    assert [d["invocation"] for d in inv] == [1, 2, 3, 4, 5, 6]
    assert [d["ColdStart"] for d in inv] == [1, 0, 0, 0, 0, 0]
    assert [d["requestId"] for d in inv] == [rep.request_id for rep in r.reports]
    used = [v(d, "TmpUsedBytes") for d in inv]
    for before, after in zip([0.0, *used], used, strict=False):
        assert after - before == pytest.approx(10 * MIB, rel=0.02), used
    for d in inv:
        assert v(d, "TmpDeltaBytes") == pytest.approx(10 * MIB, rel=0.02)
        assert v(d, "TmpResidentBytes") >= 0.9 * v(d, "TmpUsedBytes")
        assert v(d, "TmpPeakBytes") >= v(d, "TmpUsedBytes")
        assert d["TmpFiles"] == 1
        assert "fallback" not in d
        assert d["errors"] == 0
    # Report N joined to invocation N: the sandbox's own REPORT line for the same request.
    by_id = {d["requestId"]: d for d in inv}
    platform = {rep.request_id: rep for rep in r.reports}
    reports = of_kind(docs, "report")
    assert {d["requestId"] for d in reports} == set(platform)
    for rep in reports:
        assert v(rep, "MaxMemoryUsedMB") == platform[rep["requestId"]].max_memory_used_mb
        own = by_id[rep["requestId"]]
        assert rep["_aws"]["Timestamp"] == own["_aws"]["Timestamp"]
        expected = v(own, "TmpResidentBytes") / (v(rep, "MaxMemoryUsedMB") * MIB) * 100
        assert v(rep, "TmpShareOfMaxMemory") == pytest.approx(expected, abs=1e-3)
    assert "InitDurationMs" in reports[0]
    assert all("InitDurationMs" not in d for d in reports[1:])
    (summary,) = of_kind(docs, "summary")
    assert summary["shutdownReason"] == "spindown"
    assert v(summary, "Invocations") == 6
    assert v(summary, "ReportsMissing") == 0
    assert v(summary, "LifetimeTmpPeakBytes") >= used[-1]
    assert "requestId" not in summary


def test_resident_bytes_fall_when_the_function_drops_its_pages(monitor_layer: Path) -> None:
    r = run(
        FUNCTIONS / "python_tmp_writer",
        "app.handler",
        "python3.11",
        layers=[monitor_layer],
        memory=512,
        invocations=2,
        event=[{"mib": 20}, {"mib": 20, "drop_cache": True}],
    )
    docs = documents(r)
    assert kinds(docs) == {"invocation": 2, "report": 2, "summary": 1}
    kept, dropped = of_kind(docs, "invocation")
    assert v(kept, "TmpResidentBytes") >= 0.9 * v(kept, "TmpUsedBytes")
    assert v(dropped, "TmpUsedBytes") == pytest.approx(40 * MIB, rel=0.02)
    assert v(dropped, "TmpResidentBytes") < 0.1 * v(dropped, "TmpUsedBytes")


def test_transient_file_is_caught_by_the_peak(monitor_layer: Path) -> None:
    r = run(
        FUNCTIONS / "python_transient",
        "app.handler",
        "python3.11",
        layers=[monitor_layer],
        memory=128,
        ephemeral=512,
        invocations=2,
        event=[{"mib": 40, "hold_ms": 300}, {"mib": 0, "hold_ms": 300}],
    )
    docs = documents(r)
    assert kinds(docs) == {"invocation": 2, "report": 2, "summary": 1}
    held, nothing = of_kind(docs, "invocation")
    assert v(held, "TmpPeakBytes") >= 40 * MIB
    assert v(held, "TmpUsedBytes") < MIB
    # The negative case: nothing written, no peak.
    assert v(nothing, "TmpPeakBytes") < MIB


def test_function_rss_counts_the_function_and_not_tmp(monitor_layer: Path) -> None:
    r = run(
        FUNCTIONS / "python_hold_memory",
        "app.handler",
        "python3.11",
        layers=[monitor_layer],
        memory=256,
        invocations=2,
        event=[{"mib": 0, "hold_ms": 300}, {"mib": 60, "hold_ms": 300}],
    )
    docs = documents(r)
    assert kinds(docs) == {"invocation": 2, "report": 2, "summary": 1}
    baseline, holding = of_kind(docs, "invocation")
    runtime_own = v(baseline, "FunctionRssBytes")
    assert 5 * MIB < runtime_own < 60 * MIB  # awslambdaric's interpreter, measured
    assert 60 * MIB <= v(holding, "FunctionRssBytes") <= 60 * MIB + runtime_own
    for d in (baseline, holding):
        assert v(d, "TmpUsedBytes") < MIB
        assert v(d, "TmpPeakBytes") < MIB
        # The monitor is not the function: its own RSS is apart.
        assert 0 < v(d, "ExtensionRssBytes") < 30 * MIB


def test_function_timeout_gives_summary_reason_timeout(monitor_layer: Path) -> None:
    r = run(
        FUNCTIONS / "python_sleep",
        "app.handler",
        "python3.11",
        layers=[monitor_layer],
        timeout=2,
        event={"seconds": 10},
    )
    docs = documents(r)
    assert r.results[0]["status"] != "success"
    counts = kinds(docs)
    assert counts["invocation"] == 1
    assert counts["summary"] == 1
    assert counts["report"] <= 1
    (summary,) = of_kind(docs, "summary")
    assert summary["shutdownReason"] == "timeout"
    assert v(summary, "Invocations") == 1
    # Our next came before the deadline (we never hold an invocation to its timeout) ...
    (invocation,) = of_kind(docs, "invocation")
    assert invocation["fallback"] == "runtimeDoneMissing"
    assert "PurgedBytes" not in invocation
    # ... and the runtimeDone that came at the deadline was late, not lost.
    assert summary["runtimeDoneMissing"] == 0
    assert [d["status"] for d in of_kind(docs, "report")] in ([], ["timeout"])


def test_powertools_variables_of_the_function_change_nothing(monitor_layer: Path) -> None:
    def shape(env: dict[str, str]) -> list[tuple[str, str, tuple[str, ...], tuple[str, ...]]]:
        r = run(
            FUNCTIONS / "python_tmp_writer",
            "app.handler",
            "python3.11",
            layers=[monitor_layer],
            memory=256,
            invocations=2,
            env=env,
        )
        docs = documents(r)
        return [
            (
                d["document"],
                d["_aws"]["CloudWatchMetrics"][0]["Namespace"],
                tuple(sorted(emf_check.metric_names(d))),
                tuple(sorted(k for k in d if k != "_aws")),
            )
            for d in docs
        ]

    plain = shape({})
    assert [s[0] for s in plain] == ["invocation", "report", "invocation", "report", "summary"]
    powertools = shape(
        {
            "POWERTOOLS_SERVICE_NAME": "orders",
            "POWERTOOLS_METRICS_DISABLED": "true",
            "POWERTOOLS_METRICS_NAMESPACE": "Orders",
            "POWERTOOLS_DEV": "true",
            "POWERTOOLS_DEBUG": "true",
        }
    )
    assert powertools == plain
    assert all(ns == "TmpMonitor" for _, ns, _, _ in powertools)


def test_without_telemetry_each_document_closes_at_the_next_event(monitor_layer: Path) -> None:
    r = run(
        FUNCTIONS / "node_tmp_writer",
        "index.handler",
        "nodejs20.x",
        layers=[monitor_layer],
        memory=512,
        invocations=3,
        env={"TMP_MONITOR_PURGE": "always"},  # must stay off without runtimeDone
        extra_args=["--fault", "telemetry-unsupported"],
    )
    docs = documents(r)
    assert kinds(docs) == {"invocation": 3, "summary": 1}  # no reports without telemetry
    inv = of_kind(docs, "invocation")
    assert [d["fallback"] for d in inv] == ["telemetryUnavailable"] * 3
    assert all("PurgedBytes" not in d for d in inv)
    used = [v(d, "TmpUsedBytes") for d in inv]
    assert used[-1] == pytest.approx(30 * MIB, rel=0.02)  # nothing purged
    stderr = r.output("extension-tmp-monitor.stderr")
    assert stderr.count("Telemetry API is not available") == 1, stderr


def test_purge_runs_after_runtime_done_and_is_reported(monitor_layer: Path) -> None:
    r = run(
        FUNCTIONS / "node_tmp_writer",
        "index.handler",
        "nodejs20.x",
        layers=[monitor_layer],
        memory=512,
        invocations=3,
        env={"TMP_MONITOR_PURGE": "always"},
    )
    docs = documents(r)
    assert kinds(docs) == {"invocation": 3, "report": 3, "summary": 1}
    for d in of_kind(docs, "invocation"):
        # Measured before the purge, then freed: /tmp never accumulates.
        assert v(d, "TmpUsedBytes") == pytest.approx(10 * MIB, rel=0.02)
        assert v(d, "PurgedBytes") == pytest.approx(10 * MIB, rel=0.02)
        assert v(d, "PurgedFiles") == 1
        assert v(d, "TmpDeltaBytes") == pytest.approx(10 * MIB, rel=0.02)
    (summary,) = of_kind(docs, "summary")
    assert v(summary, "LifetimePurgedBytes") == pytest.approx(30 * MIB, rel=0.02)


def test_disabled_monitor_registers_for_shutdown_only_and_writes_nothing(
    monitor_layer: Path,
) -> None:
    r = run(
        FUNCTIONS / "python_tmp_writer",
        "app.handler",
        "python3.11",
        layers=[monitor_layer],
        invocations=2,
        env={"TMP_MONITOR_DISABLED": "true"},
    )
    assert r.returncode == 0, r.explain()
    assert r.output("extension-tmp-monitor.stdout") == ""
    line = next(x for x in r.stdout if x.startswith("EXTENSION"))
    assert "Events: [SHUTDOWN]" in line
    assert [res["status"] for res in r.results] == ["success", "success"]


def test_many_files_are_walked_and_their_residency_reused(monitor_layer: Path) -> None:
    r = run(
        FUNCTIONS / "monitor_many_files",
        "app.handler",
        "python3.11",
        layers=[monitor_layer],
        memory=1769,
        invocations=3,
        event=[{}, {}, {"rewrite": True}],
        env={"TMP_MONITOR_TOP_FILES": "3"},
    )
    docs = documents(r)
    assert kinds(docs) == {"invocation": 3, "report": 3, "summary": 1}
    for d in of_kind(docs, "invocation"):
        assert d["TmpFiles"] == 1000
        # 1,000 files of one 4 KiB block, and the ten folders that hold them
        assert 1000 * 4096 <= v(d, "TmpUsedBytes") <= 1000 * 4096 + 11 * 4096
        assert v(d, "TmpResidentBytes") == 1000 * 4096
        assert len(d["topFiles"]) == 3
        assert all(f["bytes"] == 4096 and f["path"].startswith("many/") for f in d["topFiles"])
    # Nothing written in the second invocation: the walk alone, no new file.
    assert [v(d, "TmpDeltaBytes") for d in of_kind(docs, "invocation")][1:] == [0, 0]
