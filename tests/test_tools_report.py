"""`tmp-monitor report` over the three kinds of file: rows, joins, outputs and bad input."""

from __future__ import annotations

import csv
import gzip
import io
import json
from pathlib import Path

import pytest

from tmp_monitor_tools import cli, report, sources

DATA = Path(__file__).parent / "data" / "tools"
MIB = 1 << 20
TELEMETRY = DATA / "sandbox-no-purge.jsonl"
CLOUDWATCH = DATA / "cloudwatch-purge.json"
EXPORT = DATA / "export-stream.log"


def run(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    code = cli.main(list(argv), out=out)
    return code, out.getvalue()


def build(path: Path) -> report.Report:
    return report.build(sources.read_file(path))


def test_telemetry_file_gives_one_row_per_invocation_with_the_monitors_figures() -> None:
    rows = build(TELEMETRY).rows
    assert [r.invocation for r in rows] == [1, 2, 3]
    assert [r.max_memory_used_mb for r in rows] == [72, 82, 93]
    assert {r.max_memory_source for r in rows} == {"monitor"}
    assert [r.tmp_used_bytes for r in rows] == [10 * MIB + 4096, 20 * MIB + 8192, 30 * MIB + 12288]
    assert [r.tmp_resident_bytes for r in rows] == [10 * MIB, 20 * MIB, 30 * MIB]
    assert [r.function_rss_bytes for r in rows] == [40 * MIB, 41 * MIB, 41 * MIB]
    assert [r.monitor_rss_bytes for r in rows] == [14 * MIB, 14 * MIB, 15 * MIB]
    assert rows[0].tmp_share_percent == pytest.approx(100 * 10 / 72, abs=0.01)
    assert all(r.purged_bytes is None for r in rows)
    # The function's own EMF (namespace App) and the monitor's stderr line are not rows.
    assert len({r.request_id for r in rows}) == 3


def test_table_shows_every_column_in_human_units() -> None:
    code, text = run("report", str(TELEMETRY))
    assert code == 0
    header, *lines = text.splitlines()
    for column in report.COLUMNS:
        assert column in header
    assert lines[0].split() == [
        "1", "10.0", "MiB", "10.0", "MiB", "10.0", "MiB", "40.0", "MiB", "14.0", "MiB",
        "72", "MB", "13.9", "%", "-",
    ]  # fmt: skip
    assert "3 invocations" in text
    assert "shutdown spindown" in text


def test_a_missing_report_document_falls_back_to_the_platform_report(tmp_path: Path) -> None:
    lines = TELEMETRY.read_text().splitlines()
    kept = [ln for ln in lines if '\\"document\\": \\"report\\"' not in ln or "000003" not in ln]
    assert len(kept) == len(lines) - 1
    path = tmp_path / "run.jsonl"
    path.write_text("\n".join(kept) + "\n")
    rows = build(path).rows
    assert [r.max_memory_used_mb for r in rows] == [72, 82, 93]
    assert [r.max_memory_source for r in rows] == ["monitor", "monitor", "platform"]
    # The share is then computed from the platform's figure: resident 30 MiB over 93 MB.
    assert rows[2].tmp_share_percent == pytest.approx(100 * 30 / 93)
    assert run("report", str(path))[0] == 0
    text = run("report", str(path))[1]
    assert "93 MB*" in text and "from the platform's report" in text


def test_each_init_start_begins_a_new_environment_in_a_telemetry_file(tmp_path: Path) -> None:
    # Two environments one after the other (the sandbox starts a new one after a crash):
    # invocation numbers and even request ids repeat, and rows stay apart.
    path = tmp_path / "two.jsonl"
    path.write_text(TELEMETRY.read_text() * 2)
    result = build(path)
    assert [(r.environment, r.invocation) for r in result.rows] == [
        (1, 1), (1, 2), (1, 3), (2, 1), (2, 2), (2, 3),
    ]  # fmt: skip
    assert [e.stream for e in result.environments] == [
        f"{path} (environment 1)",
        f"{path} (environment 2)",
    ]


def test_several_files_keep_their_environments_apart(tmp_path: Path) -> None:
    copy = tmp_path / "again.jsonl"
    copy.write_text(TELEMETRY.read_text())
    code, text = run("report", "--json", str(TELEMETRY), str(copy))
    assert code == 0
    body = json.loads(text)
    assert [r["invocation"] for r in body["invocations"]] == [1, 2, 3, 1, 2, 3]
    assert [e["invocations"] for e in body["environments"]] == [3, 3]


def test_cloudwatch_events_join_per_log_stream() -> None:
    result = build(CLOUDWATCH)
    got = [
        (r.environment, r.invocation, r.max_memory_used_mb, r.max_memory_source)
        for r in result.rows
    ]
    assert got == [
        (1, 1, 70, "monitor"),
        (1, 2, 72, "monitor"),
        (2, 1, 71, "monitor"),
        (2, 2, 73, "platform"),  # from the REPORT line: the report document never came
    ]
    assert [e.stream for e in result.environments] == [
        "2026/12/07/[$LATEST]aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        "2026/12/07/[$LATEST]bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb",
    ]
    assert all(r.purged_bytes == 10 * MIB + 4096 and r.purged_files == 1 for r in result.rows)
    code, text = run("report", str(CLOUDWATCH))
    assert code == 0 and text.splitlines()[0].split()[0] == "env"


def test_log_export_plain_and_gzipped_gives_the_rows_of_its_stream(tmp_path: Path) -> None:
    wanted = [(r.invocation, r.max_memory_used_mb) for r in build(CLOUDWATCH).rows][:2]
    assert [(r.invocation, r.max_memory_used_mb) for r in build(EXPORT).rows] == wanted
    gz = tmp_path / "000000.gz"
    gz.write_bytes(gzip.compress(EXPORT.read_bytes()))
    assert [(r.invocation, r.max_memory_used_mb) for r in build(gz).rows] == wanted


def test_json_log_format_platform_report_is_read(tmp_path: Path) -> None:
    page = json.loads(CLOUDWATCH.read_text().split("\n}\n")[1] + "\n}")
    rid = "22222222-0000-4000-8000-00000000000d"
    for event in page["events"]:
        if event["message"].startswith("REPORT"):
            event["message"] = json.dumps(
                {
                    "time": "2026-12-07T23:01:01.546Z",
                    "type": "platform.report",
                    "record": {"requestId": rid, "metrics": {"maxMemoryUsedMB": 99}},
                }
            )
    path = tmp_path / "page.json"
    path.write_text(json.dumps(page))
    (row,) = [r for r in build(path).rows if r.request_id == rid]
    assert (row.max_memory_used_mb, row.max_memory_source) == (99, "platform")


def test_a_document_delivered_twice_is_one_row(tmp_path: Path) -> None:
    lines = TELEMETRY.read_text().splitlines()
    doubled = [x for ln in lines for x in ([ln, ln] if '\\"invocation\\"' in ln else [ln])]
    path = tmp_path / "twice.jsonl"
    path.write_text("\n".join(doubled) + "\n")
    assert [r.invocation for r in build(path).rows] == [1, 2, 3]


def test_csv_and_json_hold_raw_numbers() -> None:
    code, text = run("report", "--csv", str(TELEMETRY))
    assert code == 0
    records = list(csv.DictReader(io.StringIO(text)))
    assert [float(r["tmp_used_bytes"]) for r in records] == [
        10 * MIB + 4096, 20 * MIB + 8192, 30 * MIB + 12288,
    ]  # fmt: skip
    assert [r["purged_bytes"] for r in records] == ["", "", ""]
    code, text = run("report", "--json", str(CLOUDWATCH))
    body = json.loads(text)
    assert [r["max_memory_used_mb"] for r in body["invocations"]] == [70, 72, 71, 73]
    assert len(body["environments"]) == 2


def bad_input(path: Path, capsys: pytest.CaptureFixture[str]) -> str:
    code, text = run("report", str(path))
    assert code == 2
    assert text == ""
    return capsys.readouterr().err


def test_a_broken_telemetry_line_is_named(capsys: pytest.CaptureFixture[str]) -> None:
    err = bad_input(DATA / "bad-telemetry.jsonl", capsys)
    assert f"{DATA / 'bad-telemetry.jsonl'}:7: not JSON" in err


def test_an_event_without_a_message_is_named_at_its_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = DATA / "bad-events.json"
    err = bad_input(path, capsys)
    # The fifth event of the page, whose object opens on line 31 of the file.
    assert path.read_text().splitlines()[30].strip() == "{"
    assert f"{path}:31: log event without" in err


def test_a_broken_emf_line_of_an_export_is_named(capsys: pytest.CaptureFixture[str]) -> None:
    err = bad_input(DATA / "bad-export.log", capsys)
    assert f"{DATA / 'bad-export.log'}:2: broken EMF document" in err


@pytest.mark.parametrize(
    ("content", "where", "what"),
    [
        ('{"events": [\n  {"timestamp": 1, "message": "x"},\n', ":3:", "unexpected end"),
        ('{"events": [\n  {"timestamp": 1, "message": "x"}\n  oops]}\n', ":3:", "not JSON"),
        ('{"time": "t", "type": "extension", "record": "x"}\n[1, 2]\n', ":2:", "telemetry event"),
        ("just some text\nand more\n", ":1:", "not a telemetry file"),
        ("\n\n", ": empty file", ""),
        (b"\xff\xfe", ":1:", "not UTF-8"),
    ],
)
def test_unreadable_files_fail_with_the_place(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str | bytes, where: str, what: str
) -> None:
    path = tmp_path / "input"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    err = bad_input(path, capsys)
    assert f"{path}{where}" in err and what in err


def test_a_document_without_request_id_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    doc = {"_aws": {"Timestamp": 1, "CloudWatchMetrics": []}, "document": "invocation"}
    path = tmp_path / "export.log"
    path.write_text(f"2026-12-07T23:00:00.000Z START\n2026-12-07T23:00:00.001Z {json.dumps(doc)}\n")
    assert f"{path}:2: invocation document without requestId" in bad_input(path, capsys)


def test_a_missing_file_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    err = bad_input(tmp_path / "nope.jsonl", capsys)
    assert f"{tmp_path / 'nope.jsonl'}: No such file" in err


def test_a_file_without_documents_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "export.log"
    path.write_text("2026-12-07T23:00:00.000Z START RequestId: x Version: $LATEST\n")
    assert run("report", str(path)) == (1, "")
    assert f"{path}: no tmp-monitor documents" in capsys.readouterr().err


def test_multi_concurrency_environment_samples_are_not_invocations(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    doc = {
        "_aws": {"Timestamp": 1, "CloudWatchMetrics": []},
        "document": "environment",
        "TmpPeakBytes": [1.0],
    }
    path = tmp_path / "export.log"
    path.write_text(f"2026-12-07T23:00:00.000Z {json.dumps(doc)}\n" * 2)
    assert run("report", str(path)) == (1, "")
    assert "only 2 environment-level samples" in capsys.readouterr().err
    mixed = tmp_path / "mixed.log"
    mixed.write_text(EXPORT.read_text() + path.read_text())
    code, text = run("report", str(mixed))
    assert code == 0 and "2 environment-level samples not shown" in text


def test_since_takes_durations_and_iso_times() -> None:
    now = sources.datetime(2026, 12, 7, 23, 0, tzinfo=sources.UTC)
    assert sources.parse_since("90m", now) == sources.datetime(
        2026, 12, 7, 21, 30, tzinfo=sources.UTC
    )
    assert sources.parse_since("2d", now).day == 5
    assert sources.parse_since("2026-12-07T22:00:00", now).hour == 22
    with pytest.raises(ValueError, match="--since 'soon'"):
        sources.parse_since("soon", now)


def test_an_invocation_without_its_invocation_document_still_has_its_max_memory(
    tmp_path: Path,
) -> None:
    # An environment killed at the end of the runtime: the report came, the document did not.
    lines = TELEMETRY.read_text().splitlines()
    kept = [
        ln for ln in lines if '\\"document\\": \\"invocation\\"' not in ln or "000002" not in ln
    ]
    assert len(kept) == len(lines) - 1
    path = tmp_path / "run.jsonl"
    path.write_text("\n".join(kept) + "\n")
    rows = build(path).rows
    assert [r.invocation for r in rows] == [1, 2, 3]
    assert (rows[1].tmp_used_bytes, rows[1].max_memory_used_mb) == (None, 82)
    text = run("report", str(path))[1]
    assert text.splitlines()[2].split()[:3] == ["2", "-", "-"]
    assert "no invocation document for some invocations" in text
