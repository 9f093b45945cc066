"""`tmp-monitor dashboard`: the widgets, the metrics they name, and put/get through moto."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from tmp_monitor import names
from tmp_monitor_tools import cli, dashboard

EMITTED = names.INVOCATION_METRICS | names.REPORT_METRICS | names.SUMMARY_METRICS
CORE = {name for name, (_, core) in EMITTED.items() if core}

WIDGETS_CORE = {
    "Max Memory Used and its parts (MiB)",
    "/tmp used and peak (MiB)",
    "Purged from /tmp (MiB)",
    "The monitor's own cost",
    "The monitor's own time (ms, from the logs)",
    "/tmp share of Max Memory Used (%)",
    "Environments at shutdown",
}


def config(**kw: Any) -> dashboard.Config:
    return dashboard.Config(**{"function_name": "tmp-writer", "region": "eu-west-1", **kw})


def metric_entries(body: dict[str, Any]) -> Iterator[tuple[str, list[Any]]]:
    for widget in body["widgets"]:
        for entry in widget["properties"].get("metrics", []):
            if not isinstance(entry[0], dict):  # metric math has no namespace
                yield widget["properties"]["title"], entry


def metric_names(body: dict[str, Any]) -> dict[str, set[str]]:
    by_widget: dict[str, set[str]] = {}
    for title, entry in metric_entries(body):
        by_widget.setdefault(title, set()).add(entry[1])
    return by_widget


def test_core_dashboard_has_every_widget_and_names_only_core_metrics() -> None:
    body = dashboard.build_body(config())
    titles = {w["properties"].get("title") for w in body["widgets"] if w["type"] != "text"}
    assert titles == WIDGETS_CORE
    assert [w["type"] for w in body["widgets"]].count("text") == 1
    by_widget = metric_names(body)
    assert by_widget["Max Memory Used and its parts (MiB)"] == {
        names.MAX_MEMORY_USED_MB,
        names.FUNCTION_RSS_BYTES,
        names.TMP_RESIDENT_BYTES,
        names.EXTENSION_RSS_BYTES,
    }
    assert by_widget["/tmp used and peak (MiB)"] == {names.TMP_USED_BYTES, names.TMP_PEAK_BYTES}
    assert by_widget["Purged from /tmp (MiB)"] == {names.PURGED_BYTES, names.PURGED_FILES}
    assert by_widget["The monitor's own cost"] == {names.EXTENSION_RSS_BYTES}
    assert by_widget["/tmp share of Max Memory Used (%)"] == {names.TMP_SHARE_OF_MAX_MEMORY}
    named = set().union(*by_widget.values())
    # Only the core set is made of CloudWatch metrics by default: a widget on any other name
    # would stay empty.
    assert named <= CORE
    assert CORE - named == set()


def test_core_dashboard_reads_the_monitors_time_from_the_log_group() -> None:
    body = dashboard.build_body(config())
    (log,) = [w for w in body["widgets"] if w["type"] == "log"]
    query = log["properties"]["query"]
    assert query.startswith("SOURCE '/aws/lambda/tmp-writer'")
    assert names.POST_RUNTIME_MS in query and names.EXTENSION_OVERHEAD_MS in query
    assert log["properties"]["region"] == "eu-west-1"
    custom = dashboard.build_body(
        config(
            log_group="/custom/logs",
            function_version="7",
            dimensions=("FunctionName", "FunctionVersion"),
        )
    )
    (log,) = [w for w in custom["widgets"] if w["type"] == "log"]
    assert log["properties"]["query"].startswith("SOURCE '/custom/logs'")
    assert 'functionVersion = "7"' in log["properties"]["query"]


def test_all_dashboard_charts_the_all_set_and_still_names_only_emitted_metrics() -> None:
    body = dashboard.build_body(config(metrics="all"))
    by_widget = metric_names(body)
    assert {names.POST_RUNTIME_MS, names.EXTENSION_OVERHEAD_MS} <= by_widget[
        "The monitor's own cost"
    ]
    named = set().union(*by_widget.values())
    assert named <= EMITTED.keys()
    assert named == EMITTED.keys()  # every metric the monitor can emit has a chart
    assert not [w for w in body["widgets"] if w["type"] == "log"]


@pytest.mark.parametrize(
    ("kw", "dims"),
    [
        ({}, ["FunctionName", "tmp-writer"]),
        ({"namespace": "Acme/Tmp"}, ["FunctionName", "tmp-writer"]),
        (
            {"dimensions": ("FunctionName", "FunctionVersion")},
            ["FunctionName", "tmp-writer"],  # the FunctionName set is emitted in both modes
        ),
        (
            {"dimensions": ("FunctionName", "FunctionVersion"), "function_version": "$LATEST"},
            ["FunctionName", "tmp-writer", "FunctionVersion", "$LATEST"],
        ),
    ],
)
def test_every_metric_has_the_configured_namespace_and_dimensions(
    kw: dict[str, Any], dims: list[str]
) -> None:
    cfg = config(**kw)
    body = dashboard.build_body(cfg)
    entries = list(metric_entries(body))
    assert entries
    for _, entry in entries:
        assert entry[0] == cfg.namespace
        assert entry[2:-1] == dims
        assert isinstance(entry[-1], dict)


def test_math_expressions_refer_to_hidden_metrics_of_the_same_widget() -> None:
    body = dashboard.build_body(config(metrics="all"))
    for widget in body["widgets"]:
        entries = widget["properties"].get("metrics", [])
        ids = {e[-1]["id"] for e in entries if not isinstance(e[0], dict) and "id" in e[-1]}
        every_id = [e[-1]["id"] for e in entries if "id" in e[-1]]
        assert len(every_id) == len(set(every_id))
        for entry in entries:
            if isinstance(entry[0], dict):
                raw = entry[0]["expression"].split("/")[0]
                assert raw in ids
                assert entry[0]["expression"] == f"{raw}/1048576"
                assert entry[0]["id"][0].islower()


def test_widgets_tile_the_24_column_grid_without_overlap() -> None:
    for metrics in ("core", "all"):
        cells: set[tuple[int, int]] = set()
        for w in dashboard.build_body(config(metrics=metrics))["widgets"]:
            assert w["x"] >= 0 and w["x"] + w["width"] <= 24
            mine = {
                (x, y)
                for x in range(w["x"], w["x"] + w["width"])
                for y in range(w["y"], w["y"] + w["height"])
            }
            assert not mine & cells
            cells |= mine


def test_memory_size_becomes_an_annotation_and_none_without_it() -> None:
    assert all("annotations" not in w["properties"] for w in dashboard.build_body(config())[
        "widgets"][:2])  # fmt: skip
    (memory, *_) = [
        w
        for w in dashboard.build_body(config(memory_size_mb=256))["widgets"]
        if w["type"] == "metric"
    ]
    assert memory["properties"]["annotations"]["horizontal"][0]["value"] == 256


def run(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    return cli.main(list(argv), out=out), out.getvalue()


def test_print_writes_the_body_without_aws() -> None:
    code, text = run(
        "dashboard", "--function-name", "tmp-writer", "--region", "eu-west-1", "--print",
        "--namespace", "Acme", "--dimensions", "FunctionName,FunctionVersion",
        "--function-version", "3", "--metrics", "all", "--memory-size", "512",
    )  # fmt: skip
    assert code == 0
    assert json.loads(text) == dashboard.build_body(
        config(
            namespace="Acme",
            dimensions=("FunctionName", "FunctionVersion"),
            function_version="3",
            metrics="all",
            memory_size_mb=512,
        )
    )


def test_a_version_without_the_version_dimension_is_refused(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, _ = run(
        "dashboard", "--function-name", "f", "--region", "eu-west-1", "--function-version", "3",
        "--print",
    )  # fmt: skip
    assert code == 2
    assert "FunctionName,FunctionVersion" in capsys.readouterr().err


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "eu-west-1",
    }.items():
        monkeypatch.setenv(key, value)
    with mock_aws():
        yield


@pytest.mark.usefixtures("aws")
def test_dashboard_goes_through_put_dashboard_and_comes_back() -> None:
    code, text = run("dashboard", "--function-name", "tmp-writer", "--region", "eu-west-1")
    assert code == 0
    assert "dashboard tmp-monitor-tmp-writer saved" in text
    client = boto3.client("cloudwatch", region_name="eu-west-1")
    stored = client.get_dashboard(DashboardName="tmp-monitor-tmp-writer")
    assert json.loads(stored["DashboardBody"]) == dashboard.build_body(config())
    # Run again with another namespace: the same dashboard is updated, not duplicated.
    code, _ = run(
        "dashboard", "--function-name", "tmp-writer", "--region", "eu-west-1",
        "--namespace", "Other",
    )  # fmt: skip
    assert code == 0
    listed = client.list_dashboards()["DashboardEntries"]
    assert [d["DashboardName"] for d in listed] == ["tmp-monitor-tmp-writer"]
    body = json.loads(client.get_dashboard(DashboardName="tmp-monitor-tmp-writer")["DashboardBody"])
    assert {e[0] for _, e in metric_entries(body)} == {"Other"}


@pytest.mark.usefixtures("aws")
def test_dashboard_name_and_version_suffix() -> None:
    code, _ = run(
        "dashboard", "--function-name", "f", "--dimensions", "FunctionName,FunctionVersion",
        "--function-version", "$LATEST",
    )  # fmt: skip
    assert code == 0
    client = boto3.client("cloudwatch", region_name="eu-west-1")
    assert client.get_dashboard(DashboardName="tmp-monitor-f-LATEST")["DashboardBody"]
    code, _ = run("dashboard", "--function-name", "f", "--dashboard-name", "mine")
    assert code == 0
    assert client.get_dashboard(DashboardName="mine")["DashboardBody"]
