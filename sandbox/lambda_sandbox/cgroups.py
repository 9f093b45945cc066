"""The cgroups of one execution environment: memory, cpu and freezer, v1 or v2.

v1 (separate hierarchies, as on this machine): ROOT/{memory,cpu,freezer}/lambda-sandbox/ID.
v2 (one unified hierarchy mounted at ROOT): ROOT/lambda-sandbox/ID, with memory and cpu enabled
in the subtree of lambda-sandbox. A machine with v1 memory controller uses v1, even where a
cgroup2 file system is mounted beside it (hybrid layout): the memory controller is the one
that matters.

ID is "<host pid>-<its start time>-<random>" of the process that made it, so a later run can
tell leftovers of dead sandboxes (`clean_stale`) from the groups of live ones.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

PARENT = "lambda-sandbox"
CFS_PERIOD_US = 100_000
MB_PER_VCPU = 1769


class CgroupError(Exception):
    """A cgroup file could not be written or read; the message names it."""


@dataclass(frozen=True)
class Layout:
    """Where the controllers live: version 1 or 2 and the cgroup file system root."""

    version: int
    root: Path

    def controller_dir(self, controller: str) -> Path:
        return self.root / controller if self.version == 1 else self.root


def missing_controllers(root: Path) -> list[str]:
    """Controllers among memory, cpu and freezer that neither v1 nor v2 offers under root."""
    if (root / "memory" / "memory.limit_in_bytes").exists():
        # the freezer's root group has no freezer.state; any hierarchy mounted there will do
        wanted = {"cpu": "cpu.cfs_quota_us", "freezer": "cgroup.procs"}
        return [c for c, f in wanted.items() if not (root / c / f).exists()]
    try:
        available = (root / "cgroup.controllers").read_text().split()
    except OSError:
        return ["memory", "cpu", "freezer"]
    # v2 has no freezer controller: cgroup.freeze is core (Linux 5.2+), in every non-root group.
    return [c for c in ("memory", "cpu") if c not in available]


def detect(root: Path) -> Layout:
    if (root / "memory" / "memory.limit_in_bytes").exists():
        return Layout(1, root)
    return Layout(2, root)


def process_start_time(pid: int) -> str | None:
    """Field 22 of /proc/PID/stat (start time in clock ticks), or None if there is no PID."""
    try:
        data = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return data.rsplit(")", 1)[1].split()[19]


def new_id() -> str:
    pid = os.getpid()
    return f"{pid}-{process_start_time(pid)}-{secrets.token_hex(4)}"


def owner_alive(name: str) -> bool:
    """Whether the process that made the sandbox called name still runs."""
    parts = name.split("-")
    if len(parts) != 3 or not parts[0].isdigit():
        return True  # not ours: never touch it
    return process_start_time(int(parts[0])) == parts[1]


def _write(path: Path, value: str) -> None:
    try:
        path.write_text(value)
    except OSError as exc:
        raise CgroupError(f"cannot write {value!r} to {path}: {exc.strerror}") from exc


@dataclass(frozen=True)
class Cgroups:
    layout: Layout
    name: str

    def dir(self, controller: str) -> Path:
        return self.layout.controller_dir(controller) / PARENT / self.name

    @property
    def dirs(self) -> tuple[Path, ...]:
        if self.layout.version == 2:
            return (self.dir("memory"),)
        return tuple(self.dir(c) for c in ("memory", "cpu", "freezer"))

    @property
    def procs_files(self) -> tuple[Path, ...]:
        return tuple(d / "cgroup.procs" for d in self.dirs)

    @property
    def freeze_file(self) -> tuple[Path, str, str]:
        """(file, frozen value, thawed value)."""
        if self.layout.version == 1:
            return self.dir("freezer") / "freezer.state", "FROZEN", "THAWED"
        return self.dir("memory") / "cgroup.freeze", "1", "0"

    def pids(self) -> list[int]:
        try:
            text = (self.dir("memory") / "cgroup.procs").read_text()
        except FileNotFoundError:
            return []
        return [int(p) for p in text.split()]

    def _read(self, file: str) -> str:
        path = self.dir("memory") / file
        try:
            return path.read_text()
        except OSError as exc:
            raise CgroupError(f"cannot read {path}: {exc.strerror}") from exc

    def memory_limit_bytes(self) -> int:
        file = "memory.limit_in_bytes" if self.layout.version == 1 else "memory.max"
        return int(self._read(file))

    def memory_usage_bytes(self) -> int:
        file = "memory.usage_in_bytes" if self.layout.version == 1 else "memory.current"
        return int(self._read(file))

    def has_peak(self) -> bool:
        return self.layout.version == 1 or (self.dir("memory") / "memory.peak").exists()

    def memory_peak_bytes(self) -> int:
        file = "memory.max_usage_in_bytes" if self.layout.version == 1 else "memory.peak"
        return int(self._read(file))

    def oom_kills(self) -> int:
        file = "memory.oom_control" if self.layout.version == 1 else "memory.events"
        for line in self._read(file).splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill":
                return int(value)
        return 0

    def freeze(self) -> None:
        path, frozen, _thawed = self.freeze_file
        _write(path, frozen)
        deadline = time.monotonic() + 5.0
        while not self.is_frozen():
            if time.monotonic() > deadline:
                raise CgroupError(f"{path}: processes did not freeze within 5 s")
            time.sleep(0.001)

    def is_frozen(self) -> bool:
        if self.layout.version == 1:
            return (self.dir("freezer") / "freezer.state").read_text().strip() == "FROZEN"
        events = (self.dir("memory") / "cgroup.events").read_text()
        return "frozen 1" in events.splitlines()

    def thaw(self) -> None:
        path, _frozen, thawed = self.freeze_file
        _write(path, thawed)

    def kill_all(self, timeout: float = 5.0) -> None:
        """SIGKILL every process, frozen first so none can fork past the kill."""
        kill_file = self.dir("memory") / "cgroup.kill"
        deadline = time.monotonic() + timeout
        while self.pids() and time.monotonic() < deadline:
            if self.layout.version == 2 and kill_file.exists():
                _write(kill_file, "1")
            else:
                with contextlib.suppress(CgroupError):
                    self.freeze()
                for pid in self.pids():
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                self.thaw()  # v1: a frozen task dies only when thawed
            time.sleep(0.002)

    def remove(self) -> None:
        """Kill what is left and remove the groups; EBUSY while exiting tasks unlink."""
        if not any(d.exists() for d in self.dirs):
            return
        self.kill_all()
        deadline = time.monotonic() + 5.0
        for d in self.dirs:
            while True:
                try:
                    d.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError as exc:
                    if exc.errno != errno.EBUSY or time.monotonic() > deadline:
                        raise CgroupError(f"cannot remove {d}: {exc.strerror}") from exc
                    time.sleep(0.005)


def remove_parents(layout: Layout) -> None:
    """Remove the lambda-sandbox parent groups if no other sandbox uses them (else EBUSY)."""
    controllers = ("memory", "cpu", "freezer") if layout.version == 1 else ("memory",)
    for controller in controllers:
        with contextlib.suppress(OSError):
            (layout.controller_dir(controller) / PARENT).rmdir()


def _ensure_parent(layout: Layout) -> None:
    if layout.version == 1:
        for controller in ("memory", "cpu", "freezer"):
            (layout.root / controller / PARENT).mkdir(exist_ok=True)
        return
    root_ctl = layout.root / "cgroup.subtree_control"
    enabled = root_ctl.read_text().split()
    missing = [c for c in ("memory", "cpu") if c not in enabled]
    if missing:
        _write(root_ctl, " ".join(f"+{c}" for c in missing))
    parent = layout.root / PARENT
    parent.mkdir(exist_ok=True)
    if not {"memory", "cpu"} <= set((parent / "cgroup.subtree_control").read_text().split()):
        _write(parent / "cgroup.subtree_control", "+memory +cpu")


def cpu_quota_us(cpus: float) -> int:
    return max(1000, round(CFS_PERIOD_US * cpus))


def create(layout: Layout, memory_mb: int, cpus: float) -> Cgroups:
    """Fresh groups: memory limited to memory_mb with no swap, CPU to `cpus` CPUs."""
    cg = Cgroups(layout, new_id())
    made: list[Path] = []
    try:
        for _attempt in range(5):
            _ensure_parent(layout)
            try:
                for d in cg.dirs:
                    d.mkdir()
                    made.append(d)
                break
            except FileNotFoundError:  # a closing sandbox removed the empty parent meanwhile
                for d in reversed(made):
                    d.rmdir()
                made.clear()
        limit = memory_mb * 1024 * 1024
        mem = cg.dir("memory")
        if layout.version == 1:
            _write(mem / "memory.limit_in_bytes", str(limit))
            if (mem / "memory.memsw.limit_in_bytes").exists():  # swap accounting on
                _write(mem / "memory.memsw.limit_in_bytes", str(limit))
            cpu = cg.dir("cpu")
            _write(cpu / "cpu.cfs_period_us", str(CFS_PERIOD_US))
            _write(cpu / "cpu.cfs_quota_us", str(cpu_quota_us(cpus)))
        else:
            _write(mem / "memory.max", str(limit))
            if (mem / "memory.swap.max").exists():
                _write(mem / "memory.swap.max", "0")
            _write(mem / "cpu.max", f"{cpu_quota_us(cpus)} {CFS_PERIOD_US}")
    except BaseException:
        for d in reversed(made):
            with contextlib.suppress(OSError):
                d.rmdir()
        raise
    return cg


def _stale_groups(layout: Layout) -> Iterator[str]:
    controllers = ("memory", "cpu", "freezer") if layout.version == 1 else ("memory",)
    seen: set[str] = set()
    for controller in controllers:
        parent = layout.controller_dir(controller) / PARENT
        with contextlib.suppress(OSError):
            for entry in parent.iterdir():
                if entry.is_dir() and entry.name not in seen and not owner_alive(entry.name):
                    seen.add(entry.name)
                    yield entry.name


def clean_stale(layout: Layout) -> list[str]:
    """Remove the groups of sandboxes whose process is gone; returns their names."""
    removed = []
    for name in _stale_groups(layout):
        with contextlib.suppress(CgroupError, OSError):
            Cgroups(layout, name).remove()
            removed.append(name)
    return removed


class PeakSampler:
    """Stand-in for memory.peak on v2 kernels before 5.19: samples memory.current.

    A sampled maximum misses spikes shorter than the interval, so it is used only when the
    kernel keeps no high-water mark itself."""

    def __init__(self, cg: Cgroups, interval: float = 0.005) -> None:
        self._cg = cg
        self._interval = interval
        self._peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="memory-peak", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            with contextlib.suppress(CgroupError):
                self._peak = max(self._peak, self._cg.memory_usage_bytes())

    def peak(self) -> int:
        with contextlib.suppress(CgroupError):
            self._peak = max(self._peak, self._cg.memory_usage_bytes())
        return self._peak

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


class ThrashGuard:
    """Ends a memory cgroup that thrashes instead of running out of memory (v1 only).

    Once the runtime's own files are charged to the environment (see langimage.py), a process
    that allocates past the limit does not meet the OOM killer at once: the kernel keeps
    reclaiming the pages of the code it runs, which it reads back at the next instruction, and
    retries the charge for as long as a reclaim frees anything. Measured at 128 MB: a Python
    function allocating 400 MB went on for 26 s to over 30 s (Task timed out) before the kernel
    killed it, where Lambda reports `signal: killed` at once. The kernel's memory pressure
    notification tells the two apart: "critical" (reclaim nearly fruitless) came 40-60 times in
    the first second of a thrashing Node.js function and 400 times a second from the Python one,
    once in all from a function writing 400 MB through /tmp at the same limit. At CRITICAL_PER_S
    such events within one second the guard SIGKILLs the group's largest process, as the OOM
    killer would pick it, and counts it as an OOM kill. v2 has no
    memory.pressure_level (its PSI triggers would do); there the kernel alone decides.
    """

    CRITICAL_PER_S = 30

    def __init__(self, cg: Cgroups) -> None:
        self._kills = 0
        self._lock = threading.Lock()
        self._cg = cg
        self._stop = False
        self._efd = -1
        self._thread: threading.Thread | None = None
        if cg.layout.version != 1:
            return
        mem = cg.dir("memory")
        efd = os.eventfd(0, os.EFD_CLOEXEC)
        try:
            level = os.open(mem / "memory.pressure_level", os.O_RDONLY | os.O_CLOEXEC)
            try:
                _write(mem / "cgroup.event_control", f"{efd} {level} critical")
            finally:
                os.close(level)
        except (OSError, CgroupError):  # a kernel without vmpressure: the kernel alone decides
            os.close(efd)
            return
        self._efd = efd
        self._thread = threading.Thread(target=self._run, name="thrash-guard", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        window_start, events, kernel_kills = 0.0, 0, 0
        while True:
            try:
                count = int.from_bytes(os.read(self._efd, 8), "little")
            except OSError:
                return
            if self._stop:
                return
            now = time.monotonic()
            with contextlib.suppress(CgroupError):
                if now - window_start > 1.0:
                    window_start, events, kernel_kills = now, 0, self._cg.oom_kills()
                events += count
                if events >= self.CRITICAL_PER_S:
                    self._kill_largest(kernel_kills)
                    window_start = 0.0

    def kills(self) -> int:
        """Kills of the guard's own; waits for one under way, so that whoever saw its victim
        exit finds it counted."""
        with self._lock:
            return self._kills

    def _kill_largest(self, window_kernel_kills: int) -> None:
        with self._lock:
            self._kill_largest_locked(window_kernel_kills)

    def _kill_largest_locked(self, window_kernel_kills: int) -> None:
        """SIGKILL the largest process, counted unless the kernel's OOM killer got it (it may
        be at it in the same moment: one kill must not count twice)."""
        kernel_kills = self._cg.oom_kills()  # before looking at the victim: see below
        if kernel_kills > window_kernel_kills:
            return  # the kernel has ended one meanwhile: it is not thrashing on
        page = os.sysconf("SC_PAGE_SIZE")
        sizes: list[tuple[int, int]] = []
        for pid in self._cg.pids():
            with contextlib.suppress(OSError, ValueError, IndexError):
                sizes.append((int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * page, pid))
        if not sizes:
            return
        victim = max(sizes)[1]
        try:
            status = Path(f"/proc/{victim}/status").read_text()
        except OSError:
            return
        shared_pending = next(
            (
                int(line.split()[1], 16)
                for line in status.splitlines()
                if line.startswith("ShdPnd:")
            ),
            0,
        )
        if shared_pending & (1 << (signal.SIGKILL - 1)):
            return  # already being killed, by the OOM killer counted in kernel_kills
        try:
            os.kill(victim, signal.SIGKILL)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + 1.0
        while victim in self._cg.pids() and time.monotonic() < deadline:
            time.sleep(0.002)
        if self._cg.oom_kills() == kernel_kills:
            self._kills += 1

    def stop(self) -> None:
        """Before the group goes (its removal would wake the thread too)."""
        if self._thread is None:
            return
        self._stop = True
        os.eventfd_write(self._efd, 1)
        self._thread.join()
        os.close(self._efd)
        self._thread = None
