"""The sink: every record becomes one valid EMF line (tests/emf_check.py), with the right split
between CloudWatch metrics and plain properties, and nothing the function's POWERTOOLS_*
variables could change."""

from __future__ import annotations

import dataclasses
import io
import json
import threading
import time
from typing import Any

import pytest

import emf_check
from tmp_monitor import emf, names
from tmp_monitor import monitor as m
from tmp_monitor.tmpfs import TopFile

MIB = 2**20
NOW = int(time.time() * 1000)
CORE_INVOCATION = {
    names.TMP_USED_BYTES,
    names.TMP_PEAK_BYTES,
    names.TMP_RESIDENT_BYTES,
    names.FUNCTION_RSS_BYTES,
    names.EXTENSION_RSS_BYTES,
}


def context(**kw: Any) -> emf.Context:
    base: dict[str, Any] = {
        "namespace": "TmpMonitor",
        "dimension_sets": (("FunctionName",),),
        "function_name": "my-fn",
        "function_version": "$LATEST",
        "monitor_version": "0.1.0",
        "metrics_all": False,
        "purge_on": False,
        "memory_source": "cgroup1",
    }
    base.update(kw)
    return emf.Context(**base)


def invocation(**kw: Any) -> m.InvocationRecord:
    base: dict[str, Any] = {
        "request_id": "req-1",
        "invocation": 1,
        "timestamp_ms": NOW,
        "environment_age_ms": 1234,
        "cold_start": True,
        "tmp_used_bytes": 10 * MIB,
        "tmp_peak_bytes": 12 * MIB,
        "tmp_delta_bytes": -3 * MIB,
        "tmp_files": 4,
        "tmp_free_bytes": 400 * MIB,
        "tmp_resident_bytes": 9 * MIB,
        "function_rss_bytes": 60 * MIB,
        "sandbox_memory_bytes": 90 * MIB,
        "extension_rss_bytes": 16 * MIB,
        "post_runtime_ms": 1.23456,
        "purged_bytes": None,
        "purged_files": None,
        "purged_but_open": None,
        "top_files": (),
        "samples": 7,
        "fallback": None,
        "runtime_status": "success",
        "errors": 0,
    }
    base.update(kw)
    return m.InvocationRecord(**base)


REPORT = m.ReportRecord(
    request_id="req-1",
    invocation=1,
    timestamp_ms=NOW - 5000,
    environment_age_ms=1234,
    status="success",
    max_memory_used_mb=100,
    memory_size_mb=128,
    duration_ms=12.5,
    billed_duration_ms=13.0,
    init_duration_ms=None,
    extension_overhead_ms=26.1,
    tmp_share_of_max_memory=9.0,
    errors=0,
)
SUMMARY = m.SummaryRecord(
    invocation=6,
    timestamp_ms=NOW,
    environment_age_ms=60_000,
    invocations=6,
    lifetime_tmp_peak_bytes=70 * MIB,
    lifetime_purged_bytes=0,
    reports_missing=1,
    shutdown_reason="spindown",
    runtime_done_missing=0,
    errors=0,
)
ENVIRONMENT = m.EnvironmentRecord(
    timestamp_ms=NOW,
    environment_age_ms=60_000,
    tmp_peak_bytes=MIB,
    function_rss_bytes=50 * MIB,
    sandbox_memory_bytes=None,
    extension_rss_bytes=15 * MIB,
    tmp_free_bytes=400 * MIB,
    samples=100,
    errors=0,
)


def emit(records: list[Any], ctx: emf.Context | None = None) -> list[dict[str, Any]]:
    out = io.StringIO()
    sink = emf.EmfSink(ctx or context(), out)
    for record in records:
        sink.emit(record)
    text = out.getvalue()
    assert text.count("\n") == len(records), "one line per document"
    return emf_check.parse_documents(text)


def test_invocation_document_core_metrics_and_properties() -> None:
    (doc,) = emit([invocation()])
    assert emf_check.metric_names(doc) == CORE_INVOCATION
    directive = doc["_aws"]["CloudWatchMetrics"][0]
    assert directive["Namespace"] == "TmpMonitor"
    assert directive["Dimensions"] == [["FunctionName"]]
    assert doc["_aws"]["Timestamp"] == NOW
    assert doc["FunctionName"] == "my-fn"
    assert emf_check.value(doc, names.TMP_USED_BYTES) == 10 * MIB
    # The `all` set stays queryable as plain properties.
    assert doc[names.TMP_DELTA_BYTES] == -3 * MIB
    assert doc[names.TMP_FILES] == 4
    assert doc[names.TMP_FREE_BYTES] == 400 * MIB
    assert doc[names.SANDBOX_MEMORY_BYTES] == 90 * MIB
    assert doc[names.POST_RUNTIME_MS] == pytest.approx(1.235)
    assert doc[names.COLD_START] == 1
    assert doc[names.PROP_DOCUMENT] == "invocation"
    assert doc[names.PROP_REQUEST_ID] == "req-1"
    assert doc[names.PROP_INVOCATION] == 1
    assert doc[names.PROP_ENVIRONMENT_AGE_MS] == 1234
    assert doc[names.PROP_FUNCTION_VERSION] == "$LATEST"
    assert doc[names.PROP_MONITOR_VERSION] == "0.1.0"
    assert doc[names.PROP_MEMORY_SOURCE] == "cgroup1"
    assert doc[names.PROP_ERRORS] == 0
    assert names.PURGED_BYTES not in doc  # purge off
    assert names.PROP_TOP_FILES not in doc
    assert "service" not in doc


def test_metrics_all_makes_every_metric_a_cloudwatch_metric() -> None:
    (doc,) = emit([invocation()], context(metrics_all=True))
    expected = set(names.INVOCATION_METRICS) - {names.PURGED_BYTES, names.PURGED_FILES}
    assert emf_check.metric_names(doc) == expected
    assert emf_check.value(doc, names.TMP_DELTA_BYTES) == -3 * MIB


def test_purge_metrics_are_core_while_the_purge_is_on() -> None:
    ran, below_threshold = emit(
        [
            invocation(purged_bytes=5 * MIB, purged_files=3, purged_but_open=1),
            invocation(request_id="req-2", invocation=2, cold_start=False),
        ],
        context(purge_on=True),
    )
    assert {names.PURGED_BYTES, names.PURGED_FILES} <= emf_check.metric_names(ran)
    assert emf_check.value(ran, names.PURGED_BYTES) == 5 * MIB
    assert ran[names.PROP_PURGED_BUT_OPEN] == 1
    assert emf_check.value(below_threshold, names.PURGED_BYTES) == 0
    assert below_threshold[names.COLD_START] == 0


def test_two_dimension_sets_with_function_version() -> None:
    sets = (("FunctionName",), ("FunctionName", "FunctionVersion"))
    (doc,) = emit([invocation()], context(dimension_sets=sets, function_version="7"))
    assert doc["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [
        ["FunctionName"],
        ["FunctionName", "FunctionVersion"],
    ]
    assert doc["FunctionVersion"] == "7"


def test_every_document_kind_carries_the_dimensions() -> None:
    sets = (("FunctionName",), ("FunctionName", "FunctionVersion"))
    docs = emit([invocation(), REPORT, SUMMARY, ENVIRONMENT], context(dimension_sets=sets))
    for doc in docs:
        assert doc["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [list(s) for s in sets]
        assert doc["FunctionName"] == "my-fn"
        assert doc["FunctionVersion"] == "$LATEST"
    assert [d[names.PROP_DOCUMENT] for d in docs] == [
        "invocation",
        "report",
        "summary",
        "environment",
    ]


def test_report_document() -> None:
    (doc,) = emit([REPORT])
    assert emf_check.metric_names(doc) == {names.MAX_MEMORY_USED_MB, names.TMP_SHARE_OF_MAX_MEMORY}
    assert doc["_aws"]["Timestamp"] == NOW - 5000  # stamped like its invocation
    assert emf_check.value(doc, names.MAX_MEMORY_USED_MB) == 100
    assert emf_check.value(doc, names.TMP_SHARE_OF_MAX_MEMORY) == 9.0
    assert doc[names.EXTENSION_OVERHEAD_MS] == 26.1
    assert doc[names.MEMORY_SIZE_MB] == 128
    assert names.INIT_DURATION_MS not in doc  # warm start
    assert doc[names.PROP_REQUEST_ID] == "req-1"


def test_report_document_of_a_cold_start_and_without_share() -> None:
    record = dataclasses.replace(REPORT, init_duration_ms=150.5, tmp_share_of_max_memory=None)
    (doc,) = emit([record], context(metrics_all=True))
    assert emf_check.value(doc, names.INIT_DURATION_MS) == 150.5
    assert names.TMP_SHARE_OF_MAX_MEMORY not in doc


def test_summary_document_has_no_request_id() -> None:
    (doc,) = emit([SUMMARY])
    assert emf_check.metric_names(doc) == set(names.SUMMARY_METRICS)
    assert names.PROP_REQUEST_ID not in doc
    assert doc[names.PROP_SHUTDOWN_REASON] == "spindown"
    assert emf_check.value(doc, names.REPORTS_MISSING) == 1
    assert doc[names.PROP_INVOCATION] == 6


def test_top_files_only_when_asked() -> None:
    top = (TopFile("a/big.bin", 8 * MIB), TopFile("small", 4096))
    (doc,) = emit([invocation(top_files=top)])
    assert doc[names.PROP_TOP_FILES] == [
        {"path": "a/big.bin", "bytes": 8 * MIB},
        {"path": "small", "bytes": 4096},
    ]


def test_fallback_and_missing_sandbox_memory() -> None:
    (doc,) = emit([invocation(fallback=m.FALLBACK_NO_TELEMETRY, sandbox_memory_bytes=None)])
    assert doc[names.PROP_FALLBACK] == m.FALLBACK_NO_TELEMETRY
    assert names.SANDBOX_MEMORY_BYTES not in doc


def test_powertools_variables_change_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    records = [invocation(), REPORT, SUMMARY]
    plain = emit(records)
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "users-service")
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "UsersNamespace")
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")
    monkeypatch.setenv("POWERTOOLS_DEV", "true")
    assert emit(records) == plain


def test_a_failing_stdout_is_contained_and_counted() -> None:
    class Broken(io.StringIO):
        def write(self, s: str) -> int:
            raise BrokenPipeError("stdout closed")

    sink = emf.EmfSink(context(), Broken())
    sink.emit(invocation())  # no exception
    assert sink.errors == 1
    out = io.StringIO()
    sink2 = emf.EmfSink(context(), out)
    sink2.errors = 1
    sink2.emit(invocation(errors=2))
    (doc,) = emf_check.parse_documents(out.getvalue())
    assert doc[names.PROP_ERRORS] == 3  # the monitor's 2 and the sink's 1


def test_a_document_that_cannot_be_built_is_dropped_and_counted() -> None:
    out = io.StringIO()
    sink = emf.EmfSink(context(), out)
    sink.emit(invocation(tmp_used_bytes=float("nan")))
    assert out.getvalue() == ""
    assert sink.errors == 1


def test_documents_go_to_stdout_by_default(capsys: pytest.CaptureFixture[str]) -> None:
    emf.EmfSink(context()).emit(SUMMARY)
    out = capsys.readouterr().out
    assert len(emf_check.parse_documents(out)) == 1


def test_a_document_is_written_at_once_even_while_powertools_is_still_importing() -> None:
    """SPEC 6: the invocation document goes out before the monitor's next. One held back for
    the import would be lost if the environment were killed before the next emit."""
    importing = threading.Event()
    done = threading.Event()

    def slow_import() -> None:
        importing.wait()
        time.sleep(0.2)
        done.set()

    preload = threading.Thread(target=slow_import, daemon=True)
    preload.start()
    out = io.StringIO()
    sink = emf.EmfSink(context(), out, preload=preload)
    importing.set()
    sink.emit(invocation())
    assert done.is_set(), "emit waits for the import instead of holding the document"
    assert [d["requestId"] for d in emf_check.parse_documents(out.getvalue())] == ["req-1"]


# ---- the checker itself catches what the schema lets through -----------------------------------


def _doc(**over: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "_aws": {
            "Timestamp": NOW,
            "CloudWatchMetrics": [
                {"Namespace": "N", "Dimensions": [["D"]], "Metrics": [{"Name": "M"}]}
            ],
        },
        "D": "x",
        "M": 1,
    }
    doc.update(over)
    return doc


def _directive(doc: dict[str, Any]) -> dict[str, Any]:
    directive: dict[str, Any] = doc["_aws"]["CloudWatchMetrics"][0]
    return directive


def test_checker_accepts_a_good_document() -> None:
    assert emf_check.problems(json.dumps(_doc())) == []


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: (
            _directive(d).update(Metrics=[{"Name": f"M{i}"} for i in range(101)])
            or d.update({f"M{i}": 1 for i in range(101)})
        ),
        lambda d: _directive(d)["Metrics"][0].update(StorageResolution=5),
        lambda d: d.update(M=list(range(101))),
        lambda d: d.pop("M"),
        lambda d: d.update(M="12"),
        lambda d: d.update(M=True),
        lambda d: d.pop("D"),
        lambda d: d.update(D=5),
        lambda d: d.update(D="x" * 1025),
        lambda d: d["_aws"].update(Timestamp=NOW - 15 * 24 * 3600 * 1000),
        lambda d: d["_aws"].update(Timestamp=NOW + 3 * 3600 * 1000),
        lambda d: _directive(d).update(Dimensions=[[f"D{i}" for i in range(31)]]),
        lambda d: _directive(d)["Metrics"][0].update(Unit="Furlongs"),
        lambda d: _directive(d).pop("Namespace"),
        lambda d: d.update(big="x" * 300_000),
    ],
    ids=[
        "101-metrics",
        "resolution-5",
        "101-values",
        "metric-missing",
        "metric-string",
        "metric-bool",
        "dimension-missing",
        "dimension-number",
        "dimension-too-long",
        "too-old",
        "too-new",
        "31-dimensions",
        "bad-unit",
        "no-namespace",
        "too-big",
    ],
)
def test_checker_rejects(mutate: Any) -> None:
    doc = _doc()
    mutate(doc)
    assert emf_check.problems(json.dumps(doc)) != []


def test_checker_rejects_text_around_the_document() -> None:
    assert emf_check.problems("x " + json.dumps(_doc())) != []
    assert emf_check.problems(json.dumps(_doc()) + " trailing") != []
    assert emf_check.problems("[1]") != []
