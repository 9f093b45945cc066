"""The benchmark's own arithmetic: p99, the shortest lifetime caught, and the table's verdicts."""

from __future__ import annotations

from bench.stats import median, p99
from bench.table import Row, failed, render
from bench.transient import shortest_caught


def test_p99_is_the_nearest_rank() -> None:
    assert p99([3.0]) == 3.0
    assert p99([float(v) for v in range(1, 101)]) == 99.0
    # Fewer than 100 values: the largest.
    assert p99([5.0, 1.0, 9.0, 2.0]) == 9.0
    assert median([1.0, 2.0, 10.0]) == 2.0


def test_shortest_caught_needs_every_longer_lifetime_caught() -> None:
    assert shortest_caught({25: 0.0, 50: 1.0, 100: 1.0}) == 50
    # A miss at 100 ms: 50 ms caught by luck does not count.
    assert shortest_caught({25: 0.0, 50: 1.0, 100: 0.8, 250: 1.0}) == 250
    assert shortest_caught({25: 0.5, 1000: 0.9}) is None


def test_verdicts() -> None:
    assert Row("a", "a", 10.0, "ms", "10", 30).status == "pass"
    assert Row("a", "a", 30.0, "ms", "30", 30).status == "pass"
    assert Row("a", "a", 30.5, "ms", "30.5", 30).status == "MISS"
    assert Row("a", "a", 30.5, "ms", "30.5").status == "-"
    # Not measured is an error, whatever the budget; past the range tried is a miss.
    assert failed("a", "a", "ms", "boom", 30).status == "ERROR"
    assert Row("a", "a", None, "ms", "> 1000 ms", 250, beyond_range=True).status == "MISS"
    assert failed("a", "a", "ms", "Traceback\n  line\nValueError: bad").measured == (
        "not measured: ValueError: bad"
    )


def test_render_shows_every_row_once() -> None:
    rows = [Row("a", "first", 1.0, "ms", "1 ms", 2), Row("b", "second", 3.0, "ms", "3 ms", 2)]
    lines = render(rows).splitlines()
    assert len(lines) == 4
    assert "| pass |" in lines[2] and "| MISS |" in lines[3]
