"""cgroup layouts the machine under test does not have (v2-only), on a fixture tree.

The kernel is not involved: these prove which files the sandbox writes and reads on a v2-only
machine, where the v1 tests in test_sandbox_host.py cannot run."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from lambda_sandbox import cgroups


@pytest.fixture
def v2_root(tmp_path: Path) -> Path:
    root = tmp_path / "cgroup2"
    root.mkdir()
    (root / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    (root / "cgroup.subtree_control").write_text("cpu\n")
    parent = root / cgroups.PARENT
    parent.mkdir()
    (parent / "cgroup.subtree_control").write_text("")
    return root


def test_v2_is_detected_and_complete(v2_root: Path) -> None:
    assert cgroups.detect(v2_root) == cgroups.Layout(2, v2_root)
    assert cgroups.missing_controllers(v2_root) == []


def test_v2_limits_memory_without_swap_and_cpu_by_share(v2_root: Path) -> None:
    cg = cgroups.create(cgroups.Layout(2, v2_root), memory_mb=256, cpus=256 / 1769)
    d = v2_root / cgroups.PARENT / cg.name
    assert cg.dirs == (d,)
    assert (d / "memory.max").read_text() == str(256 << 20)
    assert (d / "cpu.max").read_text() == f"{round(100_000 * 256 / 1769)} 100000"
    assert (v2_root / "cgroup.subtree_control").read_text() == "+memory"
    assert (v2_root / cgroups.PARENT / "cgroup.subtree_control").read_text() == "+memory +cpu"
    assert cg.procs_files == (d / "cgroup.procs",)
    assert cg.freeze_file == (d / "cgroup.freeze", "1", "0")


def put(path: Path, text: str) -> None:
    """Replace a file at once, as a kernel file changes (the sampler thread reads meanwhile)."""
    (path.parent / (path.name + ".new")).write_text(text)
    os.replace(path.parent / (path.name + ".new"), path)


def test_v2_reads_peak_oom_kills_and_falls_back_without_peak(v2_root: Path) -> None:
    cg = cgroups.create(cgroups.Layout(2, v2_root), memory_mb=128, cpus=0.1)
    d = v2_root / cgroups.PARENT / cg.name
    (d / "memory.events").write_text("low 0\nhigh 0\nmax 3\noom 2\noom_kill 1\n")
    assert cg.oom_kills() == 1
    put(d / "memory.current", "1000\n")
    assert not cg.has_peak()  # kernels before 5.19 have no memory.peak
    sampler = cgroups.PeakSampler(cg, interval=0.001)
    put(d / "memory.current", "5000\n")
    assert sampler.peak() == 5000
    put(d / "memory.current", "2000\n")
    assert sampler.peak() == 5000  # a high-water mark never falls
    sampler.stop()
    (d / "memory.peak").write_text("7000\n")
    assert cg.has_peak()
    assert cg.memory_peak_bytes() == 7000


def test_stale_names_are_only_those_of_dead_owners(tmp_path: Path) -> None:
    assert cgroups.owner_alive(cgroups.new_id())
    assert not cgroups.owner_alive("999999999-1-abcdef01")
    assert cgroups.owner_alive("not-a-sandbox")  # never touch what we did not make
