"""Readers of the /tmp file system: statvfs figures and an allocated-bytes walk.

Every function takes the root it reads, so tests point it at any directory.
"""

from __future__ import annotations

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


# Called for each regular file (each inode once): its path and lstat result.
FileVisitor = Callable[[str, os.stat_result], None]


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


def walk(root: str, top_n: int = 0, on_file: FileVisitor | None = None) -> TmpWalk:
    """Allocated bytes and regular files below root (root's lost+found left out: FS_OWN).

    Iterative (no recursion limit), never follows symlinks, never descends into another
    file system (st_dev differs from root's). Entries that vanish mid-walk are skipped and
    counted in errors: the function may be deleting files while we look.
    """
    root_dev = os.lstat(root).st_dev
    seen: set[tuple[int, int]] = set()
    allocated = 0
    files = 0
    errors = 0
    top: list[tuple[int, str]] = []  # min-heap of (bytes, relpath), size <= top_n
    stack: list[str] = [root]
    prefix = len(root.rstrip("/")) + 1
    while stack:
        directory = stack.pop()
        try:
            it = os.scandir(directory)
        except OSError:
            errors += 1
            continue
        with it:
            for entry in it:
                if directory == root and entry.name == FS_OWN:
                    continue
                try:
                    st = entry.stat(follow_symlinks=False)
                except OSError:
                    errors += 1
                    continue
                if st.st_dev != root_dev:
                    continue  # a mount point below root: another file system's bytes
                if st.st_nlink > 1 and not stat.S_ISDIR(st.st_mode):
                    key = (st.st_dev, st.st_ino)
                    if key in seen:
                        continue
                    seen.add(key)
                size = st.st_blocks * 512
                allocated += size
                if stat.S_ISDIR(st.st_mode):
                    stack.append(entry.path)
                elif stat.S_ISREG(st.st_mode):
                    files += 1
                    if on_file is not None:
                        on_file(entry.path, st)
                    if top_n > 0:
                        item = (size, entry.path[prefix:])
                        if len(top) < top_n:
                            heapq.heappush(top, item)
                        elif item > top[0]:
                            heapq.heapreplace(top, item)
    ranked = sorted(top, reverse=True)
    return TmpWalk(
        allocated_bytes=allocated,
        files=files,
        top_files=tuple(TopFile(path=p, bytes=b) for b, p in ranked),
        errors=errors,
    )
