"""The event loop: Extensions API events, telemetry records and sampler ticks, one at a time.

Everything arrives on one queue, read by the main thread: telemetry records (put by the
listener thread) and the results of next calls (made by a small thread, so that the main thread
can keep sampling while a next is pending, which is what the degraded modes need). Between
events the loop ticks the sampler at the sampling period, but only while an invocation is open
(or always, in multi-concurrency mode): an idle environment costs nothing.

Modes:
- normal: per INVOKE, sample until that request's platform.runtimeDone, then the end-of-runtime
  walk, the purge, the invocation document, next. A runtimeDone that does not come is detected
  (monitor.stalled) and the invocation closed without purge.
- no telemetry: next at once on each INVOKE; each invocation closes at the next event.
- multi-concurrency: no INVOKE at all; environment-level documents every WINDOW_S.
"""

from __future__ import annotations

import logging
import queue
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from tmp_monitor import monitor as mon
from tmp_monitor import telemetry
from tmp_monitor.emf import Sink
from tmp_monitor.extensions_api import ApiError, Client, NextCaller, NextResult
from tmp_monitor.sampler import Sampler

if TYPE_CHECKING:
    from tmp_monitor.purge import Purger

    Item = telemetry.TelemetryEvent | NextResult  # (telemetry's TypedDicts exist for mypy only)

log = logging.getLogger("tmp_monitor")

WINDOW_S: Final = 60.0  # multi-concurrency: one environment document per minute
# SHUTDOWN: wait for the platform's last reports at most this long, and always leave this much
# of the shutdown deadline for the summary and the exit.
REPORT_WAIT_S: Final = 1.0
SHUTDOWN_MARGIN_MS: Final = 300


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


class Runner:
    """One execution environment's loop. run() returns the process exit status."""

    def __init__(
        self,
        *,
        next_caller: NextCaller,
        items: queue.SimpleQueue[Item],
        monitor: mon.Monitor,
        sampler: Sampler,
        sink: Sink,
        purger: Purger | None,  # None: the purge is off (purge.py is then not even imported)
        period_s: float,
        telemetry_ok: bool,
        multi_concurrency: bool = False,
        top_files: int = 0,
    ) -> None:
        self._items = items
        self._monitor = monitor
        self._sampler = sampler
        self._sink = sink
        self._purger = purger
        self._period_s = period_s
        self._telemetry_ok = telemetry_ok
        self._multi = multi_concurrency
        self._top_files = top_files
        self._next = next_caller
        self._next_tick = 0.0
        self._window_end = time.monotonic() + WINDOW_S
        self._deadline_ms = 0
        self._said: set[str] = set()

    # -- the loop

    def run(self) -> int:
        """Until SHUTDOWN. The entry point has already asked for the first event."""
        if self._multi:
            # Sampled from the start, even when an event came while the loop was being built.
            self._guard("sample", self._on_tick)
        while True:
            item = self._wait()
            if item is None:
                self._guard("sample", self._on_tick)
                continue
            if isinstance(item, NextResult):
                if item.event is None:
                    log.error("next failed, the monitor stops: %s", item.error)
                    self._next.exit_error("Extension.ApiUnavailable", str(item.error))
                    return 1
                if item.event["eventType"] == "SHUTDOWN":
                    return self._on_shutdown(item.event)
                self._guard("invoke", self._on_invoke, item.event)
            else:
                self._guard("telemetry", self._on_telemetry, item)

    def _sampling(self) -> bool:
        return self._multi or self._monitor.open_request is not None

    def _wait(self) -> Item | None:
        """The next item, or None when a tick is due first."""
        if not self._sampling():
            return self._items.get()
        timeout = self._next_tick - time.monotonic()
        if timeout <= 0:
            # What has come goes first: when ticks take longer than the period (a small
            # memory size on a busy host), a due tick must not keep a queued runtimeDone
            # waiting until the stall rule gives up on it.
            try:
                return self._items.get_nowait()
            except queue.Empty:
                return None
        try:
            return self._items.get(timeout=timeout)
        except queue.Empty:
            return None

    def _guard(self, what: str, action: Callable[..., None], *args: Any) -> None:
        # Never in the way: an error is counted (property errors) and said once per kind.
        try:
            action(*args)
        except Exception as exc:
            self._monitor.count_error()
            self._once(f"error:{what}:{type(exc).__name__}", f"{what} failed ({exc!r}); counted")

    def _once(self, key: str, message: str) -> None:
        if key not in self._said:
            self._said.add(key)
            log.warning("%s", message)

    # -- handlers

    def _on_tick(self, new_census: bool = False) -> None:
        now = time.monotonic()
        self._next_tick = now + self._period_s
        m = self._monitor
        # A failing reader costs this sample, never the stall check after it (which is what
        # keeps an invocation from being held to its timeout).
        self._guard("sample", self._sample, now, new_census)
        if self._multi:
            if now >= self._window_end:
                self._window_end = now + WINDOW_S
                self._emit_window()
        elif self._telemetry_ok and m.stalled(wall_ms(), now):
            self._once("stalled", "no platform.runtimeDone for an invocation: closed without it")
            self._end_of_runtime(now, mon.FALLBACK_RUNTIME_DONE_MISSING)

    def _sample(self, now: float, new_census: bool) -> None:
        m = self._monitor
        m.on_sample(self._sampler.tick(now, with_cpu=m.needs_cpu(now), new_census=new_census))

    def _on_invoke(self, event: Any) -> None:
        m = self._monitor
        now = time.monotonic()
        done_already = False
        try:
            if m.open_request is not None:  # no telemetry: the previous one ends here
                self._end_of_runtime(now, mon.FALLBACK_NO_TELEMETRY, call_next=False)
            self._deadline_ms = int(event.get("deadlineMs") or 0)
            request_id = str(event.get("requestId", ""))
            done_already = m.on_invoke(request_id, self._deadline_ms, wall_ms(), now)
            self._on_tick(new_census=True)  # the state at INVOKE; the period starts now
        finally:
            # Without telemetry, or if the invocation could not even be opened, nothing will
            # end it: next at once, whatever failed above.
            if not self._telemetry_ok or m.open_request is None:
                self._next.request()
        if done_already and m.open_request is not None:
            self._end_of_runtime(now, None)  # its runtimeDone came before the INVOKE did

    def _on_telemetry(self, item: telemetry.TelemetryEvent) -> None:
        kind = item.get("type")
        record = item.get("record")
        if not isinstance(record, dict):
            return
        m = self._monitor
        if kind == "platform.start":
            m.on_start(str(record.get("requestId", "")))
        elif kind == "platform.runtimeDone":
            now = time.monotonic()
            if m.on_runtime_done(str(record.get("requestId", "")), str(record.get("status", ""))):
                self._end_of_runtime(now, None)
        elif kind == "platform.report":
            facts = telemetry.parse_report(record)
            if facts is None:
                m.count_error()
                return
            report = m.on_report(facts)
            if report is not None:
                self._sink.emit(report)

    def _end_of_runtime(
        self, done_mono: float, fallback: str | None, call_next: bool = True
    ) -> None:
        """The end-of-runtime walk, the purge (only after a real runtimeDone), the document."""
        m = self._monitor
        done_wall = wall_ms()
        try:
            try:
                m.on_sample(self._sampler.tick(time.monotonic()))
                end = self._sampler.end_of_runtime(self._top_files)
                purge = None
                if fallback is None and self._purger is not None:
                    purge = self._purger(end.tmp_used_bytes, float(self._deadline_ms) or None)
            except Exception as exc:
                m.count_error()
                self._once(f"end:{type(exc).__name__}", f"end-of-runtime measure failed ({exc!r})")
                end = mon.EndOfRuntime(0, 0, 0, 0, 0, 0)
                purge = None
            post_ms = (time.monotonic() - done_mono) * 1000
            record = m.close(end, purge, done_wall, post_ms, fallback)
            if record is not None:
                self._sink.emit(record)
        finally:
            if call_next:
                self._next.request()  # whatever failed above, never hold the invocation

    def _emit_window(self) -> None:
        record = self._monitor.close_window(
            wall_ms(), self._sampler.extension_rss(), self._sampler.tmp_free_bytes()
        )
        if record is not None:
            self._sink.emit(record)

    def _on_shutdown(self, event: Any) -> int:
        m = self._monitor
        m.on_shutdown(str(event.get("shutdownReason", "")))
        now = time.monotonic()
        if m.open_request is not None:
            fallback = mon.FALLBACK_SHUTDOWN if self._telemetry_ok else mon.FALLBACK_NO_TELEMETRY
            self._guard("shutdown", self._end_of_runtime, now, fallback, False)
        if self._multi:
            self._guard("shutdown", self._emit_window)
        if self._telemetry_ok:
            self._guard("shutdown", self._await_reports, event)
        self._sink.emit(m.summary(wall_ms()))
        return 0

    def _await_reports(self, event: Any) -> None:
        """The platform sends the last reports during shutdown: wait for them, bounded."""
        deadline_ms = int(event.get("deadlineMs") or 0)
        limit = time.monotonic() + REPORT_WAIT_S
        if deadline_ms:
            limit = min(
                limit, time.monotonic() + (deadline_ms - SHUTDOWN_MARGIN_MS - wall_ms()) / 1000
            )
        while self._monitor.pending_reports > 0:
            left = limit - time.monotonic()
            if left <= 0:
                return
            try:
                item = self._items.get(timeout=left)
            except queue.Empty:
                return
            if not isinstance(item, NextResult):
                self._on_telemetry(item)


def run_disabled(client: Client) -> int:
    """TMP_MONITOR_DISABLED: registered for SHUTDOWN only; wait for it, then exit 0."""
    while True:
        try:
            event = client.next()
        except ApiError as exc:
            log.error("next failed, the monitor stops: %s", exc)
            return 1
        if event["eventType"] == "SHUTDOWN":
            return 0
