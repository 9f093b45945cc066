"""Readers of /proc: which processes are the function's, and how much memory they hold.

How the function's processes are told apart from the extensions (the README repeats this):

- The environment is every process in the monitor's own memory cgroup (the platform's init,
  PID 1 of the sandbox, is outside it and so never counted).
- A process of the environment is the function's when its /proc/<pid>/environ holds
  LAMBDA_TASK_ROOT, or when its parent is a function process. Lambda gives LAMBDA_TASK_ROOT to
  the runtime and never to extensions, so the runtime and everything it starts is the function;
  every other process of the environment (extensions, and their children) is not.
- Each pid is classified once, when it first appears, and keyed by (pid, starttime) so a reused
  pid is never mistaken for the process it replaced.

Every function takes the /proc root it reads; a /proc/<pid> that vanishes while being read is
skipped (the process exited), never an error.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

_TASK_ROOT = b"LAMBDA_TASK_ROOT="
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


@dataclass(frozen=True, slots=True)
class ProcStat:
    """The fields of /proc/<pid>/stat we need."""

    ppid: int
    starttime: int  # clock ticks after boot: with the pid, names one process for ever
    cpu_ticks: int  # utime + stime


def pids(proc_root: str) -> list[int]:
    """Every pid /proc lists (in the sandbox's PID namespace: the environment and its init)."""
    return [int(name) for name in os.listdir(proc_root) if name.isdigit()]


def proc_stat(proc_root: str, pid: int) -> ProcStat | None:
    """/proc/<pid>/stat, or None if the process is gone."""
    try:
        with open(f"{proc_root}/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    # comm (field 2) may hold spaces and parentheses: the fields we want follow the last ")".
    fields = data[data.rfind(b")") + 2 :].split()
    try:
        return ProcStat(
            ppid=int(fields[1]),
            starttime=int(fields[19]),
            cpu_ticks=int(fields[11]) + int(fields[12]),
        )
    except (IndexError, ValueError):
        return None


def rss_bytes(proc_root: str, pid: int) -> int | None:
    """Resident set size from /proc/<pid>/statm (what ps -o rss shows), or None if gone."""
    try:
        with open(f"{proc_root}/{pid}/statm", "rb") as f:
            data = f.read()
    except OSError:
        return None
    fields = data.split()
    if len(fields) < 2:
        return None  # a zombie has an empty statm
    return int(fields[1]) * PAGE_SIZE


def has_task_root(proc_root: str, pid: int) -> bool | None:
    """Whether /proc/<pid>/environ holds LAMBDA_TASK_ROOT; None if it cannot be read.

    environ is readable only by the process's owner (or root); a kernel thread or a zombie
    shows it empty.
    """
    try:
        with open(f"{proc_root}/{pid}/environ", "rb") as f:
            data = f.read()
    except OSError:
        return None
    return data.startswith(_TASK_ROOT) or (b"\0" + _TASK_ROOT) in data


def memory_cgroup(proc_root: str, pid: int | str) -> str | None:
    """The memory cgroup of a process: the v1 memory line, else the v2 line; None if gone."""
    try:
        with open(f"{proc_root}/{pid}/cgroup", encoding="ascii", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    unified: str | None = None
    for line in lines:
        hierarchy, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if "memory" in controllers.split(","):
            return "1:" + path
        if hierarchy == "0" and controllers == "":
            unified = "2:" + path
    return unified


@dataclass(frozen=True, slots=True)
class Census:
    """The environment's processes at one instant, as the classifier sees them."""

    function_pids: tuple[int, ...]
    other_pids: tuple[int, ...]  # extensions, the monitor included


class Classifier:
    """Sorts the pids of /proc into the function's and the rest, each pid once.

    It remembers a pid while /proc keeps listing it; a pid that leaves the listing is
    forgotten, so a later process with the same pid is classified afresh.
    """

    def __init__(self, proc_root: str, own_pid: int) -> None:
        self._root = proc_root
        self._own_cgroup = memory_cgroup(proc_root, own_pid)
        # pid -> (starttime, True: function, False: other environment process, None: outside)
        self._known: dict[int, tuple[int, bool | None]] = {}

    def census(self) -> Census:
        try:
            listed = pids(self._root)
        except OSError:
            return Census((), ())
        known = self._known
        listed_set = set(listed)
        for pid in [p for p in known if p not in listed_set]:
            del known[pid]
        function: list[int] = []
        other: list[int] = []
        # Parents before children, so a child can inherit its parent's class (pids grow
        # between wraparounds; a reparented child simply falls back to its environ).
        for pid in sorted(listed):
            entry = known.get(pid)
            if entry is None:
                entry = self._classify(pid)
                if entry is None:
                    continue  # vanished while we looked
                known[pid] = entry
            kind = entry[1]
            if kind is True:
                function.append(pid)
            elif kind is False:
                other.append(pid)
        return Census(tuple(function), tuple(other))

    def forget(self, pid: int) -> None:
        """Classify pid afresh at the next census (its process was seen to exit)."""
        self._known.pop(pid, None)

    def _classify(self, pid: int) -> tuple[int, bool | None] | None:
        st = proc_stat(self._root, pid)
        if st is None:
            return None
        if self._own_cgroup is not None and memory_cgroup(self._root, pid) != self._own_cgroup:
            return (st.starttime, None)
        if has_task_root(self._root, pid):
            return (st.starttime, True)
        parent = self._known.get(st.ppid)
        return (st.starttime, parent is not None and parent[1] is True)


class RssReader:
    """Summed RSS of processes from their /proc/<pid>/statm, kept open between ticks.

    A pread of an open statm costs about a third of open + read + close (measured 0.03 against
    0.13 ms on a cold cache, which is what a tick every few tens of milliseconds sees), and the
    sampler reads it for every function process at every tick.
    """

    def __init__(self, proc_root: str) -> None:
        self._root = proc_root
        self._fds: dict[int, int] = {}
        self.gone: list[int] = []  # pids whose statm stopped answering at the last total()

    def total(self, pids_: tuple[int, ...]) -> int:
        fds = self._fds
        for pid in [p for p in fds if p not in pids_]:
            os.close(fds.pop(pid))
        self.gone = []
        total = 0
        for pid in pids_:
            fd = fds.get(pid)
            try:
                if fd is None:
                    fd = fds[pid] = os.open(f"{self._root}/{pid}/statm", os.O_RDONLY | os.O_CLOEXEC)
                fields = os.pread(fd, 256, 0).split()
            except OSError:
                fields = []  # exited (ESRCH on the kept fd, ENOENT on open)
            if len(fields) < 2:
                self.gone.append(pid)
                continue
            total += int(fields[1]) * PAGE_SIZE
        return total

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()


def total_cpu_ticks(proc_root: str, pids_: tuple[int, ...]) -> int:
    """Summed utime + stime of the given processes (clock ticks); exited ones count 0."""
    total = 0
    for pid in pids_:
        st = proc_stat(proc_root, pid)
        if st is not None:
            total += st.cpu_ticks
    return total
