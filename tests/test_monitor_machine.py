"""The per-invocation state machine, fed events by hand (no files, no clock)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import pytest

from tmp_monitor import monitor as m

MIB = 2**20
T0 = 1_700_000_000_000  # wall clock of the monitor's start, ms


@dataclass(frozen=True)
class Purged:
    bytes: int
    files: int
    purged_but_open: int = 0
    dry_run: bool = False


def end(used: int, resident: int = 0, fs_used: int | None = None, files: int = 1) -> m.EndOfRuntime:
    return m.EndOfRuntime(
        tmp_used_bytes=used,
        tmp_files=files,
        tmp_free_bytes=400 * MIB,
        tmp_resident_bytes=resident,
        fs_used_bytes=used if fs_used is None else fs_used,
        extension_rss_bytes=15 * MIB,
    )


def sample(
    t: float, tmp: int = 0, rss: int = 50 * MIB, mem: int | None = 80 * MIB, cpu: int | None = None
) -> m.Sample:
    return m.Sample(t, tmp, rss, mem, cpu)


def report(rid: str, max_mb: int = 100, init: float | None = None) -> m.ReportFacts:
    return m.ReportFacts(rid, "success", 12.5, 13.0, 128, max_mb, init, 26.0)


def run_invocation(
    mon: m.Monitor, rid: str, at: int, used: int, **kw: object
) -> m.InvocationRecord:
    mon.on_invoke(rid, deadline_ms=at + 3000, wall_ms=at, mono_s=at / 1000)
    mon.on_start(rid)
    mon.on_sample(sample(at / 1000 + 0.01, tmp=used))
    assert mon.on_runtime_done(rid, "success")
    rec = mon.close(end(used), None, wall_ms=at + 20, post_runtime_ms=1.5)
    assert rec is not None
    return rec


def test_one_invocation_gives_its_record() -> None:
    mon = m.Monitor(start_wall_ms=T0)
    mon.on_invoke("r1", deadline_ms=T0 + 3100, wall_ms=T0 + 100, mono_s=10.0)
    mon.on_start("r1")
    mon.on_sample(sample(10.01, tmp=40 * MIB, rss=60 * MIB, mem=100 * MIB))
    mon.on_sample(sample(10.02, tmp=5 * MIB, rss=70 * MIB, mem=90 * MIB))
    assert mon.open_request == "r1"
    assert mon.on_runtime_done("r1", "success")
    rec = mon.close(end(2 * MIB, resident=MIB), None, wall_ms=T0 + 150, post_runtime_ms=2.0)
    assert rec is not None
    assert (rec.request_id, rec.invocation, rec.cold_start) == ("r1", 1, True)
    assert rec.timestamp_ms == T0 + 150
    assert rec.environment_age_ms == 150
    assert rec.tmp_peak_bytes == 40 * MIB  # the transient file between two ticks
    assert rec.tmp_used_bytes == 2 * MIB
    assert rec.tmp_delta_bytes == 2 * MIB  # against 0 on the first invocation
    assert rec.function_rss_bytes == 70 * MIB
    assert rec.sandbox_memory_bytes == 100 * MIB
    assert rec.purged_bytes is None
    assert rec.fallback is None
    assert rec.runtime_status == "success"
    assert rec.samples == 2
    assert mon.open_request is None
    assert mon.errors == 0


def test_peak_is_never_below_used() -> None:
    mon = m.Monitor(start_wall_ms=T0)
    mon.on_invoke("r1", T0 + 3000, T0, 0.0)
    mon.on_runtime_done("r1", "success")
    rec = mon.close(end(9 * MIB, fs_used=8 * MIB), None, T0 + 5, 1.0)  # no tick at all
    assert rec is not None
    assert rec.tmp_peak_bytes == 9 * MIB


def test_delta_and_cold_start_across_invocations_with_purge() -> None:
    mon = m.Monitor(start_wall_ms=T0)
    first = run_invocation(mon, "r1", T0 + 100, 10 * MIB)
    second = run_invocation(mon, "r2", T0 + 1000, 20 * MIB)
    assert (first.cold_start, second.cold_start) == (True, False)
    assert (first.invocation, second.invocation) == (1, 2)
    assert second.tmp_delta_bytes == 10 * MIB
    # A purge that frees 15 of 30 MiB leaves 15: the next delta is measured against that.
    mon.on_invoke("r3", T0 + 5000, T0 + 2000, 2.0)
    mon.on_runtime_done("r3", "success")
    rec = mon.close(end(30 * MIB), Purged(15 * MIB, 3, purged_but_open=1), T0 + 2050, 3.0)
    assert rec is not None
    assert (rec.purged_bytes, rec.purged_files, rec.purged_but_open) == (15 * MIB, 3, 1)
    assert run_invocation(mon, "r4", T0 + 3000, 6 * MIB).tmp_delta_bytes == -9 * MIB
    assert mon.lifetime_purged_bytes == 15 * MIB


def test_dry_run_frees_nothing_so_the_delta_ignores_it() -> None:
    mon = m.Monitor(start_wall_ms=T0)
    mon.on_invoke("r1", T0 + 3000, T0, 0.0)
    mon.on_runtime_done("r1", "success")
    mon.close(end(10 * MIB), Purged(10 * MIB, 1, dry_run=True), T0 + 10, 1.0)
    assert run_invocation(mon, "r2", T0 + 100, 10 * MIB).tmp_delta_bytes == 0
    assert mon.lifetime_purged_bytes == 10 * MIB  # what it would have freed


def test_report_joins_its_invocation_once() -> None:
    mon = m.Monitor(start_wall_ms=T0)
    inv = run_invocation(mon, "r1", T0 + 100, 10 * MIB)
    run_invocation(mon, "r2", T0 + 1000, 10 * MIB)
    # r1's resident bytes were 0 in run_invocation; give r3 real residency.
    mon.on_invoke("r3", T0 + 9000, T0 + 2000, 2.0)
    mon.on_runtime_done("r3", "success")
    mon.close(end(10 * MIB, resident=25 * MIB), None, T0 + 2030, 1.0)

    rep = mon.on_report(report("r3", max_mb=100))
    assert rep is not None
    assert rep.invocation == 3
    assert rep.timestamp_ms == T0 + 2030  # time stamped like the invocation it describes
    assert rep.tmp_share_of_max_memory == pytest.approx(25.0)
    assert rep.max_memory_used_mb == 100
    assert rep.extension_overhead_ms == 26.0
    assert mon.on_report(report("r3")) is None  # twice: ignored
    assert mon.on_report(report("never-seen")) is None
    first = mon.on_report(report("r1", init=180.0))
    assert first is not None
    assert first.timestamp_ms == inv.timestamp_ms
    assert first.init_duration_ms == 180.0
    assert mon.pending_reports == 1  # r2
    summary = mon.summary(T0 + 5000)
    assert summary.reports_missing == 1


def test_report_before_the_invocation_closed_is_refused_and_counted() -> None:
    mon = m.Monitor(start_wall_ms=T0)
    mon.on_invoke("r1", T0 + 3000, T0, 0.0)
    assert mon.on_report(report("r1")) is None
    assert mon.errors == 1
    assert mon.open_request == "r1"  # still sampling


def test_zero_max_memory_gives_no_share() -> None:
    mon = m.Monitor(start_wall_ms=T0)
    run_invocation(mon, "r1", T0, MIB)
    rep = mon.on_report(report("r1", max_mb=0))
    assert rep is not None
    assert rep.tmp_share_of_max_memory is None


def test_unreported_invocations_are_bounded_and_counted_missing() -> None:
    mon = m.Monitor(start_wall_ms=T0)
    for i in range(m.MAX_UNREPORTED + 5):
        run_invocation(mon, f"r{i}", T0 + i * 100, MIB)
    assert mon.pending_reports == m.MAX_UNREPORTED
    assert mon.on_report(report("r0")) is None  # forgotten: counted, not kept
    assert mon.summary(T0 + 10**6).reports_missing == m.MAX_UNREPORTED + 5


def test_every_pair_outside_the_table_is_refused() -> None:
    allowed = {
        (m.Phase.OPEN, m.Event.START),
        (m.Phase.OPEN, m.Event.SAMPLE),
        (m.Phase.OPEN, m.Event.RUNTIME_DONE),
        (m.Phase.OPEN, m.Event.CLOSE),
        (m.Phase.DONE, m.Event.SAMPLE),
        (m.Phase.DONE, m.Event.CLOSE),
        (m.Phase.CLOSED, m.Event.REPORT),
    }
    for phase, event in itertools.product(m.Phase, m.Event):
        if (phase, event) in allowed:
            m.advance(phase, event)
        else:
            with pytest.raises(m.TransitionError):
                m.advance(phase, event)


def test_second_runtime_done_is_refused() -> None:
    mon = m.Monitor(start_wall_ms=T0)
    mon.on_invoke("r1", T0 + 3000, T0, 0.0)
    assert mon.on_runtime_done("r1", "success")
    assert not mon.on_runtime_done("r1", "success")
    assert mon.errors == 1


def test_runtime_done_of_an_unknown_request_changes_nothing() -> None:
    mon = m.Monitor(start_wall_ms=T0)
    mon.on_invoke("r1", T0 + 3000, T0, 0.0)
    assert not mon.on_runtime_done("other", "success")
    assert mon.open_request == "r1"
    assert mon.errors == 1


def test_close_without_an_open_invocation_gives_nothing() -> None:
    mon = m.Monitor(start_wall_ms=T0)
    assert mon.close(end(MIB), None, T0, 1.0) is None


# ---- degraded paths ---------------------------------------------------------------------------


def test_lost_runtime_done_detected_when_the_function_is_idle() -> None:
    mon = m.Monitor(start_wall_ms=T0)
    mon.on_invoke("r1", deadline_ms=T0 + 60_000, wall_ms=T0, mono_s=0.0)
    assert mon.needs_cpu(0.5)  # with or without platform.start (telemetry may lag as a whole)
    mon.on_start("r1")
    mon.on_sample(sample(0.5, cpu=100))
    assert not mon.needs_cpu(0.55)  # read at most every CPU_READ_INTERVAL_S
    mon.on_sample(sample(1.0, cpu=130))  # busy: not stalled
    assert not mon.stalled(T0 + 1000, 1.0)
    mon.on_sample(sample(2.5, cpu=130))
    assert not mon.stalled(T0 + 2500, 2.5)
    mon.on_sample(sample(3.0, cpu=130))  # idle for IDLE_LIMIT_MS
    assert mon.stalled(T0 + 3000, 3.0)
    rec = mon.close(end(MIB), None, T0 + 3000, 0.5, fallback=m.FALLBACK_RUNTIME_DONE_MISSING)
    assert rec is not None
    assert rec.fallback == m.FALLBACK_RUNTIME_DONE_MISSING
    assert mon.runtime_done_missing == 1
    assert mon.summary(T0 + 3500).runtime_done_missing == 1
    # ... and the runtimeDone shows up late after all: not lost, and the limit doubles.
    assert not mon.on_runtime_done("r1", "success")
    assert mon.idle_limit_ms == 2 * m.IDLE_LIMIT_MS
    assert mon.errors == 0
    assert mon.summary(T0 + 4000).runtime_done_missing == 0


def test_busy_function_without_runtime_done_is_closed_before_its_deadline() -> None:
    mon = m.Monitor(start_wall_ms=T0)
    mon.on_invoke("r1", deadline_ms=T0 + 3000, wall_ms=T0, mono_s=0.0)
    # No CPU readings (a busy function's would change): only the deadline rule applies.
    assert not mon.stalled(T0 + 2600, 2.6)
    assert mon.stalled(T0 + 2700, 2.7)  # 10 % of 3 s = 300 ms before the deadline
    mon.close(end(MIB), None, T0 + 2700, 0.5, fallback=m.FALLBACK_RUNTIME_DONE_MISSING)
    # The function was running to its timeout: the late runtimeDone keeps the idle limit.
    assert not mon.on_runtime_done("r1", "timeout")
    assert mon.idle_limit_ms == m.IDLE_LIMIT_MS
    assert mon.runtime_done_missing == 0
    # Short timeouts keep at least 250 ms, long ones at most 1 s.
    mon2 = m.Monitor(start_wall_ms=T0)
    mon2.on_invoke("r", deadline_ms=T0 + 900_000, wall_ms=T0, mono_s=0.0)
    assert not mon2.stalled(T0 + 898_900, 898.9)
    assert mon2.stalled(T0 + 899_000, 899.0)


def test_silent_telemetry_and_an_idle_function_close_the_invocation() -> None:
    # Telemetry held back until the invocation ends: no platform.start, and the function idle.
    mon = m.Monitor(start_wall_ms=T0)
    mon.on_invoke("r1", deadline_ms=T0 + 10_000, wall_ms=T0, mono_s=0.0)
    mon.on_sample(sample(0.1, cpu=50))
    assert not mon.stalled(T0 + 1000, 1.0)
    mon.on_sample(sample(2.1, cpu=50))
    assert mon.stalled(T0 + 2100, 2.1)


def test_after_runtime_done_nothing_is_stalled() -> None:
    mon = m.Monitor(start_wall_ms=T0)
    mon.on_invoke("r1", deadline_ms=T0 + 3000, wall_ms=T0, mono_s=0.0)
    mon.on_runtime_done("r1", "timeout")
    assert not mon.stalled(T0 + 2999, 2.999)


def test_telemetry_unavailable_closes_at_the_next_event() -> None:
    mon = m.Monitor(start_wall_ms=T0)
    mon.on_invoke("r1", T0 + 3000, T0, 0.0)
    mon.on_sample(sample(0.01, tmp=3 * MIB))
    rec = mon.close(end(3 * MIB), None, T0 + 900, 0.0, fallback=m.FALLBACK_NO_TELEMETRY)
    assert rec is not None
    assert rec.fallback == m.FALLBACK_NO_TELEMETRY
    assert rec.runtime_status is None
    assert mon.runtime_done_missing == 0  # not lost: never expected


def test_summary_reason_and_counts() -> None:
    mon = m.Monitor(start_wall_ms=T0)
    run_invocation(mon, "r1", T0 + 100, 50 * MIB)
    run_invocation(mon, "r2", T0 + 200, MIB)
    mon.on_report(report("r1"))
    mon.on_shutdown("SPINDOWN")
    s = mon.summary(T0 + 10_000)
    assert s.shutdown_reason == "spindown"
    assert (s.invocations, s.invocation) == (2, 2)
    assert s.lifetime_tmp_peak_bytes == 50 * MIB
    assert s.reports_missing == 1
    assert s.environment_age_ms == 10_000


def test_environment_window_for_multi_concurrency() -> None:
    mon = m.Monitor(start_wall_ms=T0)
    assert mon.close_window(T0, 10 * MIB, 0) is None  # nothing sampled yet
    mon.on_sample(sample(1.0, tmp=4 * MIB, rss=10 * MIB))
    mon.on_sample(sample(2.0, tmp=2 * MIB, rss=30 * MIB, mem=None))
    rec = mon.close_window(T0 + 60_000, 12 * MIB, 100 * MIB)
    assert rec is not None
    assert (rec.tmp_peak_bytes, rec.function_rss_bytes, rec.samples) == (4 * MIB, 30 * MIB, 2)
    assert rec.sandbox_memory_bytes == 80 * MIB
    assert mon.close_window(T0 + 120_000, 12 * MIB, 0) is None
