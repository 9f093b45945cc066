"""The purge on real directories: what it removes, what it must never touch.

Each test gets a fresh ext4 image, mounted at <base>/fs, with the purged root at fs/tmp and an
"outside" tree at fs/outside on the same file system (so hard links, bind mounts and renames
can reach it). Nothing is mocked: other processes hold files open for real, mounts are real,
the unprivileged tests run the purge in a forked child that dropped to uid 65534.
"""

from __future__ import annotations

import errno
import hashlib
import os
import pickle
import resource
import shutil
import socket
import sqlite3
import stat
import subprocess
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tmp_monitor import config as config_mod
from tmp_monitor import keep as keep_mod
from tmp_monitor.purge import MAX_BUDGET_S, PurgeResult, budget_s, make_purger, purge_tree

T = TypeVar("T")
NOBODY = 65534
HOLDER_PYTHON = "/usr/bin/python3.11"  # Debian's: the venv's interpreter is not nobody's to run
NO_KEEP = keep_mod.parse("")  # DEFAULT_KEEP only
BIG_BUDGET = 600.0  # for the trees that must go whole: the 1 s production cap is not under test


@dataclass(frozen=True)
class Fs:
    mount: Path  # the ext4 image's mount point
    root: Path  # what is purged
    outside: Path  # beside root, same file system


@pytest.fixture
def fs() -> Iterator[Fs]:
    base = Path("/var/tmp") / f"tmp-monitor-purge-{uuid.uuid4().hex[:12]}"
    base.mkdir(mode=0o755)
    image = base / "fs.img"
    mount = base / "fs"
    mount.mkdir()
    with image.open("wb") as f:
        f.truncate(256 << 20)
    subprocess.run(["mkfs.ext4", "-q", "-F", "-N", "70000", str(image)], check=True)
    subprocess.run(["mount", "-o", "loop", str(image), str(mount)], check=True)
    try:
        (mount / "tmp").mkdir()
        (mount / "outside").mkdir()
        yield Fs(mount, mount / "tmp", mount / "outside")
    finally:
        # Mounts a test made under the image go first (lazily: a failed test may hold them).
        subprocess.run(["umount", "-R", "-l", str(mount)], check=False)
        subprocess.run(["rm", "-rf", "--one-file-system", str(base)], check=True)


def snapshot(top: Path) -> dict[bytes, tuple[object, ...]]:
    """Every entry below top (and top), by relative path: type, mode, links, size, content.

    Iterative: os.walk of Python 3.11 recurses, and some trees here are 1,000 deep.
    """
    out: dict[bytes, tuple[object, ...]] = {}
    root = os.fsencode(top)
    pending = [b"."]
    while pending:
        rel = pending.pop()
        path = os.path.normpath(os.path.join(root, rel))
        st = os.lstat(path)
        digest: object = None
        if stat.S_ISREG(st.st_mode):
            with open(path, "rb") as f:
                digest = hashlib.sha256(f.read()).hexdigest()
        elif stat.S_ISLNK(st.st_mode):
            digest = os.readlink(path)
        elif stat.S_ISDIR(st.st_mode):
            names = os.listdir(path)
            pending.extend(os.path.normpath(os.path.join(rel, name)) for name in names)
        out[rel] = (stat.S_IFMT(st.st_mode), st.st_mode, st.st_nlink, st.st_size, digest)
    return out


def entries(root: Path) -> set[bytes]:
    return {rel for rel in snapshot(root) if rel != b"."}


def allocated(path: Path) -> int:
    return os.lstat(path).st_blocks * 512


def write(path: Path, size: int = 4096, byte: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(byte * size)
    return path


def du_bytes(path: Path) -> int:
    """Allocated bytes below path per du(1) (hard links once), path's own blocks taken off."""
    out = subprocess.run(
        ["du", "-s", "-B1", "-x", str(path)], check=True, capture_output=True, text=True
    ).stdout
    return int(out.split()[0]) - allocated(path)


def fs_used(mount: Path) -> tuple[int, int]:
    """(used bytes, used inodes) of the file system, after a sync so ext4 frees what it will."""
    os.sync()
    st = os.statvfs(mount)
    return (st.f_blocks - st.f_bfree) * st.f_frsize, st.f_files - st.f_ffree


def sample_tree(root: Path) -> None:
    write(root / "a.bin", 100_000)
    write(root / "dir" / "b.txt", 5000)
    write(root / "dir" / "sub" / "c", 1)
    (root / "empty").mkdir()
    write(root / ".hidden" / "d", 20_000)
    os.symlink("dir/b.txt", root / "rel-link")
    os.symlink("/nonexistent/target", root / "dangling")


# --- what goes ------------------------------------------------------------------------------


def test_removes_all_but_root_and_counts_what_du_and_statvfs_see(fs: Fs) -> None:
    sample_tree(fs.root)
    expected = du_bytes(fs.root)
    used_before = fs_used(fs.mount)

    result = purge_tree(str(fs.root), NO_KEEP)

    assert fs.root.is_dir() and not os.listdir(fs.root)
    assert result.files == 6  # 4 regular files, 2 symlinks
    assert result.dirs == 4
    assert result.bytes == expected
    used_after = fs_used(fs.mount)
    assert used_before[0] - used_after[0] == expected
    assert used_before[1] - used_after[1] == 10
    assert not result.truncated and result.errors == 0 and not result.dry_run


def test_dry_run_changes_nothing_and_reports_what_the_real_purge_frees(fs: Fs) -> None:
    sample_tree(fs.root)
    os.link(fs.root / "a.bin", fs.root / "dir" / "a-again")
    write(fs.root / "kept.db", 8192)
    keep = keep_mod.parse("*.db")
    before = snapshot(fs.root)
    used_before = fs_used(fs.mount)

    dry = purge_tree(str(fs.root), keep, dry_run=True)

    assert snapshot(fs.root) == before
    assert fs_used(fs.mount) == used_before
    assert dry.dry_run and dry.bytes > 100_000

    real = purge_tree(str(fs.root), keep)

    assert (real.bytes, real.files, real.dirs, real.kept_pattern) == (
        dry.bytes,
        dry.files,
        dry.dirs,
        dry.kept_pattern,
    )
    assert used_before[0] - fs_used(fs.mount)[0] == real.bytes
    assert entries(fs.root) == {b"kept.db"}


def test_read_only_files_go(fs: Fs) -> None:
    write(fs.root / "ro" / "file", 3000).chmod(0o444)
    write(fs.root / "ro2", 10).chmod(0o400)
    chown_tree(fs.root, NOBODY)

    result = purge_as(NOBODY, fs.root, NO_KEEP)

    assert entries(fs.root) == set()
    assert result.files == 2 and result.errors == 0


def test_names_with_newlines_and_invalid_utf8(fs: Fs) -> None:
    root = os.fsencode(fs.root)
    odd = [b"new\nline", b"\xff\xfe", b"caf\xe9", b"\n", b" lead", b"tail ", b"\x01ctl"]
    for name in odd:
        with open(os.path.join(root, name), "wb") as f:
            f.write(b"data")
        os.mkdir(os.path.join(root, name + b".d"))
        with open(os.path.join(root, name + b".d", name), "wb") as f:
            f.write(b"inner")
    with open(os.path.join(root, b"keep\n\xff.db"), "wb") as f:
        f.write(b"kept")

    result = purge_tree(str(fs.root), keep_mod.parse("*.db"))

    assert os.listdir(root) == [b"keep\n\xff.db"]
    assert result.files == 2 * len(odd) and result.dirs == len(odd) and result.kept_pattern == 1


def test_fifty_thousand_files(fs: Fs) -> None:
    make_many(fs.root, 50_000)
    expected = du_bytes(fs.root)

    result = purge_tree(str(fs.root), NO_KEEP, budget_s=BIG_BUDGET)

    assert os.listdir(fs.root) == []
    assert result.files == 50_000 and result.bytes == expected and not result.truncated


def make_many(root: Path, count: int, per_dir: int = 5000) -> None:
    for i in range(count):
        folder = root / f"d{i // per_dir}"
        if i % per_dir == 0:
            folder.mkdir()
        fd = os.open(folder / f"f{i}", os.O_WRONLY | os.O_CREAT, 0o644)
        os.write(fd, b"z")
        os.close(fd)


def test_a_purge_stopped_by_its_budget_goes_on_at_the_next(fs: Fs) -> None:
    make_many(fs.root, 20_000)
    warnings: list[str] = []
    purger = make_purger(purge_config(), root=str(fs.root), warn=warnings.append)

    first = purger(0, deadline_ms=0)  # the deadline has passed: a budget of 0

    assert first is not None and first.truncated
    assert first.files == 0 and len(entries(fs.root)) == 20_004
    assert len([w for w in warnings if "time budget" in w]) == 1

    second = purge_tree(str(fs.root), NO_KEEP, budget_s=0.01)
    third = purge_tree(str(fs.root), NO_KEEP, budget_s=BIG_BUDGET)

    assert second.truncated  # 20,000 unlinks never fit in 10 ms
    assert not third.truncated and os.listdir(fs.root) == []
    assert second.files + third.files == 20_000


def test_depth_1000(fs: Fs) -> None:
    fd = make_deep(fs.root, 1000)
    os.close(fd)

    result = purge_tree(str(fs.root), NO_KEEP, budget_s=BIG_BUDGET)

    assert os.listdir(fs.root) == []
    assert result.dirs == 1000 and result.files == 1000 and result.errors == 0


def test_depth_1000_within_a_small_fd_limit(fs: Fs) -> None:
    # Lambda allows 1,024 fds; a walk holding one per level would run out in deep trees.
    os.close(make_deep(fs.root, 1000))

    def limited() -> PurgeResult:
        resource.setrlimit(resource.RLIMIT_NOFILE, (100, 100))
        return purge_tree(str(fs.root), keep_mod.parse("**/f"), budget_s=BIG_BUDGET)

    result = in_child(limited)

    assert result.errors == 0 and result.kept_pattern == 1000
    assert len(entries(fs.root)) == 2000


def make_deep(root: Path, depth: int) -> int:
    """A chain of depth folders d/d/d..., a file f in each; returns an fd of the deepest."""
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    for _ in range(depth):
        os.mkdir("d", dir_fd=fd)
        child = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd = child
        out = os.open("f", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
        os.close(out)
    return fd


def test_depth_1000_with_a_kept_file_at_the_bottom_keeps_the_folders_to_it(fs: Fs) -> None:
    fd = make_deep(fs.root, 1000)
    out = os.open("keep.me", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
    os.write(out, b"precious")
    os.close(out)
    os.close(fd)

    result = purge_tree(str(fs.root), keep_mod.parse("**/keep.me"), budget_s=BIG_BUDGET)

    left = entries(fs.root)
    assert len(left) == 1001  # the 1,000 folders and keep.me
    assert max(left, key=len).endswith(b"d/keep.me")
    assert result.files == 1000 and result.dirs == 0 and result.kept_pattern == 1


# --- what stays -----------------------------------------------------------------------------


def test_symlinks_are_removed_never_followed(fs: Fs) -> None:
    write(fs.outside / "data" / "precious", 50_000)
    write(fs.outside / "file", 10)
    os.symlink(fs.outside / "data", fs.root / "to-outside-dir")
    os.symlink(fs.outside / "file", fs.root / "to-outside-file")
    os.symlink("loop-b", fs.root / "loop-a")
    os.symlink("loop-a", fs.root / "loop-b")
    os.symlink(".", fs.root / "self")
    os.symlink("..", fs.root / "parent")
    write(fs.root / "sub" / "x", 10)
    os.symlink("../..", fs.root / "sub" / "up")
    outside = snapshot(fs.mount / "outside")

    result = purge_tree(str(fs.root), NO_KEEP)

    assert os.listdir(fs.root) == []
    assert snapshot(fs.mount / "outside") == outside
    assert result.files == 8 and result.errors == 0


def test_mounts_under_the_root_are_left_whole(fs: Fs) -> None:
    write(fs.outside / "bound" / "precious", 10_000)
    (fs.root / "bind").mkdir()
    (fs.root / "other").mkdir()
    write(fs.root / "plain", 100)
    outside = snapshot(fs.outside)
    subprocess.run(
        ["mount", "--bind", str(fs.outside / "bound"), str(fs.root / "bind")], check=True
    )
    try:
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=4m", "t", str(fs.root / "other")], check=True
        )
        try:
            write(fs.root / "other" / "on-tmpfs", 100)
            before_other = snapshot(fs.root / "other")

            # A file of another file system, bind-mounted onto a file of the root.
            write(fs.root / "file-mount", 1)
            mount_file = ["mount", "--bind", str(fs.root / "other" / "on-tmpfs")]
            subprocess.run([*mount_file, str(fs.root / "file-mount")], check=True)
            try:
                result = purge_tree(str(fs.root), NO_KEEP)
            finally:
                subprocess.run(["umount", str(fs.root / "file-mount")], check=True)

            assert entries(fs.root / "other") == {b"on-tmpfs"}
            assert snapshot(fs.root / "other") == before_other
            assert result.kept_mounts == 3 and result.files == 1 and result.errors == 0
        finally:
            subprocess.run(["umount", str(fs.root / "other")], check=True)
        assert os.listdir(fs.root / "bind") == ["precious"]
    finally:
        subprocess.run(["umount", str(fs.root / "bind")], check=True)
    assert snapshot(fs.outside) == outside
    assert sorted(os.listdir(fs.root)) == ["bind", "file-mount", "other"]  # the mount points


def test_hard_links_count_when_the_last_link_goes(fs: Fs) -> None:
    both = write(fs.root / "both-1", 40_000)
    (fs.root / "sub").mkdir()
    os.link(both, fs.root / "sub" / "both-2")
    kept = write(fs.root / "half.db", 60_000)
    os.link(kept, fs.root / "half-link")
    out = write(fs.outside / "shared", 80_000)
    os.link(out, fs.root / "to-outside")
    outside = snapshot(fs.outside)
    # Only both-1's inode and the folder sub are freed: half.db and shared keep a link.
    freed = allocated(both) + allocated(fs.root / "sub")

    dry = purge_tree(str(fs.root), keep_mod.parse("*.db"), dry_run=True)
    result = purge_tree(str(fs.root), keep_mod.parse("*.db"))

    assert dry.bytes == result.bytes == freed
    assert result.files == 4  # both-1, both-2, half-link, to-outside: links unlinked
    assert entries(fs.root) == {b"half.db"}
    assert (fs.root / "half.db").read_bytes() == b"x" * 60_000
    assert snapshot(fs.outside)[b"shared"][4] == outside[b"shared"][4]


def test_sockets_fifos_and_devices_stay_with_their_folders(fs: Fs) -> None:
    (fs.root / "ipc").mkdir()
    os.mkfifo(fs.root / "ipc" / "fifo")
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(fs.root / "ipc" / "sock"))
    os.mknod(fs.root / "null", 0o600 | stat.S_IFCHR, os.makedev(1, 3))
    write(fs.root / "ipc" / "junk", 10)
    write(fs.root / "junk", 10)
    try:
        result = purge_tree(str(fs.root), NO_KEEP)
    finally:
        server.close()

    assert entries(fs.root) == {b"ipc", b"ipc/fifo", b"ipc/sock", b"null"}
    assert result.skipped_other == 3 and result.files == 2


def test_keep_patterns_keep_entries_and_the_folders_leading_to_them(fs: Fs) -> None:
    write(fs.root / "cache" / "models" / "m.bin", 30_000)
    write(fs.root / "cache" / "models" / "deep" / "w", 10)
    write(fs.root / "cache" / "other", 10)
    write(fs.root / "a" / "b" / "c" / "state.db", 10)
    write(fs.root / "a" / "b" / "junk", 10)
    write(fs.root / "lumigo-spans", 10)  # DEFAULT_KEEP
    write(fs.root / "_MEI12345" / "python3.so", 10)  # DEFAULT_KEEP
    write(fs.root / "nested" / "_MEI999" / "x", 10)  # DEFAULT_KEEP is anchored at the root
    kept = ["cache/models", "*.db"]
    before = snapshot(fs.root)

    result = purge_tree(str(fs.root), keep_mod.parse(",".join(kept)))

    left = entries(fs.root)
    assert left == {
        b"cache",
        b"cache/models",
        b"cache/models/m.bin",
        b"cache/models/deep",
        b"cache/models/deep/w",
        b"a",
        b"a/b",
        b"a/b/c",
        b"a/b/c/state.db",
        b"lumigo-spans",
        b"_MEI12345",
        b"_MEI12345/python3.so",
    }
    assert all(snapshot(fs.root)[rel][4] == before[rel][4] for rel in left)
    # A kept folder counts once: its subtree is not entered.
    assert result.kept_pattern == 4


def test_a_kept_folder_is_not_entered(fs: Fs) -> None:
    write(fs.root / "models" / "locked" / "w", 10)
    write(fs.root / "junk", 10)
    (fs.root / "models" / "locked").chmod(0o000)
    chown_tree(fs.root, NOBODY)

    result = purge_as(NOBODY, fs.root, keep_mod.parse("models"))

    assert result.errors == 0 and result.kept_pattern == 1 and result.files == 1
    assert sorted(os.listdir(fs.root)) == ["models"]


def test_the_root_is_never_removed_nor_followed(fs: Fs) -> None:
    write(fs.outside / "precious", 10)
    link = fs.mount / "link-root"
    os.symlink(fs.outside, link)
    outside = snapshot(fs.outside)

    result = purge_tree(str(link), NO_KEEP)

    assert result.errors == 1 and result.files == 0
    assert snapshot(fs.outside) == outside
    write(fs.root / "x", 10)
    purge_tree(str(fs.root), NO_KEEP)
    assert fs.root.is_dir()


def test_a_missing_root_or_proc_is_an_error_not_an_exception(fs: Fs) -> None:
    write(fs.root / "x", 10)

    missing = purge_tree(str(fs.root / "nope"), NO_KEEP)
    no_proc = purge_tree(str(fs.root), NO_KEEP, proc_root=str(fs.outside))

    assert missing.errors == 1 and missing.first_error == os.strerror(errno.ENOENT)
    # Without /proc the purge cannot see open files: it removes nothing.
    assert no_proc.errors == 1 and no_proc.files == 0
    assert entries(fs.root) == {b"x"}


# --- files held by other processes ----------------------------------------------------------


_HOLD = r"""
import ctypes, mmap, os, sqlite3, sys
held = []
args = sys.argv[1:]
for what, path in zip(args[::2], args[1::2]):
    if what == "open":
        held.append(open(path, "ab"))
    elif what == "map":  # a mapping without an fd (Python's mmap would keep a dup of the fd)
        libc = ctypes.CDLL(None, use_errno=True)
        libc.mmap.restype = ctypes.c_void_p
        libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                              ctypes.c_int, ctypes.c_long]
        fd = os.open(path, os.O_RDONLY)
        addr = libc.mmap(None, os.fstat(fd).st_size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
        assert addr not in (None, ctypes.c_void_p(-1).value)
        os.close(fd)
    elif what == "cwd":
        os.chdir(path)
    elif what == "nodump":  # hide this process's /proc files from its own user
        assert ctypes.CDLL(None).prctl(4, 0, 0, 0, 0) == 0  # PR_SET_DUMPABLE
    elif what == "sqlite":
        conn = sqlite3.connect(path)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("CREATE TABLE t (v TEXT)")
        conn.execute("INSERT INTO t VALUES ('survives')")
        conn.commit()
        held.append(conn)
print("ready", flush=True)
sys.stdin.read()
"""


class Holder:
    """Another process that holds files ("open", "map", "cwd", "sqlite") until closed.

    ("nodump", anything) makes it non-dumpable: its own user can no longer read its fds.
    """

    def __init__(self, *holds: tuple[str, Path], uid: int | None = None) -> None:
        argv = [item for what, path in holds for item in (what, str(path))]
        self.proc = subprocess.Popen(
            [HOLDER_PYTHON, "-c", _HOLD, *argv],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            user=uid,
            group=uid,
            extra_groups=[] if uid is not None else None,
        )
        assert self.proc.stdout is not None
        assert self.proc.stdout.readline() == "ready\n", "the holder failed to start"

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait()
        assert self.proc.stdout is not None
        self.proc.stdout.close()


def test_files_held_open_mapped_or_worked_in_by_another_process_stay(fs: Fs) -> None:
    opened = write(fs.root / "open.log", 10_000, b"o")
    mapped = write(fs.root / "lib" / "mapped.so", 8192, b"m")
    work = fs.root / "work"
    write(work / "scratch", 10)

    holder = Holder(("open", opened), ("map", mapped), ("cwd", work))
    try:
        result = purge_tree(str(fs.root), NO_KEEP)
    finally:
        holder.close()

    assert entries(fs.root) == {b"open.log", b"lib", b"lib/mapped.so", b"work"}
    assert opened.read_bytes() == b"o" * 10_000 and mapped.read_bytes() == b"m" * 8192
    assert result.kept_open == 3 and result.files == 1


def test_a_database_held_open_survives_with_its_content(fs: Fs) -> None:
    db = fs.root / "state" / "app.db"
    db.parent.mkdir()
    write(fs.root / "junk", 10)
    chown_tree(fs.root, NOBODY)

    holder = Holder(("sqlite", db), uid=NOBODY)
    try:
        result = purge_as(NOBODY, fs.root, NO_KEEP)
    finally:
        holder.close()

    assert result.kept_open >= 2  # app.db, app.db-wal and app.db-shm while the connection lives
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT v FROM t").fetchall() == [("survives",)]
    assert not (fs.root / "junk").exists()


def test_the_purging_process_own_fds_are_no_reason_to_keep(fs: Fs) -> None:
    with write(fs.root / "mine", 10).open("rb"):
        result = purge_tree(str(fs.root), NO_KEEP)
    assert os.listdir(fs.root) == [] and result.kept_open == 0


# --- races, made deterministic by acting when the purge asks about one path ------------------


@dataclass
class RaceKeep:
    """A keep list that, the first time the purge asks about `at`, runs `act` first."""

    at: str
    act: Callable[[], None]
    inner: keep_mod.KeepList = NO_KEEP
    done: bool = field(default=False)

    def keeps(self, relpath: str, is_dir: bool = False) -> bool:
        if relpath == self.at and not self.done:
            self.done = True
            self.act()
        return self.inner.keeps(relpath, is_dir)

    def may_keep_below(self, reldir: str) -> bool:
        return True


def test_a_folder_swapped_for_a_symlink_mid_walk_is_not_followed(fs: Fs) -> None:
    write(fs.outside / "precious" / "p", 10_000)
    write(fs.root / "victim" / "v", 10)
    outside = snapshot(fs.outside)

    def swap() -> None:
        os.rename(fs.root / "victim", fs.mount / "moved-away")
        os.symlink(fs.outside / "precious", fs.root / "victim")

    keep = RaceKeep("victim", swap)
    result = purge_tree(str(fs.root), keep)

    assert keep.done
    assert snapshot(fs.outside) == outside
    assert os.path.islink(fs.root / "victim") and result.errors == 0


def test_a_folder_swapped_for_another_folder_mid_walk_is_left(fs: Fs) -> None:
    write(fs.root / "victim" / "v", 10)

    def swap() -> None:
        os.rename(fs.root / "victim", fs.mount / "moved-away")
        write(fs.root / "victim" / "new", 10)

    result = purge_tree(str(fs.root), RaceKeep("victim", swap))

    assert entries(fs.root) == {b"victim", b"victim/new"}
    assert entries(fs.mount / "moved-away") == {b"v"}
    assert result.errors == 0


def test_entries_vanishing_or_appearing_mid_walk(fs: Fs) -> None:
    write(fs.root / "gone-file", 10)
    write(fs.root / "gone-dir" / "x", 10)
    write(fs.root / "busy" / "a", 10)

    def churn() -> None:  # the purge may have removed some of these already
        shutil.rmtree(fs.root / "gone-dir", ignore_errors=True)
        (fs.root / "gone-file").unlink(missing_ok=True)
        write(fs.root / "busy" / "appeared", 10)
        write(fs.root / "appeared-at-top", 10)

    result = purge_tree(str(fs.root), RaceKeep("busy/a", churn))  # busy is listed by then

    assert result.errors == 0
    # New entries may or may not be seen; "busy" had one the listing did not have.
    assert (
        {b"busy", b"busy/appeared"}
        <= entries(fs.root)
        <= {
            b"busy",
            b"busy/appeared",
            b"appeared-at-top",
        }
    )


def test_a_file_opened_after_the_scan_counts_as_purged_but_open(fs: Fs) -> None:
    late = write(fs.root / "late", 20_000)
    write(fs.root / "plain", 4096)
    holders: list[Holder] = []

    def open_it() -> None:
        holders.append(Holder(("open", late)))

    try:
        result = purge_tree(str(fs.root), RaceKeep("late", open_it))
    finally:
        for holder in holders:
            holder.close()

    assert result.purged_but_open == 1
    assert result.files == 1 and result.bytes == 4096
    assert os.listdir(fs.root) == []


def test_a_deep_folder_moved_while_its_ancestors_fds_are_closed_stops_the_purge(fs: Fs) -> None:
    # Deeper than the purge keeps fds for, so d/d/d/d (depth 4) is reopened through "..".
    os.close(make_deep(fs.root, 100))
    (fs.root / "elsewhere").mkdir()  # kept, so that it is there whenever the move comes
    write(fs.outside / "precious", 10)
    outside = snapshot(fs.outside)
    deep = "/".join(["d"] * 90)

    def move() -> None:
        os.rename(fs.root / "d" / "d" / "d" / "d", fs.root / "elsewhere" / "d")

    keep = RaceKeep(deep, move, keep_mod.parse("elsewhere"))
    result = purge_tree(str(fs.root), keep, budget_s=BIG_BUDGET)

    assert result.errors == 1 and result.truncated
    assert "moved" in result.first_error
    assert snapshot(fs.outside) == outside
    assert (fs.root / "d" / "d" / "d").is_dir()


# --- permissions, as the function's own unprivileged user ------------------------------------


def chown_tree(top: Path, uid: int) -> None:
    subprocess.run(["chown", "-R", "-h", f"{uid}:{uid}", str(top)], check=True)


def as_user(uid: int, work: Callable[[], T]) -> T:
    """work() run in a forked child that dropped to uid; its (pickled) return value."""

    def dropped() -> T:
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)
        return work()

    return in_child(dropped)


def in_child(work: Callable[[], T]) -> T:
    """work() run in a forked child; its (pickled) return value."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(read_end)
            os.write(write_end, pickle.dumps(work()))
        finally:
            os._exit(0)
    os.close(write_end)
    chunks = []
    while chunk := os.read(read_end, 65536):
        chunks.append(chunk)
    os.close(read_end)
    os.waitpid(pid, 0)
    assert chunks, "the child died"
    value: T = pickle.loads(b"".join(chunks))
    return value


def purge_as(uid: int, root: Path, keep: keep_mod.KeepList) -> PurgeResult:
    return as_user(uid, lambda: purge_tree(str(root), keep))


def test_a_process_of_the_same_user_that_cannot_be_read_stops_the_purge_said_once(
    fs: Fs,
) -> None:
    hidden = write(fs.root / "held-by-a-hidden-process", 10)
    chown_tree(fs.root, NOBODY)

    def twice() -> tuple[list[PurgeResult | None], list[str]]:
        warnings: list[str] = []
        purger = make_purger(purge_config(), root=str(fs.root), warn=warnings.append)
        return [purger(0), purger(0)], warnings

    holder = Holder(("open", hidden), ("nodump", hidden), uid=NOBODY)
    try:
        (first, second), warnings = as_user(NOBODY, twice)
    finally:
        holder.close()

    assert first is not None and first.unreadable_processes == 1
    assert second is not None and second.unreadable_processes == 1
    # What it holds cannot be seen, so nothing is removed (it may hold any file open).
    assert first.files == 0 and second is not None and second.files == 0
    assert hidden.exists()
    assert len([w for w in warnings if "cannot be read" in w]) == 1


def test_a_zombie_of_the_same_user_is_not_an_unreadable_process(fs: Fs) -> None:
    write(fs.root / "x", 10)
    chown_tree(fs.root, NOBODY)

    def with_zombie() -> PurgeResult:
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        while Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z":
            pass
        try:
            return purge_tree(str(fs.root), NO_KEEP)
        finally:
            os.waitpid(pid, 0)

    result = as_user(NOBODY, with_zombie)

    assert result.unreadable_processes == 0 and result.files == 1


def test_unreadable_and_unwritable_folders_are_left_and_counted(fs: Fs) -> None:
    write(fs.root / "locked" / "inside", 10)
    write(fs.root / "frozen" / "inside", 10)
    write(fs.root / "junk" / "x", 10)
    chown_tree(fs.root, NOBODY)
    (fs.root / "locked").chmod(0o000)
    (fs.root / "frozen").chmod(0o555)

    result = purge_as(NOBODY, fs.root, NO_KEEP)

    assert result.errors == 2
    assert result.first_error in (os.strerror(errno.EACCES), os.strerror(errno.EPERM))
    (fs.root / "locked").chmod(0o755)
    assert entries(fs.root) == {b"locked", b"locked/inside", b"frozen", b"frozen/inside"}


def test_files_of_other_users_in_a_sticky_root_are_left(fs: Fs) -> None:
    write(fs.root / "theirs", 10)  # owned by root
    write(fs.root / "mine", 10)
    chown_tree(fs.root / "mine", NOBODY)
    fs.root.chmod(0o1777)

    result = purge_as(NOBODY, fs.root, NO_KEEP)

    assert entries(fs.root) == {b"theirs"} and result.errors == 1


# --- modes and settings ---------------------------------------------------------------------


def purge_config(**env: str) -> config_mod.Config:
    values = {"TMP_MONITOR_PURGE": "always", **env}
    warnings: list[str] = []
    return config_mod.load(values, warnings.append)


def test_off_is_a_no_op(fs: Fs) -> None:
    sample_tree(fs.root)
    before = snapshot(fs.root)
    purger = make_purger(config_mod.load({}, print), root=str(fs.root))

    assert purger(1 << 40) is None
    assert snapshot(fs.root) == before


def test_threshold_purges_only_above_it(fs: Fs) -> None:
    write(fs.root / "big", 2 << 20)
    cfg = purge_config(TMP_MONITOR_PURGE="threshold", TMP_MONITOR_PURGE_THRESHOLD_MB="1")
    purger = make_purger(cfg, root=str(fs.root))

    assert purger(1 << 20) is None  # at the threshold: not above it
    assert entries(fs.root) == {b"big"}
    result = purger((1 << 20) + 1)
    assert result is not None and result.files == 1 and os.listdir(fs.root) == []


def test_dry_run_setting(fs: Fs) -> None:
    write(fs.root / "x", 10_000)
    purger = make_purger(purge_config(TMP_MONITOR_DRY_RUN="true"), root=str(fs.root))

    result = purger(0)

    assert result is not None and result.dry_run and result.bytes == allocated(fs.root / "x")
    assert entries(fs.root) == {b"x"}


@pytest.mark.parametrize(
    "env",
    [
        {"TMP_MONITOR_PURGE": "bogus"},
        {"TMP_MONITOR_PURGE_THRESHOLD_MB": "-1"},
        {"TMP_MONITOR_KEEP": "/abs"},
        {"TMP_MONITOR_KEEP": "../x"},
        {"TMP_MONITOR_DRY_RUN": "maybe"},
    ],
)
def test_each_bad_purge_setting_leaves_the_root_untouched(fs: Fs, env: dict[str, str]) -> None:
    sample_tree(fs.root)
    before = snapshot(fs.root)
    purger = make_purger(purge_config(**env), root=str(fs.root))

    assert purger(1 << 40) is None
    assert snapshot(fs.root) == before


def test_errors_are_said_once_per_reason(fs: Fs) -> None:
    warnings: list[str] = []
    purger = make_purger(purge_config(), root=str(fs.root / "missing"), warn=warnings.append)

    for _ in range(3):
        result = purger(0)
        assert result is not None and result.errors == 1

    assert len(warnings) == 1


def test_budget_follows_the_deadline() -> None:
    now = 1_000_000.0
    assert budget_s(None, now) == MAX_BUDGET_S
    assert budget_s(now * 1000 + 60_000, now) == MAX_BUDGET_S
    assert budget_s(now * 1000 + 400, now) == pytest.approx(0.2)
    assert budget_s(now * 1000 - 5, now) == 0.0


def test_anchored_patterns_match_after_subtrees_they_cannot_match(fs: Fs) -> None:
    # The purge skips keep checks below folders no pattern can reach, and must still know
    # where it is when it comes back up from them: whichever of x/p and x/q comes second is
    # reached after a walk through the first one's subtree.
    for top in ("a", "z", "x/p/sub", "x/q/sub"):
        (fs.root / top).mkdir(parents=True)
        os.close(make_deep(fs.root / top, 80))
    write(fs.root / "x" / "p" / "keep", 10)
    write(fs.root / "x" / "q" / "keep", 10)
    write(fs.root / "m" / "x" / "p" / "keep", 10)  # anchored: only x/... at the root

    result = purge_tree(str(fs.root), keep_mod.parse("x/p/keep,x/q/keep"))

    assert entries(fs.root) == {b"x", b"x/p", b"x/p/keep", b"x/q", b"x/q/keep"}
    assert result.kept_pattern == 2


# --- any tree, any keep list: what stays is exactly what the rules say -----------------------

_NAMES = st.sampled_from(["a", "b", "c.db", "x", "keep", "_MEI1", "n\nl", "\udcff"])
_KINDS = st.sampled_from(["file", "dir", "link", "fifo"])
_PATTERNS = st.lists(
    st.sampled_from(["*.db", "keep", "a/b", "x/**/c.db", "b/", "a/*/x", "**/keep/a", "c.db/"]),
    max_size=3,
)


@st.composite
def trees(draw: st.DrawFn) -> list[tuple[tuple[str, ...], str]]:
    """Entries (path segments, kind), parents before children."""
    out: list[tuple[tuple[str, ...], str]] = []
    dirs: list[tuple[str, ...]] = [()]
    taken: set[tuple[str, ...]] = set()
    for _ in range(draw(st.integers(0, 25))):
        parent = draw(st.sampled_from(dirs))
        path = (*parent, draw(_NAMES))
        if path in taken or len(path) > 5:
            continue
        taken.add(path)
        kind = draw(_KINDS)
        out.append((path, kind))
        if kind == "dir":
            dirs.append(path)
    return out


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(tree=trees(), patterns=_PATTERNS)
def test_what_stays_is_what_the_rules_keep(
    fs: Fs, tree: list[tuple[tuple[str, ...], str]], patterns: list[str]
) -> None:
    root = fs.root / uuid.uuid4().hex
    root.mkdir()
    for path, kind in tree:
        target = root.joinpath(*path)
        if kind == "file":
            write(target, 10)
        elif kind == "dir":
            target.mkdir()
        elif kind == "link":
            os.symlink(fs.outside, target)
        else:
            os.mkfifo(target)
    keep = keep_mod.compile_patterns(patterns)

    purge_tree(str(root), keep)

    # The model: an entry stays if the keep list keeps it (or a folder it is in), if it is a
    # FIFO, or if it is a folder holding something that stays.
    stays = {
        path for path, kind in tree if kind == "fifo" or keep.keeps("/".join(path), kind == "dir")
    }
    stays |= {path[:i] for path in stays for i in range(1, len(path))}
    expected = {os.fsencode("/".join(path)) for path in stays}
    assert entries(root) == expected
