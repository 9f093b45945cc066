"""What the processes of the environment hold open on one file system, read from /proc.

The purge keeps every file that a process holds open (an fd), maps (a shared library, an mmap'd
database) or works in (its cwd), and finds out afterwards which of the files it unlinked were
still held (their space is not freed until the last holder lets go).

A process is read through /proc/<pid>/fd, /proc/<pid>/maps and /proc/<pid>/cwd, which the kernel
lets a process of the same uid read unless the target made itself non-dumpable. Processes that
cannot be read are counted apart: those of the caller's own uid (the function's: what they hold
is not protected, so the caller should say so), and those of other users (the platform's own
init, which holds nothing of the function's). Threads that unshared their fd table
(rare) show their own fds only under /proc/<pid>/task/<tid>/fd, which is not read.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["HeldFiles", "held_files", "unlinked_open_files"]


@dataclass(frozen=True, slots=True)
class HeldFiles:
    """Inodes of one file system that processes hold, at the instant of the scan."""

    inodes: frozenset[int]  # held through an fd, a mapping or a cwd
    unlinked: Mapping[int, int]  # inode -> allocated bytes, of fds on files with no link left
    processes: int  # processes read
    unreadable: int  # processes of the caller's uid whose fds or maps could not be read
    foreign: int  # processes of other users that could not be read


def _maps_device(dev: int) -> str:
    # /proc/<pid>/maps prints the device as "%02x:%02x" (major, minor): fs/proc/task_mmu.c.
    return f"{os.major(dev):02x}:{os.minor(dev):02x}"


def _read_fds(fd_dir: str, dev: int, inodes: set[int], unlinked: dict[int, int]) -> None:
    """Adds the inodes on dev behind the fds listed in fd_dir; raises OSError if unreadable."""
    for name in os.listdir(fd_dir):
        try:
            # stat() follows the magic link to the open file itself, even one that has been
            # unlinked or lies outside our mount namespace.
            st = os.stat(f"{fd_dir}/{name}")
        except OSError:
            continue  # closed meanwhile
        if st.st_dev != dev:
            continue
        inodes.add(st.st_ino)
        if st.st_nlink == 0:
            unlinked[st.st_ino] = st.st_blocks * 512


def _read_maps(maps_path: str, device: str, inodes: set[int]) -> None:
    """Adds the inodes on device mapped by the process; raises OSError if unreadable."""
    with open(maps_path, "rb") as maps:
        data = maps.read()
    needle = f" {device} ".encode()
    for line in data.splitlines():
        if needle not in line:
            continue
        # address perms offset dev inode [path]: the path may hold blanks, the rest cannot.
        fields = line.split(maxsplit=5)
        if len(fields) >= 5 and fields[3] == needle[1:-1]:
            inode = int(fields[4])
            if inode:
                inodes.add(inode)


def _state_and_uid(status_path: str) -> tuple[bytes, int | None]:
    """The state letter and real uid of /proc/<pid>/status, world-readable even for a process
    whose other /proc files are closed to its own user."""
    state, uid = b"?", None
    try:
        with open(status_path, "rb") as status:
            for line in status:
                if line.startswith(b"State:"):
                    state = line.split()[1]
                elif line.startswith(b"Uid:"):
                    uid = int(line.split()[1])
                    break  # Uid comes after State
    except (OSError, ValueError, IndexError):
        pass
    return state, uid


def _pids(proc_root: str) -> list[str]:
    self_pid = os.readlink(f"{proc_root}/self")
    return [pid for pid in os.listdir(proc_root) if pid.isdigit() and pid != self_pid]


def held_files(proc_root: str, dev: int) -> HeldFiles:
    """Files on the file system dev that the processes under proc_root hold, but the caller.

    Raises OSError only when proc_root itself cannot be listed.
    """
    device = _maps_device(dev)
    inodes: set[int] = set()
    unlinked: dict[int, int] = {}
    processes = unreadable = foreign = 0
    for pid in _pids(proc_root):
        base = f"{proc_root}/{pid}"
        try:
            _read_fds(f"{base}/fd", dev, inodes, unlinked)
            _read_maps(f"{base}/maps", device, inodes)
        except OSError as error:
            if error.errno in (errno.ENOENT, errno.ESRCH):
                continue  # it ended meanwhile
            state, uid = _state_and_uid(f"{base}/status")
            if state in (b"Z", b"X"):
                continue  # a zombie holds nothing, but its fds are closed to everyone but root
            # A process of our own user hides its fds by making itself non-dumpable; that
            # does not hide them from root, so what root cannot read is a platform's process
            # (the VM's init here), not the function's.
            if uid in (os.getuid(), None) and os.getuid() != 0:
                unreadable += 1
            else:
                foreign += 1
            continue
        try:
            cwd = os.stat(f"{base}/cwd")
        except OSError:
            pass  # a zombie has no cwd; its fds and maps were read above
        else:
            if cwd.st_dev == dev:
                inodes.add(cwd.st_ino)
        processes += 1
    return HeldFiles(frozenset(inodes), unlinked, processes, unreadable, foreign)


def unlinked_open_files(proc_root: str, dev: int) -> dict[int, int]:
    """Inode -> allocated bytes of the files on dev that have no link left but an open fd.

    The cheaper half of held_files (fds only), for the check after a purge.
    """
    inodes: set[int] = set()
    unlinked: dict[int, int] = {}
    for pid in _pids(proc_root):
        try:
            _read_fds(f"{proc_root}/{pid}/fd", dev, inodes, unlinked)
        except OSError:
            continue  # ended, or unreadable: held_files counted those
    return unlinked
