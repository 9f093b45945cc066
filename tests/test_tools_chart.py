"""The report's chart: the series it draws (checked as numbers), and the PNG it writes."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from matplotlib import image

from tmp_monitor_tools import chart, cli, report, sources

DATA = Path(__file__).parent / "data" / "tools"
MIB = 1 << 20


def rows(name: str) -> tuple[report.Row, ...]:
    return report.build(sources.read_file(DATA / name)).rows


def test_series_stack_the_parts_of_max_memory_used_per_invocation() -> None:
    data = chart.series(rows("sandbox-no-purge.jsonl"))
    assert data.labels == ("1", "2", "3")
    assert data.function_rss == (40, 41, 41)
    assert data.tmp_resident == (10, 20, 30)
    assert data.monitor_rss == (14, 14, 15)
    # Max Memory Used 72, 82, 93 MB: the rest is what the three parts leave.
    assert data.rest == (72 - 64, 82 - 75, 93 - 86)
    assert data.overlap == (0, 0, 0)
    assert data.max_memory_used == (72, 82, 93)
    for i in range(3):
        stacked = data.function_rss[i] + data.tmp_resident[i] + data.monitor_rss[i] + data.rest[i]
        assert stacked == data.max_memory_used[i]
    assert data.tmp_used == pytest.approx(
        (10 + 4096 / MIB, 20 + 8192 / MIB, 30 + 12288 / MIB), rel=1e-12
    )
    assert data.memory_size == 256


def test_the_rest_never_goes_below_zero_and_a_missing_max_is_none() -> None:
    base = rows("sandbox-no-purge.jsonl")[0]
    over = report.Row(**{**base.__dict__, "max_memory_used_mb": 50.0})
    missing = report.Row(**{**base.__dict__, "max_memory_used_mb": None, "invocation": 2})
    data = chart.series([over, missing])
    assert data.rest == (0.0, 0.0)
    assert data.overlap == (40 + 10 + 14 - 50, 0.0)  # parts 64 MiB over a 50 MB mark
    assert data.max_memory_used == (50.0, None)
    assert data.function_rss == (40, 40)


def test_labels_name_the_environment_when_there_are_several() -> None:
    data = chart.series(rows("cloudwatch-purge.json"))
    assert data.labels == ("1.1", "1.2", "2.1", "2.2")
    assert data.max_memory_used == (70, 72, 71, 73)


def test_report_png_is_a_picture_of_the_chart(tmp_path: Path) -> None:
    png = tmp_path / "chart.png"
    out = io.StringIO()
    assert cli.main(["report", str(DATA / "sandbox-no-purge.jsonl"), "--png", str(png)], out) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    height, width, _ = image.imread(png).shape
    assert width > height > 300
    assert "Max Memory Used" in out.getvalue()  # the table is printed as well


def test_two_panels_share_one_figure(tmp_path: Path) -> None:
    one, two = tmp_path / "one.png", tmp_path / "two.png"
    data = chart.series(rows("sandbox-no-purge.jsonl"))
    chart.draw(one, [("run", data)])
    chart.draw(two, [("without purge", data), ("with purge", data)])
    assert image.imread(two).shape[1] > 1.5 * image.imread(one).shape[1]
