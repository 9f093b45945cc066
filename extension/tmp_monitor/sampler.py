"""One sampler tick over the readers, the end-of-runtime measurement, and the sampling period.

The readers live in procfs, tmpfs, cgroup and residency; this module holds their roots and the
little state they need across ticks (the process classifier, the memory source, the empty
file system's baseline, the residency cache).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Final

from tmp_monitor import cgroup, procfs, residency, tmpfs
from tmp_monitor.monitor import EndOfRuntime, Sample

SOURCE_RSS: Final = "rss"  # memorySource when no memory cgroup can be read

# The adaptive period (SPEC 8). Lambda gives the environment memory/1769 of a CPU, and
# sampling may spend 2 % of it: a tick of TICK_CPU_MS CPU milliseconds every P ms costs
# TICK_CPU_MS / P of a CPU, so P >= TICK_CPU_MS / (0.02 * memory / 1769).
# TICK_CPU_MS is the CPU time of one tick with the loop's wake-up (statvfs, statm of the
# function's processes and the cgroup usage file through kept fds, the /proc listing every
# CENSUS_INTERVAL_S): measured 0.22 ms at a 12.5 ms period, 0.27 at 43 ms and 0.29 at 86 ms
# (3,000 and more ticks, time.process_time, in a PID namespace holding a runtime, an extension
# and the sampler, as in the sandbox; 2-core x86_64 VM). A tick that runs every few tens of
# milliseconds runs on cold caches: the same tick in a tight loop costs 0.046 ms. Rounded up:
# 15 ms at 1,769 MB, 52 ms at 512 MB, 207 ms at 128 MB.
TICK_CPU_MS: Final = 0.3
CPU_SHARE_MB: Final = 1769
SAMPLING_BUDGET: Final = 0.02
# A transient /tmp file must be seen by at least one tick: 100 ms at 1,769 MB, 250 ms at
# 128 MB (interpolated linearly in between, 100 ms above 1,769 MB). Ticks P ms apart land in
# every window of P ms, so the period stays below 90 % of that lifetime (timer slack).
TRANSIENT_MS: Final = ((128, 250.0), (1769, 100.0))
TRANSIENT_SLACK: Final = 0.9
PERIOD_RANGE_MS: Final = (5, 10_000)
# Processes are listed again at most this often: a child the function starts is counted from
# its first 100 ms on.
CENSUS_INTERVAL_S: Final = 0.1


def adaptive_period_ms(memory_mb: int, tick_cpu_ms: float = TICK_CPU_MS) -> float:
    """The sampling period for a function of memory_mb MB (SPEC 8; formula above)."""
    memory_mb = max(memory_mb, 1)
    share = memory_mb / CPU_SHARE_MB  # of one CPU (above 1,769 MB: more than one)
    by_cost = tick_cpu_ms / (SAMPLING_BUDGET * share)
    (low_mb, low_ms), (high_mb, high_ms) = TRANSIENT_MS
    if memory_mb <= low_mb:
        by_transient = low_ms
    elif memory_mb >= high_mb:
        by_transient = high_ms
    else:
        fraction = (memory_mb - low_mb) / (high_mb - low_mb)
        by_transient = low_ms + (high_ms - low_ms) * fraction
    period = min(by_cost, by_transient * TRANSIENT_SLACK)
    return float(min(max(period, PERIOD_RANGE_MS[0]), PERIOD_RANGE_MS[1]))


class Sampler:
    """The readers, pointed at their roots, with what they keep between ticks."""

    def __init__(
        self,
        tmp_root: str = "/tmp",
        proc_root: str = "/proc",
        warn: Callable[[str], None] = lambda _msg: None,
        own_pid: int | None = None,
    ) -> None:
        self._tmp = tmp_root
        self._proc = proc_root
        self._warn = warn
        self._pid = os.getpid() if own_pid is None else own_pid
        self._classifier = procfs.Classifier(proc_root, self._pid)
        self._census = procfs.Census((), ())
        self._census_mono = -1e9
        self._function_rss = procfs.RssReader(proc_root)
        self._other_rss = procfs.RssReader(proc_root)
        group = cgroup.find_memory_cgroup(proc_root, self._pid)
        self._usage = cgroup.UsageReader(group) if group is not None else None
        if self._usage is None:
            warn(
                "no readable memory cgroup: SandboxMemoryBytes is the summed RSS of the "
                "environment's processes"
            )
        self._residency = residency.ResidencyCache()
        self._baseline = self._measure_baseline()
        self.errors = 0  # walk and residency entries that could not be read

    @property
    def memory_source(self) -> str:
        return self._usage.group.kind if self._usage is not None else SOURCE_RSS

    def _measure_baseline(self) -> int:
        """The empty file system's own used blocks (journal, inode tables, root folder)."""
        try:
            used = tmpfs.fs_usage(self._tmp).used_bytes
            if tmpfs.is_empty(self._tmp):
                return used
            # Not empty at start (not on Lambda, where Init sees a fresh /tmp): what the
            # files hold is not the file system's own.
            return max(0, used - tmpfs.walk(self._tmp).allocated_bytes)
        except OSError:
            return 0

    def tick(self, mono_s: float, with_cpu: bool = False, new_census: bool = False) -> Sample:
        """One sample: statvfs of /tmp, RSS of the function's processes, the sandbox's memory.

        The process list is read again at most every CENSUS_INTERVAL_S (listing /proc costs
        more than the rest of a tick), or when new_census asks (at INVOKE).
        """
        try:
            fs_used: int | None = max(0, tmpfs.fs_usage(self._tmp).used_bytes - self._baseline)
        except OSError:
            fs_used = None
        if new_census or mono_s - self._census_mono >= CENSUS_INTERVAL_S:
            self._census = self._classifier.census()
            self._census_mono = mono_s
        census = self._census
        function_rss = self._function_rss.total(census.function_pids)
        for pid in self._function_rss.gone:
            self._classifier.forget(pid)
        sandbox = self._sandbox_memory(census, function_rss)
        cpu = procfs.total_cpu_ticks(self._proc, census.function_pids) if with_cpu else None
        return Sample(
            mono_s=mono_s,
            tmp_used_bytes=fs_used,
            function_rss_bytes=function_rss,
            sandbox_memory_bytes=sandbox,
            function_cpu_ticks=cpu,
        )

    def _sandbox_memory(self, census: procfs.Census, function_rss: int) -> int | None:
        if self._usage is not None:
            value = self._usage.read()
            if value is not None:
                return value
            self._warn(
                f"{self._usage.group.usage_file} can no longer be read: SandboxMemoryBytes is "
                "now the summed RSS of the environment's processes"
            )
            self._usage.close()
            self._usage = None
        return function_rss + self._other_rss.total(census.other_pids)

    def end_of_runtime(self, top_n: int = 0) -> EndOfRuntime:
        """The walk of /tmp, its residency, free bytes and the monitor's own RSS."""
        cache = self._residency
        cache.begin()
        walk = tmpfs.walk(self._tmp, top_n=top_n, on_file=cache.visit)
        resident = cache.end()
        self.errors += walk.errors + cache.errors
        usage = tmpfs.fs_usage(self._tmp)
        return EndOfRuntime(
            tmp_used_bytes=walk.allocated_bytes,
            tmp_files=walk.files,
            tmp_free_bytes=usage.free_bytes,
            tmp_resident_bytes=resident,
            fs_used_bytes=max(0, usage.used_bytes - self._baseline),
            extension_rss_bytes=self.extension_rss(),
            top_files=walk.top_files,
        )

    def extension_rss(self) -> int:
        return procfs.rss_bytes(self._proc, self._pid) or 0

    def tmp_free_bytes(self) -> int:
        try:
            return tmpfs.fs_usage(self._tmp).free_bytes
        except OSError:
            return 0
