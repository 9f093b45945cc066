"""Readers of the /tmp file system: statvfs figures and an allocated-bytes walk.

Every function takes the root it reads, so tests point it at any directory.
"""

from __future__ import annotations

import errno
import heapq
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class FsUsage:
    """statvfs of the file system holding root, in bytes."""

    used_bytes: int  # (f_blocks - f_bfree) * f_frsize: the reserved blocks are not "used"
    free_bytes: int  # f_bavail * f_frsize: what an unprivileged writer can still use


@dataclass(frozen=True, slots=True)
class TopFile:
    path: str  # relative to the walked root, "/" separators
    bytes: int  # allocated


@dataclass(frozen=True, slots=True)
class TmpWalk:
    """What a walk found below root (root itself not counted: it belongs to the empty fs)."""

    allocated_bytes: int  # st_blocks * 512 of every entry, each hard-linked inode once
    files: int  # regular files (inodes), hard links once
    top_files: tuple[TopFile, ...]  # largest regular files first, at most the number asked
    errors: int  # entries that vanished or could not be read while walking


# Called for each regular file (each inode once): the fd of its folder, its name and its lstat.
FileVisitor = Callable[[int, str, os.stat_result], None]

_FMT = 0o170000  # stat.S_IFMT, inlined: the walk's inner loop runs once per entry
_DIR = stat.S_IFDIR
_REG = stat.S_IFREG
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def fs_usage(root: str) -> FsUsage:
    """statvfs of root. Raises OSError if root is not there."""
    st = os.statvfs(root)
    return FsUsage(
        used_bytes=(st.f_blocks - st.f_bfree) * st.f_frsize,
        free_bytes=st.f_bavail * st.f_frsize,
    )


# mkfs.ext4 makes lost+found at the root: part of the empty file system (its blocks are in the
# baseline), root's own (mode 700: unreadable to the function's user, and to us on Lambda).
FS_OWN = "lost+found"


def is_empty(root: str) -> bool:
    """True when root has no entries but lost+found (the check that lets Init skip a walk)."""
    with os.scandir(root) as it:
        return all(entry.name == FS_OWN for entry in it)


def _open_folder(base: str, rel: str) -> int:
    """An fd of the folder rel below base. A path longer than one open takes (PATH_MAX: 4,096
    bytes, reached by a chain of a few hundred folders) is opened one folder at a time."""
    try:
        return os.open(f"{base}/{rel}" if rel else base, _DIR_FLAGS)
    except OSError as exc:
        if exc.errno != errno.ENAMETOOLONG:
            raise
    fd = os.open(base, _DIR_FLAGS)
    for part in rel.split("/"):
        try:
            child = os.open(part, _DIR_FLAGS, dir_fd=fd)
        finally:
            os.close(fd)
        fd = child
    return fd


def walk(root: str, top_n: int = 0, on_file: FileVisitor | None = None) -> TmpWalk:
    """Allocated bytes and regular files below root (root's lost+found left out: FS_OWN).

    Iterative (no recursion limit), never follows symlinks, never descends into another
    file system (st_dev differs from root's). Entries that vanish mid-walk are skipped and
    counted in errors: the function may be deleting files while we look.

    Each folder is opened and listed through its fd, so every entry's lstat is an fstatat
    relative to it (no lookup of the whole path for each file): 1,000 files must be walked
    well within PostRuntimeMs' 5 ms.
    """
    root_dev = os.lstat(root).st_dev
    seen: set[tuple[int, int]] = set()
    allocated = 0
    files = 0
    errors = 0
    top: list[tuple[int, str]] = []  # min-heap of (bytes, relpath), size <= top_n
    stack: list[str] = [""]  # folders to list, relative to root ("" is root)
    base = root.rstrip("/") or "/"
    while stack:
        rel = stack.pop()
        try:
            fd = _open_folder(base, rel)
        except OSError:
            errors += 1
            continue
        try:
            with os.scandir(fd) as it:
                for entry in it:
                    name = entry.name
                    if not rel and name == FS_OWN:
                        continue
                    try:
                        st = entry.stat(follow_symlinks=False)
                    except OSError:
                        errors += 1
                        continue
                    if st.st_dev != root_dev:
                        continue  # a mount point below root: another file system's bytes
                    fmt = st.st_mode & _FMT
                    if st.st_nlink > 1 and fmt != _DIR:
                        key = (st.st_dev, st.st_ino)
                        if key in seen:
                            continue
                        seen.add(key)
                    allocated += st.st_blocks
                    if fmt == _DIR:
                        stack.append(f"{rel}/{name}" if rel else name)
                    elif fmt == _REG:
                        files += 1
                        if on_file is not None:
                            on_file(fd, name, st)
                        if top_n > 0:
                            item = (st.st_blocks * 512, f"{rel}/{name}" if rel else name)
                            if len(top) < top_n:
                                heapq.heappush(top, item)
                            elif item > top[0]:
                                heapq.heapreplace(top, item)
        except OSError:
            errors += 1  # the folder went away while listed
        finally:
            os.close(fd)
    ranked = sorted(top, reverse=True)
    return TmpWalk(
        allocated_bytes=allocated * 512,
        files=files,
        top_files=tuple(TopFile(path=p, bytes=b) for b, p in ranked),
        errors=errors,
    )
