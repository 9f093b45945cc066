"""The readers of /proc, cgroups, /tmp and page-cache residency.

Fixture trees (tests/fixtures/proc, tests/fixtures/cgroup) hold one process or file per failure
mode; the real-system tests check each reader against an independent tool (du, df, ps, fincore)
on a freshly made ext4 file system.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tmp_monitor import cgroup, procfs, residency, tmpfs

FIXTURES = Path(__file__).parent / "fixtures"
PROC = str(FIXTURES / "proc")
PAGE = os.sysconf("SC_PAGE_SIZE")


# ---- procfs against the fixture tree -------------------------------------------------------


def test_census_sorts_function_extensions_and_outsiders() -> None:
    census = procfs.Classifier(PROC, own_pid=100).census()
    # 200 has LAMBDA_TASK_ROOT; 201 and the zombie 600 descend from it.
    assert census.function_pids == (200, 201, 600)
    # The monitor, another extension, its child (whose environ only looks alike) and a
    # process whose environ cannot be read; init (1) and 700 are outside our memory cgroup,
    # 400 vanished.
    assert census.other_pids == (100, 300, 301, 500)


def test_function_rss_sums_statm_and_skips_zombie_and_vanished() -> None:
    census = procfs.Classifier(PROC, own_pid=100).census()
    assert procfs.RssReader(PROC).total(census.function_pids) == (10000 + 256) * PAGE
    assert procfs.rss_bytes(PROC, 600) is None  # zombie: empty statm
    assert procfs.rss_bytes(PROC, 400) is None  # vanished


def test_stat_survives_parentheses_in_comm() -> None:
    st = procfs.proc_stat(PROC, 200)  # comm is "node) (x"
    assert st == procfs.ProcStat(ppid=1, starttime=60, cpu_ticks=15)


def test_unreadable_environ_is_unknown_not_an_error() -> None:
    assert procfs.has_task_root(PROC, 500) is None
    assert procfs.has_task_root(PROC, 301) is False  # NOT_LAMBDA_TASK_ROOT is another name


def test_reused_pid_is_classified_afresh(tmp_path: Path) -> None:
    proc = tmp_path / "proc"
    shutil.copytree(FIXTURES / "proc", proc, symlinks=True)
    classifier = procfs.Classifier(str(proc), own_pid=100)
    assert 300 in classifier.census().other_pids
    shutil.rmtree(proc / "300")  # the extension exits ...
    assert 300 not in classifier.census().other_pids
    shutil.copytree(proc / "200", proc / "300")  # ... and its pid comes back as a runtime
    assert 300 in classifier.census().function_pids


def test_no_proc_gives_an_empty_census(tmp_path: Path) -> None:
    census = procfs.Classifier(str(tmp_path / "absent"), own_pid=1).census()
    assert census == procfs.Census((), ())


# ---- cgroup: v1, v2, missing file -----------------------------------------------------------


def _fake_proc(tmp_path: Path, cgroup_lines: str, mountinfo: str) -> str:
    own = tmp_path / "proc" / "self"
    own.mkdir(parents=True)
    (own / "cgroup").write_text(cgroup_lines)
    (own / "mountinfo").write_text(mountinfo)
    return str(tmp_path / "proc")


def test_cgroup_v1_usage(tmp_path: Path) -> None:
    mount = FIXTURES / "cgroup" / "v1" / "memory"
    proc = _fake_proc(
        tmp_path,
        "5:devices:/\n4:memory:/sandbox/env1\n0::/\n",
        f"35 31 0:32 / {mount} rw,relatime - cgroup cgroup rw,memory\n"
        "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n",
    )
    group = cgroup.find_memory_cgroup(proc)
    assert group is not None
    assert group.kind == "cgroup1"
    assert cgroup.memory_bytes(group) == 73400320


def test_cgroup_v2_usage(tmp_path: Path) -> None:
    mount = FIXTURES / "cgroup" / "v2"
    proc = _fake_proc(
        tmp_path,
        "0::/sandbox/env1\n",
        f"30 23 0:26 / {mount} rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n",
    )
    group = cgroup.find_memory_cgroup(proc)
    assert group is not None
    assert group.kind == "cgroup2"
    assert cgroup.memory_bytes(group) == 41943040


def test_cgroup_v2_seen_through_a_cgroup_namespace(tmp_path: Path) -> None:
    # Inside a cgroup namespace the process sees its group as "/" on a mount of that group.
    mount = FIXTURES / "cgroup" / "v2" / "sandbox" / "env1"
    proc = _fake_proc(tmp_path, "0::/\n", f"30 23 0:26 / {mount} rw - cgroup2 cgroup2 rw\n")
    group = cgroup.find_memory_cgroup(proc)
    assert group is not None
    assert cgroup.memory_bytes(group) == 41943040


def test_cgroup_missing_usage_file_means_no_source(tmp_path: Path) -> None:
    mount = FIXTURES / "cgroup" / "v1-missing" / "memory"
    proc = _fake_proc(
        tmp_path,
        "4:memory:/sandbox/env1\n",
        f"35 31 0:32 / {mount} rw - cgroup cgroup rw,memory\n",
    )
    assert cgroup.find_memory_cgroup(proc) is None


def test_cgroup_file_vanishing_later_reads_none(tmp_path: Path) -> None:
    mount = tmp_path / "memory"
    shutil.copytree(FIXTURES / "cgroup" / "v1" / "memory", mount)
    proc = _fake_proc(
        tmp_path, "4:memory:/sandbox/env1\n", f"35 31 0:32 / {mount} rw - cgroup cgroup rw,memory\n"
    )
    group = cgroup.find_memory_cgroup(proc)
    assert group is not None
    (mount / "sandbox" / "env1" / "memory.usage_in_bytes").unlink()
    assert cgroup.memory_bytes(group) is None


def test_own_cgroup_on_this_machine_matches_the_kernel_file() -> None:
    group = cgroup.find_memory_cgroup("/proc")
    assert group is not None, "this machine has a readable memory cgroup (v1 or v2)"
    value = cgroup.memory_bytes(group)
    assert value is not None
    assert value > 0


# ---- real processes against ps ---------------------------------------------------------------


def test_rss_matches_ps() -> None:
    pid = os.getpid()
    ours = procfs.rss_bytes("/proc", pid)
    theirs = subprocess.run(
        ["ps", "-o", "rss=", "-p", str(pid)], capture_output=True, text=True, check=True
    ).stdout
    assert ours is not None
    # ps reads the same counters a moment later; the test process does not allocate between.
    assert abs(ours - int(theirs) * 1024) <= 256 * 1024


def test_function_process_found_by_its_environ_and_children_by_descent() -> None:
    env = {"PATH": os.environ["PATH"], "LAMBDA_TASK_ROOT": "/var/task"}
    runtime = subprocess.Popen(["sh", "-c", "env -u LAMBDA_TASK_ROOT sleep 30 & wait"], env=env)
    try:
        census = _census_until(lambda c: len(c.function_pids) >= 2)
        assert runtime.pid in census.function_pids
        assert os.getpid() in census.other_pids
    finally:
        runtime.kill()
        subprocess.run(["pkill", "-P", str(runtime.pid)], check=False)
        runtime.wait()


def _census_until(done: Callable[[procfs.Census], bool]) -> procfs.Census:
    classifier = procfs.Classifier("/proc", own_pid=os.getpid())
    census = classifier.census()
    for _ in range(100):
        if done(census):
            return census
        time.sleep(0.02)
        census = classifier.census()
    return census


# ---- /tmp on a fresh ext4 image -------------------------------------------------------------


@pytest.fixture
def ext4(tmp_path: Path) -> Iterator[Path]:
    for tool in ("mkfs.ext4", "mount", "umount"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is needed (Debian package e2fsprogs / mount)")
    image = tmp_path / "tmp.img"
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    with open(image, "wb") as f:
        f.truncate(64 * 2**20)
    subprocess.run(["mkfs.ext4", "-q", "-F", "-m", "0", str(image)], check=True)
    subprocess.run(["mount", "-o", "loop", str(image), str(mnt)], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def _write(path: Path, size: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        f.write(os.urandom(size))
        f.flush()
        os.fsync(f.fileno())


def test_walk_matches_du_hard_links_once_symlinks_not_followed(ext4: Path) -> None:
    _write(ext4 / "a" / "b" / "big.bin", 3 * 2**20)
    _write(ext4 / "small.txt", 100)
    os.link(ext4 / "small.txt", ext4 / "a" / "hardlink.txt")
    os.symlink("/usr", ext4 / "a" / "usr-link")
    (ext4 / "sparse").write_bytes(b"")
    os.truncate(ext4 / "sparse", 50 * 2**20)  # 50 MiB apparent, nothing allocated

    result = tmpfs.walk(str(ext4), top_n=2)

    du = subprocess.run(["du", "-sB1", str(ext4)], capture_output=True, text=True, check=True)
    du_total = int(du.stdout.split()[0])
    # du counts the root folder and lost+found; the walk leaves them to the empty fs.
    own = (os.lstat(ext4).st_blocks + os.lstat(ext4 / "lost+found").st_blocks) * 512
    assert result.allocated_bytes == du_total - own
    assert result.files == 3  # big.bin, small.txt (linked twice), sparse; lost+found is a dir
    assert result.top_files[0] == tmpfs.TopFile(
        "a/b/big.bin", os.stat(ext4 / "a/b/big.bin").st_blocks * 512
    )
    assert len(result.top_files) == 2


def test_walk_does_not_cross_into_another_mount(ext4: Path) -> None:
    inner = ext4 / "mnt"
    inner.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(inner)], check=True)
    try:
        _write(inner / "other-fs.bin", 2**20)
        _write(ext4 / "here.bin", 2**20)
        result = tmpfs.walk(str(ext4))
    finally:
        subprocess.run(["umount", str(inner)], check=True)
    assert result.files == 1
    assert result.allocated_bytes < 2 * 2**20


def test_walk_of_a_deep_tree_needs_no_recursion(ext4: Path) -> None:
    path = str(ext4)
    for _ in range(1200):  # deeper than Python's default recursion limit
        path += "/d"
        os.mkdir(path)
    with open(path + "/leaf", "wb") as f:
        f.write(b"x")
    assert tmpfs.walk(str(ext4)).files == 1


def test_statvfs_matches_df_and_counts_a_write(ext4: Path) -> None:
    before = tmpfs.fs_usage(str(ext4))
    _write(ext4 / "f.bin", 4 * 2**20)
    after = tmpfs.fs_usage(str(ext4))
    df = (
        subprocess.run(
            ["df", "-B1", "--output=used,avail", str(ext4)],
            capture_output=True,
            text=True,
            check=True,
        )
        .stdout.splitlines()[1]
        .split()
    )
    assert after.used_bytes == int(df[0])
    assert after.free_bytes == int(df[1])
    assert after.used_bytes - before.used_bytes >= 4 * 2**20


def test_empty_check(ext4: Path) -> None:
    assert tmpfs.is_empty(str(ext4))  # lost+found is the file system's own
    shutil.rmtree(ext4 / "lost+found")
    assert tmpfs.is_empty(str(ext4))
    (ext4 / "x").write_bytes(b"")
    assert not tmpfs.is_empty(str(ext4))


# ---- residency against fincore ---------------------------------------------------------------


def _fincore_bytes(path: Path) -> int:
    out = subprocess.run(
        ["fincore", "--bytes", "--noheadings", "--output", "RES", str(path)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return int(out.split()[0])


def _drop(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fdatasync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def test_residency_follows_the_page_cache(ext4: Path) -> None:
    f = ext4 / "data.bin"
    _write(f, 8 * 2**20 + 123)
    got = residency.resident_bytes(str(f))
    assert got == _fincore_bytes(f)
    assert got >= 8 * 2**20  # all of it, give or take the partial last page
    _drop(f)
    assert residency.resident_bytes(str(f)) == _fincore_bytes(f) == 0
    with open(f, "rb") as fh:
        os.posix_fadvise(fh.fileno(), 0, 0, os.POSIX_FADV_RANDOM)  # no readahead
        fh.read(2**20)  # brings the first MiB back
    before = residency.resident_bytes(str(f))
    theirs = _fincore_bytes(f)
    after = residency.resident_bytes(str(f))
    assert before <= theirs <= after  # equal unless the kernel still reads ahead meanwhile
    assert before >= 2**20 and after < 8 * 2**20


def test_residency_of_empty_and_missing_files(ext4: Path) -> None:
    (ext4 / "empty").write_bytes(b"")
    assert residency.resident_bytes(str(ext4 / "empty")) == 0
    with pytest.raises(OSError):
        residency.resident_bytes(str(ext4 / "absent"))


def test_residency_cache_remeasures_written_files_only(ext4: Path) -> None:
    a, b = ext4 / "a.bin", ext4 / "b.bin"
    _write(a, 2**20)
    _write(b, 2**20)
    cache = residency.ResidencyCache()
    cache.begin()
    tmpfs.walk(str(ext4), on_file=cache.visit)
    assert cache.end() == 2 * 2**20
    assert cache.measured == 2

    _drop(b)
    _write(b, 2 * 2**20)  # rewritten: new size and mtime
    cache.begin()
    tmpfs.walk(str(ext4), on_file=cache.visit)
    assert cache.end() == 3 * 2**20
    assert cache.measured == 1  # a.bin came from the cache

    a.unlink()
    cache.begin()
    tmpfs.walk(str(ext4), on_file=cache.visit)
    assert cache.end() == 2 * 2**20


def test_sampler_peak_is_used_blocks_over_the_empty_file_systems_own(ext4: Path) -> None:
    from tmp_monitor.sampler import Sampler

    s = Sampler(tmp_root=str(ext4), proc_root="/proc")
    assert s.tick(0.0).tmp_used_bytes == 0  # journal, inode tables, lost+found taken off
    _write(ext4 / "f.bin", 4 * 2**20)
    used = s.tick(1.0).tmp_used_bytes
    assert used is not None
    assert 4 * 2**20 <= used <= 4 * 2**20 + 64 * 1024
    end = s.end_of_runtime()
    assert end.tmp_used_bytes >= 4 * 2**20
    assert end.fs_used_bytes == used
