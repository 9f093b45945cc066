"""The per-invocation state machine: joins samples, runtimeDone and reports into records.

Pure: it reads no file and no clock. Its caller (runner.py) feeds it events with the time they
happened and the facts the readers measured, and gets records (dataclasses) back, which the
sink turns into EMF documents.

An invocation goes OPEN (INVOKE seen, sampling) -> DONE (its runtimeDone seen) -> CLOSED (its
invocation record made; waiting for the platform report) -> REPORTED. A lost runtimeDone, or
no Telemetry API at all, closes it straight from OPEN (a fallback). Any other (phase, event)
pair is refused and counted: an event out of order never corrupts the figures.
"""

from __future__ import annotations

import enum
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Final, Protocol

from tmp_monitor.tmpfs import TopFile

MIB: Final = 1 << 20
# Invocations closed but not yet reported are remembered this long (by count): a report
# older than that is counted missing instead of piling up in memory.
MAX_UNREPORTED: Final = 64
# How long the function's processes may use no CPU before a missing runtimeDone is presumed
# lost (a runtimeDone comes within the buffering's 25 ms of the runtime's next, so 2 s is a
# wide margin). It applies whether or not the request's platform.start came: telemetry that
# lags as a whole must not hold the invocation to its deadline either. A function waiting on
# I/O that long looks the same: its document then closes early (marked, and without purge),
# and the limit doubles each time the late runtimeDone proves it wrong (only when telemetry
# was keeping up, i.e. the request's platform.start had come: else the lag explains it).
IDLE_LIMIT_MS: Final = 2_000
# A stalled invocation is always closed before its deadline, by 10 % of its time but at least
# 250 ms and at most 1 s: our next call must come before the platform times the invocation out.
DEADLINE_MARGIN_MS: Final = (250, 1_000)
# runtimeDones that came before their INVOKE (the next that brings it was answered late, or
# its thread was slow to hand it over) are kept for it, the latest this many.
MAX_EARLY: Final = 8
# The function's CPU is read at most this often (it costs a read of /proc/<pid>/stat).
CPU_READ_INTERVAL_S: Final = 0.1

FALLBACK_NO_TELEMETRY: Final = "telemetryUnavailable"
FALLBACK_RUNTIME_DONE_MISSING: Final = "runtimeDoneMissing"
FALLBACK_SHUTDOWN: Final = "shutdown"


class Phase(enum.Enum):
    OPEN = "open"
    DONE = "done"
    CLOSED = "closed"
    REPORTED = "reported"


class Event(enum.Enum):
    START = "platform.start"
    SAMPLE = "sample"
    RUNTIME_DONE = "platform.runtimeDone"
    CLOSE = "close"
    REPORT = "platform.report"


_TRANSITIONS: Final[dict[tuple[Phase, Event], Phase]] = {
    (Phase.OPEN, Event.START): Phase.OPEN,
    (Phase.OPEN, Event.SAMPLE): Phase.OPEN,
    (Phase.OPEN, Event.RUNTIME_DONE): Phase.DONE,
    (Phase.OPEN, Event.CLOSE): Phase.CLOSED,  # fallback: runtimeDone lost or no telemetry
    (Phase.DONE, Event.SAMPLE): Phase.DONE,
    (Phase.DONE, Event.CLOSE): Phase.CLOSED,
    (Phase.CLOSED, Event.REPORT): Phase.REPORTED,
}


class TransitionError(Exception):
    """An event that the invocation's phase does not accept."""


def advance(phase: Phase, event: Event) -> Phase:
    """The phase after event, or TransitionError for a pair the table does not hold."""
    try:
        return _TRANSITIONS[(phase, event)]
    except KeyError:
        raise TransitionError(f"{event.value} in phase {phase.value}") from None


# ---- what goes in ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReportFacts:
    """A platform.report record, parsed (telemetry.parse_report)."""

    request_id: str
    status: str
    duration_ms: float
    billed_duration_ms: float
    memory_size_mb: int
    max_memory_used_mb: int
    init_duration_ms: float | None
    extension_overhead_ms: float | None


@dataclass(frozen=True, slots=True)
class Sample:
    """One sampler tick. None: that reader had nothing this time."""

    mono_s: float
    tmp_used_bytes: int | None  # statvfs used minus the empty file system's own blocks
    function_rss_bytes: int | None
    sandbox_memory_bytes: int | None
    function_cpu_ticks: int | None = None  # only when needs_cpu() asked for it


@dataclass(frozen=True, slots=True)
class EndOfRuntime:
    """What the readers found at the end of the runtime (before any purge)."""

    tmp_used_bytes: int  # the walk's allocated bytes
    tmp_files: int
    tmp_free_bytes: int
    tmp_resident_bytes: int
    fs_used_bytes: int  # statvfs used minus baseline, at the same moment
    extension_rss_bytes: int
    top_files: tuple[TopFile, ...] = ()


class PurgeOutcome(Protocol):
    """The part of purge.PurgeResult the documents need."""

    @property
    def bytes(self) -> int: ...
    @property
    def files(self) -> int: ...
    @property
    def purged_but_open(self) -> int: ...
    @property
    def dry_run(self) -> bool: ...


# ---- what comes out -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class InvocationRecord:
    request_id: str
    invocation: int
    timestamp_ms: int  # the end of the runtime
    environment_age_ms: int
    cold_start: bool
    tmp_used_bytes: int
    tmp_peak_bytes: int
    tmp_delta_bytes: int
    tmp_files: int
    tmp_free_bytes: int
    tmp_resident_bytes: int
    function_rss_bytes: int
    sandbox_memory_bytes: int | None  # None: no source could be read
    extension_rss_bytes: int
    post_runtime_ms: float
    purged_bytes: int | None  # None: the purge did not run
    purged_files: int | None
    purged_but_open: int | None
    top_files: tuple[TopFile, ...]
    samples: int
    fallback: str | None  # why the document closed without runtimeDone, if it did
    runtime_status: str | None
    errors: int


@dataclass(frozen=True, slots=True)
class ReportRecord:
    request_id: str
    invocation: int
    timestamp_ms: int  # the invocation's own time stamp
    environment_age_ms: int
    status: str
    max_memory_used_mb: int
    memory_size_mb: int
    duration_ms: float
    billed_duration_ms: float
    init_duration_ms: float | None
    extension_overhead_ms: float | None
    tmp_share_of_max_memory: float | None  # percent; None when Max Memory Used is 0
    errors: int


@dataclass(frozen=True, slots=True)
class SummaryRecord:
    invocation: int  # invocations seen, as on every document
    timestamp_ms: int
    environment_age_ms: int
    invocations: int
    lifetime_tmp_peak_bytes: int
    lifetime_purged_bytes: int
    reports_missing: int
    shutdown_reason: str
    runtime_done_missing: int
    errors: int


@dataclass(frozen=True, slots=True)
class EnvironmentRecord:
    """Multi-concurrency mode: one window of environment-level samples (no invocations)."""

    timestamp_ms: int
    environment_age_ms: int
    tmp_peak_bytes: int
    function_rss_bytes: int
    sandbox_memory_bytes: int | None
    extension_rss_bytes: int
    tmp_free_bytes: int
    samples: int
    errors: int


# ---- the machine ----------------------------------------------------------------------------


@dataclass(slots=True)
class _Invocation:
    request_id: str
    number: int
    deadline_ms: int
    invoked_wall_ms: int
    invoked_mono_s: float
    phase: Phase = Phase.OPEN
    start_seen: bool = False
    runtime_status: str | None = None
    peak_fs_used: int = 0
    max_function_rss: int = 0
    max_sandbox_memory: int | None = None
    samples: int = 0
    last_cpu_ticks: int | None = None
    cpu_changed_mono_s: float = 0.0
    cpu_read_mono_s: float = 0.0
    timestamp_ms: int = 0
    tmp_resident_bytes: int = 0
    closed_idle: bool = False  # closed by the idle rule (not the deadline)
    closed_without_done: bool = False  # counted in runtime_done_missing


@dataclass(slots=True)
class _Window:
    peak_fs_used: int = 0
    max_function_rss: int = 0
    max_sandbox_memory: int | None = None
    samples: int = 0


def _max_opt(a: int | None, b: int | None) -> int | None:
    if a is None:
        return b
    if b is None:
        return a
    return max(a, b)


@dataclass(slots=True)
class Monitor:
    """The state of one execution environment, fed by the runner's event loop."""

    start_wall_ms: int
    idle_limit_ms: int = IDLE_LIMIT_MS
    invocations: int = 0
    errors: int = 0  # contained errors and refused transitions
    runtime_done_missing: int = 0  # closed without runtimeDone, and it never came later
    reports_missing: int = 0
    lifetime_tmp_peak_bytes: int = 0
    lifetime_purged_bytes: int = 0
    shutdown_reason: str = ""
    _open: _Invocation | None = None
    _unreported: OrderedDict[str, _Invocation] = field(default_factory=OrderedDict)
    _early: OrderedDict[str, str] = field(default_factory=OrderedDict)  # requestId -> status
    _left_after_purge: int = 0
    _window: _Window = field(default_factory=_Window)

    # -- queries

    @property
    def open_request(self) -> str | None:
        return self._open.request_id if self._open is not None else None

    @property
    def pending_reports(self) -> int:
        return len(self._unreported)

    def count_error(self) -> None:
        self.errors += 1

    # -- events

    def on_invoke(self, request_id: str, deadline_ms: int, wall_ms: int, mono_s: float) -> bool:
        """INVOKE: opens the invocation. The caller closes any still-open one first.

        True when its runtimeDone came already (before the INVOKE): close it now."""
        if self._open is not None:
            self.errors += 1  # a caller bug; drop the old one rather than mix figures
        self.invocations += 1
        self._open = _Invocation(
            request_id=request_id,
            number=self.invocations,
            deadline_ms=deadline_ms,
            invoked_wall_ms=wall_ms,
            invoked_mono_s=mono_s,
            cpu_changed_mono_s=mono_s,
        )
        status = self._early.pop(request_id, None)
        if status is None or not self._step(self._open, Event.RUNTIME_DONE):
            return False
        self.errors -= 1  # counted when it came, for a request not seen then
        self._open.runtime_status = status
        return True

    def on_start(self, request_id: str) -> None:
        inv = self._find_open(request_id)
        if inv is not None and self._step(inv, Event.START):
            inv.start_seen = True

    def on_sample(self, sample: Sample) -> None:
        """A tick: during an invocation it feeds that invocation's maxima, else the window."""
        inv = self._open
        if inv is None:
            self._window_add(sample)
            return
        if not self._step(inv, Event.SAMPLE):
            return
        inv.samples += 1
        if sample.tmp_used_bytes is not None:
            inv.peak_fs_used = max(inv.peak_fs_used, sample.tmp_used_bytes)
        if sample.function_rss_bytes is not None:
            inv.max_function_rss = max(inv.max_function_rss, sample.function_rss_bytes)
        inv.max_sandbox_memory = _max_opt(inv.max_sandbox_memory, sample.sandbox_memory_bytes)
        if sample.function_cpu_ticks is not None:
            if sample.function_cpu_ticks != inv.last_cpu_ticks:
                inv.cpu_changed_mono_s = sample.mono_s
            inv.last_cpu_ticks = sample.function_cpu_ticks
            inv.cpu_read_mono_s = sample.mono_s

    def on_runtime_done(self, request_id: str, status: str) -> bool:
        """platform.runtimeDone. True when it ends the open invocation: close it now."""
        inv = self._open
        if inv is not None and inv.request_id == request_id:
            if self._step(inv, Event.RUNTIME_DONE):
                inv.runtime_status = status
                return True
            return False
        late = self._unreported.get(request_id)
        if late is not None:
            # It came after all, after we gave up on it: not lost, only late. If the idle rule
            # gave up (not the deadline), the limit was too short for this function (it waits
            # on I/O without CPU): be more patient from now on.
            if late.closed_idle and late.start_seen:
                self.idle_limit_ms *= 2
            if late.closed_without_done:
                late.closed_without_done = False
                self.runtime_done_missing -= 1
            return False
        self.errors += 1  # a runtimeDone for a request we never saw (yet: kept for its INVOKE)
        self._early[request_id] = status
        while len(self._early) > MAX_EARLY:
            self._early.popitem(last=False)
        return False

    def needs_cpu(self, mono_s: float) -> bool:
        """Whether the next sample should carry the function's CPU time (stall detection)."""
        inv = self._open
        if inv is None or inv.phase is not Phase.OPEN:
            return False
        return mono_s - inv.cpu_read_mono_s >= CPU_READ_INTERVAL_S

    def stalled(self, wall_ms: int, mono_s: float) -> bool:
        """Whether the open invocation must be closed without its runtimeDone, now.

        Always before the deadline; and once the function's processes have used no CPU for
        idle_limit_ms, whether telemetry shows life (a lost runtimeDone) or not (telemetry held
        back until the invocation ends, which would otherwise wait for us forever).
        """
        inv = self._open
        if inv is None or inv.phase is not Phase.OPEN:
            return False
        budget = inv.deadline_ms - inv.invoked_wall_ms
        low, high = DEADLINE_MARGIN_MS
        margin = min(max(low, budget // 10), high)
        if wall_ms >= inv.deadline_ms - margin:
            return True
        if inv.last_cpu_ticks is None:
            return False
        inv.closed_idle = (mono_s - inv.cpu_changed_mono_s) * 1000 >= self.idle_limit_ms
        return inv.closed_idle

    def close(
        self,
        end: EndOfRuntime,
        purge: PurgeOutcome | None,
        wall_ms: int,
        post_runtime_ms: float,
        fallback: str | None = None,
    ) -> InvocationRecord | None:
        """The open invocation's record, made at the end of the runtime (or at a fallback)."""
        inv = self._open
        if inv is None or not self._step(inv, Event.CLOSE):
            return None
        self._open = None
        if fallback == FALLBACK_RUNTIME_DONE_MISSING:
            self.runtime_done_missing += 1
            inv.closed_without_done = True
        peak = max(inv.peak_fs_used, end.fs_used_bytes, end.tmp_used_bytes)
        # TmpDeltaBytes: against what the previous invocation left after its purge; the
        # first invocation has no previous one, so it is measured against 0.
        delta = end.tmp_used_bytes - self._left_after_purge
        freed = purge.bytes if purge is not None and not purge.dry_run else 0
        self._left_after_purge = max(0, end.tmp_used_bytes - freed)
        self.lifetime_tmp_peak_bytes = max(self.lifetime_tmp_peak_bytes, peak)
        if purge is not None:
            self.lifetime_purged_bytes += purge.bytes
        inv.timestamp_ms = wall_ms
        inv.tmp_resident_bytes = end.tmp_resident_bytes
        self._remember(inv)
        return InvocationRecord(
            request_id=inv.request_id,
            invocation=inv.number,
            timestamp_ms=wall_ms,
            environment_age_ms=max(0, wall_ms - self.start_wall_ms),
            cold_start=inv.number == 1,
            tmp_used_bytes=end.tmp_used_bytes,
            tmp_peak_bytes=peak,
            tmp_delta_bytes=delta,
            tmp_files=end.tmp_files,
            tmp_free_bytes=end.tmp_free_bytes,
            tmp_resident_bytes=end.tmp_resident_bytes,
            function_rss_bytes=inv.max_function_rss,
            sandbox_memory_bytes=inv.max_sandbox_memory,
            extension_rss_bytes=end.extension_rss_bytes,
            post_runtime_ms=post_runtime_ms,
            purged_bytes=purge.bytes if purge is not None else None,
            purged_files=purge.files if purge is not None else None,
            purged_but_open=purge.purged_but_open if purge is not None else None,
            top_files=end.top_files,
            samples=inv.samples,
            fallback=fallback,
            runtime_status=inv.runtime_status,
            errors=self.errors,
        )

    def on_report(self, facts: ReportFacts) -> ReportRecord | None:
        """platform.report: the report record of the invocation it names, once."""
        inv = self._unreported.get(facts.request_id)
        if inv is None:
            if self._open is not None and self._open.request_id == facts.request_id:
                self._step(self._open, Event.REPORT)  # refused and counted
            return None  # an invocation we never saw, or already reported
        if not self._step(inv, Event.REPORT):
            return None
        del self._unreported[facts.request_id]
        share = None
        if facts.max_memory_used_mb > 0:
            share = inv.tmp_resident_bytes / (facts.max_memory_used_mb * MIB) * 100
        return ReportRecord(
            request_id=facts.request_id,
            invocation=inv.number,
            timestamp_ms=inv.timestamp_ms,
            environment_age_ms=max(0, inv.timestamp_ms - self.start_wall_ms),
            status=facts.status,
            max_memory_used_mb=facts.max_memory_used_mb,
            memory_size_mb=facts.memory_size_mb,
            duration_ms=facts.duration_ms,
            billed_duration_ms=facts.billed_duration_ms,
            init_duration_ms=facts.init_duration_ms,
            extension_overhead_ms=facts.extension_overhead_ms,
            tmp_share_of_max_memory=share,
            errors=self.errors,
        )

    def on_shutdown(self, reason: str) -> None:
        self.shutdown_reason = reason.lower() or "unknown"

    def summary(self, wall_ms: int) -> SummaryRecord:
        """The summary record: every report not received by now is counted missing."""
        missing = self.reports_missing + len(self._unreported)
        return SummaryRecord(
            invocation=self.invocations,
            timestamp_ms=wall_ms,
            environment_age_ms=max(0, wall_ms - self.start_wall_ms),
            invocations=self.invocations,
            lifetime_tmp_peak_bytes=self.lifetime_tmp_peak_bytes,
            lifetime_purged_bytes=self.lifetime_purged_bytes,
            reports_missing=missing,
            shutdown_reason=self.shutdown_reason or "unknown",
            runtime_done_missing=self.runtime_done_missing,
            errors=self.errors,
        )

    def close_window(
        self, wall_ms: int, extension_rss_bytes: int, tmp_free_bytes: int
    ) -> EnvironmentRecord | None:
        """Multi-concurrency mode: the record of the samples since the last window."""
        w = self._window
        if w.samples == 0:
            return None
        self._window = _Window()
        self.lifetime_tmp_peak_bytes = max(self.lifetime_tmp_peak_bytes, w.peak_fs_used)
        return EnvironmentRecord(
            timestamp_ms=wall_ms,
            environment_age_ms=max(0, wall_ms - self.start_wall_ms),
            tmp_peak_bytes=w.peak_fs_used,
            function_rss_bytes=w.max_function_rss,
            sandbox_memory_bytes=w.max_sandbox_memory,
            extension_rss_bytes=extension_rss_bytes,
            tmp_free_bytes=tmp_free_bytes,
            samples=w.samples,
            errors=self.errors,
        )

    # -- internals

    def _find_open(self, request_id: str) -> _Invocation | None:
        inv = self._open
        if inv is not None and inv.request_id == request_id:
            return inv
        return None  # a late platform.start of a closed invocation changes nothing

    def _step(self, inv: _Invocation, event: Event) -> bool:
        try:
            inv.phase = advance(inv.phase, event)
        except TransitionError:
            self.errors += 1
            return False
        return True

    def _remember(self, inv: _Invocation) -> None:
        self._unreported[inv.request_id] = inv
        while len(self._unreported) > MAX_UNREPORTED:
            self._unreported.popitem(last=False)
            self.reports_missing += 1

    def _window_add(self, sample: Sample) -> None:
        w = self._window
        w.samples += 1
        if sample.tmp_used_bytes is not None:
            w.peak_fs_used = max(w.peak_fs_used, sample.tmp_used_bytes)
        if sample.function_rss_bytes is not None:
            w.max_function_rss = max(w.max_function_rss, sample.function_rss_bytes)
        w.max_sandbox_memory = _max_opt(w.max_sandbox_memory, sample.sandbox_memory_bytes)
