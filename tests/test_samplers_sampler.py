"""The sampler over the readers, and the adaptive sampling period (SPEC 8)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tmp_monitor import cgroup, procfs, sampler

FIXTURES = Path(__file__).parent / "fixtures"
PAGE = os.sysconf("SC_PAGE_SIZE")


@pytest.mark.parametrize("memory_mb", [128, 256, 512, 1024, 1769, 3008, 10240])
def test_adaptive_period_keeps_the_cost_and_transient_budgets(memory_mb: int) -> None:
    period = sampler.adaptive_period_ms(memory_mb)
    share = memory_mb / 1769  # of one CPU
    cost = sampler.TICK_CPU_MS / period  # of one CPU
    assert cost <= 0.02 * share + 1e-9 or period == sampler.PERIOD_RANGE_MS[0]
    # Ticks at most the transient lifetime apart: 250 ms at 128 MB, 100 ms at 1,769 MB.
    if memory_mb <= 128:
        assert period <= 250 * 0.9
    if memory_mb >= 1769:
        assert period <= 100 * 0.9
    assert sampler.PERIOD_RANGE_MS[0] <= period <= sampler.PERIOD_RANGE_MS[1]


def test_adaptive_period_figures() -> None:
    assert sampler.adaptive_period_ms(1769) == pytest.approx(15.0)
    assert sampler.adaptive_period_ms(128) == pytest.approx(207.3, abs=0.1)
    # A costlier tick would break the 128 MB transient bound: the bound wins.
    assert sampler.adaptive_period_ms(128, tick_cpu_ms=1.0) == pytest.approx(225.0)


def test_missing_cgroup_switches_to_summed_rss_and_says_so_once(tmp_path: Path) -> None:
    said: list[str] = []
    # The fixture /proc has no mountinfo: no memory cgroup can be found.
    proc = str(FIXTURES / "proc")
    s = sampler.Sampler(tmp_root=str(tmp_path), proc_root=proc, warn=said.append, own_pid=100)
    assert s.memory_source == sampler.SOURCE_RSS
    first = s.tick(0.0, new_census=True)
    s.tick(1.0)
    assert len(said) == 1 and "cgroup" in said[0]
    function = (10000 + 256) * PAGE  # 200, 201 (600 is a zombie)
    others = (3000 + 1000 + 100 + 64) * PAGE  # 100, 300, 301, 500
    assert first.function_rss_bytes == function
    assert first.sandbox_memory_bytes == function + others
    assert first.tmp_used_bytes is not None


def test_this_machines_cgroup_is_the_source(tmp_path: Path) -> None:
    s = sampler.Sampler(tmp_root=str(tmp_path), proc_root="/proc")
    assert s.memory_source in ("cgroup1", "cgroup2")
    sample = s.tick(0.0, new_census=True)
    assert sample.sandbox_memory_bytes is not None
    assert sample.sandbox_memory_bytes > 0


def test_baseline_takes_off_the_empty_file_systems_blocks(tmp_path: Path) -> None:
    (tmp_path / "left-over.bin").write_bytes(os.urandom(2**20))
    s = sampler.Sampler(tmp_root=str(tmp_path), proc_root="/proc")
    end = s.end_of_runtime(top_n=1)
    assert end.tmp_used_bytes >= 2**20
    assert end.tmp_files == 1
    assert end.top_files[0].path == "left-over.bin"
    assert end.extension_rss_bytes > 0


def test_rss_reader_reuses_fds_and_reports_exits() -> None:
    proc = FIXTURES / "proc"
    reader = procfs.RssReader(str(proc))
    assert reader.total((200, 201, 600, 400)) == (10000 + 256) * PAGE
    assert sorted(reader.gone) == [400, 600]
    assert reader.total((200,)) == 10000 * PAGE
    reader.close()


def test_usage_reader_rereads_the_live_file() -> None:
    group = cgroup.find_memory_cgroup("/proc")
    assert group is not None
    reader = cgroup.UsageReader(group)
    first = reader.read()
    block = bytearray(64 * 2**20)  # touched by the allocation: charged to our cgroup
    second = reader.read()
    del block
    assert first is not None and second is not None
    assert second > first
    reader.close()
