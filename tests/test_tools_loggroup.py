"""`tmp-monitor report --log-group`: reading a CloudWatch Logs group (moto) over several pages."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from tmp_monitor_tools import cli, report, sources

DATA = Path(__file__).parent / "data" / "tools"
GROUP = "/aws/lambda/tmp-writer"


def fixture_events() -> list[dict[str, Any]]:
    text = DATA.joinpath("cloudwatch-purge.json").read_text()
    decoder = json.JSONDecoder()
    events, pos = [], 0
    while pos < len(text.rstrip()):
        page, pos = decoder.raw_decode(text, pos)
        events += page["events"]
        pos += 1
    return events


@pytest.fixture
def logs(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A log group holding the fixture's two log streams, moved to the last ten minutes."""
    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}.items():
        monkeypatch.setenv(key, value)
    with mock_aws():
        client = boto3.client("logs", region_name="eu-west-1")
        client.create_log_group(logGroupName=GROUP)
        events = fixture_events()
        shift = int(time.time() * 1000) - 600_000 - min(e["timestamp"] for e in events)
        for stream in sorted({e["logStreamName"] for e in events}):
            client.create_log_stream(logGroupName=GROUP, logStreamName=stream)
            mine = sorted(
                (e for e in events if e["logStreamName"] == stream), key=lambda e: e["timestamp"]
            )
            client.put_log_events(
                logGroupName=GROUP,
                logStreamName=stream,
                logEvents=[
                    {"timestamp": e["timestamp"] + shift, "message": e["message"]} for e in mine
                ],
            )
        yield client


def summary(rows: tuple[report.Row, ...]) -> list[tuple[Any, ...]]:
    return [(r.stream, r.invocation, r.max_memory_used_mb, r.max_memory_source) for r in rows]


def test_a_log_group_read_spans_pages_and_gives_the_rows_of_the_same_events(logs: Any) -> None:
    pages: list[sources.Progress] = []
    now = int(time.time() * 1000)
    got = sources.read_log_group(
        logs, GROUP, now - 3_600_000, now, on_page=pages.append, page_size=3
    )
    total = len(fixture_events())
    assert len(pages) == -(-total // 3) >= 5  # every page of three events was asked for
    assert pages[-1].events == total
    assert [p.pages for p in pages] == list(range(1, len(pages) + 1))
    assert 0 < pages[-1].fraction <= 1
    expected = report.build(sources.read_file(DATA / "cloudwatch-purge.json")).rows
    assert summary(report.build(got).rows) == summary(expected)


def test_report_command_reads_a_log_group(logs: Any) -> None:
    out = io.StringIO()
    assert cli.main(["report", "--log-group", GROUP, "--since", "1h", "--region", "eu-west-1",
                     "--json"], out) == 0  # fmt: skip
    body = json.loads(out.getvalue())
    assert [r["max_memory_used_mb"] for r in body["invocations"]] == [70, 72, 71, 73]


def test_a_window_after_the_events_finds_nothing(
    logs: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    # The events are ten minutes old: the last five minutes hold none of them.
    out = io.StringIO()
    assert cli.main(["report", "--log-group", GROUP, "--since", "5m", "--region", "eu-west-1"],
                    out) == 1  # fmt: skip
    assert f"{GROUP}: no tmp-monitor documents" in capsys.readouterr().err


def test_the_progress_bar_draws_on_a_terminal_only() -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    term, pipe = Terminal(), io.StringIO()
    for stream in (term, pipe):
        bar = cli._ProgressBar(stream, "reading g")
        bar(sources.Progress(pages=1, events=10, fraction=0.1))
        bar(sources.Progress(pages=2, events=20, fraction=0.5))
        bar.done()
    assert term.getvalue() == f"\rreading g [{'#' * 15}{'.' * 15}]  50% 2 pages, 20 events\n"
    assert pipe.getvalue() == ""


def test_a_missing_log_group_is_an_aws_error_not_a_traceback(
    logs: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    out = io.StringIO()
    args = ["report", "--log-group", "/aws/lambda/nope", "--region", "eu-west-1"]
    assert cli.main(args, out) == 3
    err = capsys.readouterr().err
    assert err.startswith("tmp-monitor report: /aws/lambda/nope:") and "ResourceNotFound" in err
