"""Reader of the environment's memory: the monitor's own memory cgroup, v1 or v2.

Lambda's kernels are 4.14 and 5.10+ (SPEC 10), so only files both have are used:
v1 memory.usage_in_bytes, v2 memory.current (never memory.peak). Both count page cache
charged to the group, /tmp's dirty and cached pages included.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from tmp_monitor import procfs

_USAGE_FILE = {"cgroup1": "memory.usage_in_bytes", "cgroup2": "memory.current"}


@dataclass(frozen=True, slots=True)
class MemoryCgroup:
    kind: str  # "cgroup1" or "cgroup2": the value of property memorySource
    directory: str
    usage_file: str


def _unescape(field: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as octal (\040 ...).
    return field.encode().decode("unicode_escape") if "\\" in field else field


def _mounts(proc_root: str, pid: int | str) -> list[tuple[str, str, str, str]]:
    """(fstype, super options, mount root, mount point) of each mount in mountinfo."""
    with open(f"{proc_root}/{pid}/mountinfo", encoding="utf-8", errors="replace") as f:
        lines = f.read().splitlines()
    mounts = []
    for line in lines:
        head, sep, tail = line.partition(" - ")
        if not sep:
            continue
        left = head.split()
        right = tail.split()
        if len(left) < 5 or len(right) < 3:
            continue
        mounts.append((right[0], right[2], _unescape(left[3]), _unescape(left[4])))
    return mounts


def find_memory_cgroup(proc_root: str, pid: int | str = "self") -> MemoryCgroup | None:
    """The memory cgroup directory of a process, or None when it cannot be found or read."""
    line = procfs.memory_cgroup(proc_root, pid)
    if line is None:
        return None
    version, _, path = line.partition(":")
    kind = "cgroup1" if version == "1" else "cgroup2"
    try:
        mounts = _mounts(proc_root, pid)
    except OSError:
        return None
    for fstype, options, mount_root, mount_point in mounts:
        if kind == "cgroup1" and not (fstype == "cgroup" and "memory" in options.split(",")):
            continue
        if kind == "cgroup2" and fstype != "cgroup2":
            continue
        # With a cgroup namespace the mount root is "/" and the path is relative to it; in
        # a bind mount of a sub-tree the path starts with the mount root.
        if mount_root != "/" and not (path == mount_root or path.startswith(mount_root + "/")):
            continue
        relative = path[len(mount_root) :] if mount_root != "/" else path
        directory = mount_point.rstrip("/") + relative
        usage_file = f"{directory.rstrip('/')}/{_USAGE_FILE[kind]}"
        if os.access(usage_file, os.R_OK):
            return MemoryCgroup(kind=kind, directory=directory, usage_file=usage_file)
    return None


def memory_bytes(group: MemoryCgroup) -> int | None:
    """Bytes charged to the group now, or None when the file is gone or unreadable."""
    try:
        with open(group.usage_file, "rb") as f:
            return int(f.read())
    except (OSError, ValueError):
        return None


class UsageReader:
    """memory_bytes through a file descriptor kept open: a pread per tick instead of an open,
    a read and a close (cgroup files are generated afresh at each read from offset 0)."""

    def __init__(self, group: MemoryCgroup) -> None:
        self.group = group
        self._fd: int | None = None

    def read(self) -> int | None:
        try:
            if self._fd is None:
                self._fd = os.open(self.group.usage_file, os.O_RDONLY | os.O_CLOEXEC)
            return int(os.pread(self._fd, 64, 0))
        except (OSError, ValueError):
            self.close()
            return memory_bytes(self.group)  # reopened, or None when it is gone

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
