"""Page-cache residency of files: how many of their bytes sit in memory (mincore(2)).

A file is mapped read-only and shared (nothing is read, so nothing is brought into the cache),
mincore reports one byte per page, the mapping is dropped. This works on 4.14 and 5.10
(cachestat(2) needs 6.5).

Residency of 1,000 files costs more than the PostRuntimeMs budget allows if every file is
measured at every end of the runtime, so results are cached per inode and reused while the
file's (size, mtime) is unchanged. The price: a file nobody wrote since it was measured keeps
its measured residency even if the kernel evicted it meanwhile (or someone called
posix_fadvise(DONTNEED) on it without writing). Any write changes mtime and forces a fresh
measurement.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import ctypes

_PROT_READ = 0x1
_MAP_SHARED = 0x01
_MAP_FAILED = (1 << 64) - 1  # (void *) -1 as ctypes gives it back for a c_void_p
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
# Cache bound: beyond it files are still measured, just not remembered (memory budget).
MAX_CACHED = 20_000
# mincore writes 1 in the low bit of a resident page's byte; the other bits are reserved.
_LOW_BIT = bytes(b & 1 for b in range(256))


def _load_libc() -> ctypes.CDLL:
    import ctypes  # here: the first measurement pays for it, not the cold start

    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
    except OSError:
        libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [
        ctypes.c_void_p,
        ctypes.c_size_t,
        ctypes.c_int,
        ctypes.c_int,
        ctypes.c_int,
        ctypes.c_long,
    ]
    libc.munmap.restype = ctypes.c_int
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    libc.mincore.restype = ctypes.c_int
    libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
    return libc


_libc: ctypes.CDLL | None = None


_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


def resident_bytes(path: str, dir_fd: int | None = None) -> int:
    """Bytes of the file at path (relative to dir_fd, if given) in the page cache now.

    Raises OSError. O_NONBLOCK: a FIFO swapped in for the file does not hang the open.
    """
    fd = os.open(path, _OPEN_FLAGS, dir_fd=dir_fd)
    try:
        return _resident_fd(fd, os.fstat(fd).st_size)
    finally:
        os.close(fd)


def _resident_fd(fd: int, size: int) -> int:
    import ctypes  # loaded by _load_libc: a dictionary lookup from the second file on

    global _libc
    if size <= 0:
        return 0
    if _libc is None:
        _libc = _load_libc()
    libc = _libc
    pages = (size + PAGE_SIZE - 1) // PAGE_SIZE
    addr = libc.mmap(None, size, _PROT_READ, _MAP_SHARED, fd, 0)
    if addr is None or addr == _MAP_FAILED:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    try:
        vec = (ctypes.c_ubyte * pages)()
        if libc.mincore(addr, size, vec) != 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err))
    finally:
        libc.munmap(addr, size)
    # Whole pages, as fincore(1) counts them: comparable with allocated (block) bytes.
    return bytes(vec).translate(_LOW_BIT).count(1) * PAGE_SIZE


# Per inode: (size, mtime_ns, resident bytes). A tuple, not a dataclass: visit runs once per
# file at every end of the runtime (PostRuntimeMs), and a tuple is built and read faster.
_Entry = tuple[int, int, int]


class ResidencyCache:
    """Residency of regular files, remembered per (dev, ino) while (size, mtime) holds."""

    def __init__(self) -> None:
        self._entries: dict[tuple[int, int], _Entry] = {}
        # This pass's entries: what end() keeps (files the pass did not see are forgotten).
        self._current: dict[tuple[int, int], _Entry] = {}
        self._added = 0  # files this pass cached that the last pass had not
        self.total = 0
        self.errors = 0
        self.measured = 0

    def begin(self) -> None:
        """Start a pass over the files (one walk)."""
        self._current = {}
        self._added = 0
        self.total = 0
        self.errors = 0
        self.measured = 0

    def visit(self, dir_fd: int, name: str, st: os.stat_result) -> None:
        """Add the file's resident bytes to this pass (a tmpfs.walk visitor)."""
        key = (st.st_dev, st.st_ino)
        entry = self._entries.get(key)
        if entry is not None and entry[0] == st.st_size and entry[1] == st.st_mtime_ns:
            self._current[key] = entry
            self.total += entry[2]
            return
        try:
            resident = resident_bytes(name, dir_fd)
        except OSError:
            self.errors += 1
            return
        self.measured += 1
        self.total += resident
        if entry is None:
            if len(self._entries) + self._added >= MAX_CACHED:
                return
            self._added += 1
        self._current[key] = (st.st_size, st.st_mtime_ns, resident)

    def end(self) -> int:
        """Finish the pass: forget files it did not see; return the resident bytes found."""
        self._entries = self._current
        self._current = {}
        return self.total
