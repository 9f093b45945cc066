"""The sink: records to EMF documents through Powertools Metrics, one line each on stdout.

Each document gets a fresh provider (no state shared between documents or with a Metrics
instance elsewhere in the process), an explicit namespace and an empty service, so none of the
function's POWERTOOLS_* variables can change it; serialize_metric_set builds the document and
we write it ourselves (never flush_metrics, whose disabled mode piles values up and then prints
them anyway). Our own switch gates emission: with TMP_MONITOR_DISABLED no sink is even built
(the monitor only waits for SHUTDOWN), and Powertools is never imported.

Powertools takes tens of milliseconds of CPU to import, which would land in the cold start or
in the first invocation (SPEC 8): the entry point imports it in a thread (preload()) started
with the set-up, so the import overlaps the first invocation. A document is never held back
for it: SPEC 6 has each invocation document written before the monitor's next, and a document
held past that is lost if the environment is killed. The first emit waits for the import.
"""

from __future__ import annotations

import contextlib
import json
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any, Protocol

from tmp_monitor import names
from tmp_monitor.monitor import EnvironmentRecord, InvocationRecord, ReportRecord, SummaryRecord

if TYPE_CHECKING:
    from aws_lambda_powertools.metrics.provider.cloudwatch_emf.cloudwatch import (
        AmazonCloudWatchEMFProvider,
    )

Record = InvocationRecord | ReportRecord | SummaryRecord | EnvironmentRecord
_ENVIRONMENT_METRICS = (
    names.TMP_PEAK_BYTES,
    names.FUNCTION_RSS_BYTES,
    names.SANDBOX_MEMORY_BYTES,
    names.EXTENSION_RSS_BYTES,
    names.TMP_FREE_BYTES,
)
_UNKNOWN = "unknown"


def _provider_class() -> type[AmazonCloudWatchEMFProvider]:
    from aws_lambda_powertools.metrics.provider.cloudwatch_emf.cloudwatch import (
        AmazonCloudWatchEMFProvider,
    )

    return AmazonCloudWatchEMFProvider


def preload() -> threading.Thread:
    """Import Powertools in a daemon thread (the import lock makes a later import wait)."""

    def run() -> None:
        # A failure here shows again at the first emit, which counts it.
        with contextlib.suppress(Exception):
            _provider_class()

    thread = threading.Thread(target=run, name="tmp-monitor-preload", daemon=True)
    thread.start()
    return thread


class Sink(Protocol):
    errors: int

    def emit(self, record: Record) -> None: ...


@dataclass(frozen=True, slots=True)
class Context:
    """What every document carries besides its record."""

    namespace: str
    dimension_sets: tuple[tuple[str, ...], ...]
    function_name: str
    function_version: str
    monitor_version: str
    metrics_all: bool  # TMP_MONITOR_METRICS=all
    purge_on: bool  # PurgedBytes/PurgedFiles are core metrics only while the purge is on
    memory_source: str


class EmfSink:
    """Writes each record as one compact EMF line to out, flushed at once.

    preload is the thread importing Powertools: the first emit waits for it.
    """

    def __init__(
        self,
        context: Context,
        out: IO[str] | None = None,
        preload: threading.Thread | None = None,
    ) -> None:
        self._ctx = context
        self._out = out
        self._preload = preload
        self.errors = 0

    def emit(self, record: Record) -> None:
        if self._preload is not None:
            self._preload.join()
            self._preload = None
        self._write(record)

    def _write(self, record: Record) -> None:
        try:
            line = json.dumps(self.document(record), separators=(",", ":"), allow_nan=False)
            out = self._out if self._out is not None else sys.stdout
            out.write(line + "\n")
            out.flush()
        except Exception:
            # Never in the way: a document that cannot be built or written is dropped and
            # counted (the next document's errors property says so).
            self.errors += 1

    def document(self, record: Record) -> dict[str, Any]:
        """The EMF document of a record, as a dict."""
        with self._builder(record.timestamp_ms) as doc:
            if isinstance(record, InvocationRecord):
                self._invocation(doc, record)
            elif isinstance(record, ReportRecord):
                self._report(doc, record)
            elif isinstance(record, SummaryRecord):
                self._summary(doc, record)
            else:
                self._environment(doc, record)
            doc.prop(names.PROP_ERRORS, record.errors + self.errors)
        return doc.result

    @contextlib.contextmanager
    def _builder(self, timestamp_ms: int) -> Iterator[_Doc]:
        ctx = self._ctx
        dims = {names.DIM_FUNCTION_NAME: ctx.function_name or _UNKNOWN}
        provider = _provider_class()(
            namespace=ctx.namespace, service="", default_dimensions=dict(dims)
        )
        # Set directly: set_timestamp() would warn (on stderr, via warnings) about old times.
        provider.timestamp = timestamp_ms
        for dimension_set in ctx.dimension_sets:
            extra = {d: self._dimension(d) for d in dimension_set if d not in dims}
            if extra:
                provider.add_dimensions(**extra)
        doc = _Doc(provider, ctx.metrics_all)
        doc.prop(names.PROP_FUNCTION_VERSION, ctx.function_version)
        doc.prop(names.PROP_MONITOR_VERSION, ctx.monitor_version)
        yield doc
        doc.result = dict(
            provider.serialize_metric_set(
                provider.metric_set, provider.dimension_set, provider.metadata_set
            )
        )

    def _dimension(self, name: str) -> str:
        if name == names.DIM_FUNCTION_VERSION:
            return self._ctx.function_version or _UNKNOWN
        return self._ctx.function_name or _UNKNOWN

    def _invocation(self, doc: _Doc, r: InvocationRecord) -> None:
        doc.prop(names.PROP_DOCUMENT, names.DOC_INVOCATION)
        doc.common(r.request_id, r.invocation, r.environment_age_ms)
        table = names.INVOCATION_METRICS
        doc.metric(names.TMP_USED_BYTES, table, r.tmp_used_bytes)
        doc.metric(names.TMP_PEAK_BYTES, table, r.tmp_peak_bytes)
        doc.metric(names.TMP_DELTA_BYTES, table, r.tmp_delta_bytes)
        doc.metric(names.TMP_FILES, table, r.tmp_files)
        doc.metric(names.TMP_FREE_BYTES, table, r.tmp_free_bytes)
        doc.metric(names.TMP_RESIDENT_BYTES, table, r.tmp_resident_bytes)
        doc.metric(names.FUNCTION_RSS_BYTES, table, r.function_rss_bytes)
        doc.metric(names.SANDBOX_MEMORY_BYTES, table, r.sandbox_memory_bytes)
        doc.metric(names.EXTENSION_RSS_BYTES, table, r.extension_rss_bytes)
        doc.metric(names.POST_RUNTIME_MS, table, round(r.post_runtime_ms, 3))
        if self._ctx.purge_on:
            # On but below its threshold, the purge freed nothing this time: 0, not absent.
            doc.metric(names.PURGED_BYTES, table, r.purged_bytes or 0)
            doc.metric(names.PURGED_FILES, table, r.purged_files or 0)
            doc.prop(names.PROP_PURGED_BUT_OPEN, r.purged_but_open or 0)
        doc.metric(names.COLD_START, table, 1 if r.cold_start else 0)
        doc.prop(names.PROP_MEMORY_SOURCE, self._ctx.memory_source)
        doc.prop(names.PROP_SAMPLES, r.samples)
        if r.runtime_status is not None:
            doc.prop(names.PROP_RUNTIME_STATUS, r.runtime_status)
        if r.fallback is not None:
            doc.prop(names.PROP_FALLBACK, r.fallback)
        if r.top_files:
            doc.prop(
                names.PROP_TOP_FILES, [{"path": f.path, "bytes": f.bytes} for f in r.top_files]
            )

    def _report(self, doc: _Doc, r: ReportRecord) -> None:
        doc.prop(names.PROP_DOCUMENT, names.DOC_REPORT)
        doc.common(r.request_id, r.invocation, r.environment_age_ms)
        table = names.REPORT_METRICS
        doc.metric(names.MAX_MEMORY_USED_MB, table, r.max_memory_used_mb)
        doc.metric(names.MEMORY_SIZE_MB, table, r.memory_size_mb)
        doc.metric(names.DURATION_MS, table, r.duration_ms)
        doc.metric(names.BILLED_DURATION_MS, table, r.billed_duration_ms)
        doc.metric(names.INIT_DURATION_MS, table, r.init_duration_ms)
        doc.metric(names.EXTENSION_OVERHEAD_MS, table, r.extension_overhead_ms)
        share = r.tmp_share_of_max_memory
        doc.metric(names.TMP_SHARE_OF_MAX_MEMORY, table, None if share is None else round(share, 4))
        doc.prop(names.PROP_RUNTIME_STATUS, r.status)

    def _summary(self, doc: _Doc, r: SummaryRecord) -> None:
        doc.prop(names.PROP_DOCUMENT, names.DOC_SUMMARY)
        doc.prop(names.PROP_INVOCATION, r.invocation)
        doc.prop(names.PROP_ENVIRONMENT_AGE_MS, r.environment_age_ms)
        table = names.SUMMARY_METRICS
        doc.metric(names.INVOCATIONS, table, r.invocations)
        doc.metric(names.LIFETIME_TMP_PEAK_BYTES, table, r.lifetime_tmp_peak_bytes)
        doc.metric(names.LIFETIME_PURGED_BYTES, table, r.lifetime_purged_bytes)
        doc.metric(names.REPORTS_MISSING, table, r.reports_missing)
        doc.prop(names.PROP_SHUTDOWN_REASON, r.shutdown_reason)
        doc.prop(names.PROP_RUNTIME_DONE_MISSING, r.runtime_done_missing)
        doc.prop(names.PROP_MEMORY_SOURCE, self._ctx.memory_source)

    def _environment(self, doc: _Doc, r: EnvironmentRecord) -> None:
        doc.prop(names.PROP_DOCUMENT, names.DOC_ENVIRONMENT)
        doc.prop(names.PROP_ENVIRONMENT_AGE_MS, r.environment_age_ms)
        values = {
            names.TMP_PEAK_BYTES: r.tmp_peak_bytes,
            names.FUNCTION_RSS_BYTES: r.function_rss_bytes,
            names.SANDBOX_MEMORY_BYTES: r.sandbox_memory_bytes,
            names.EXTENSION_RSS_BYTES: r.extension_rss_bytes,
            names.TMP_FREE_BYTES: r.tmp_free_bytes,
        }
        for name in _ENVIRONMENT_METRICS:
            doc.metric(name, names.INVOCATION_METRICS, values[name])
        doc.prop(names.PROP_MEMORY_SOURCE, self._ctx.memory_source)
        doc.prop(names.PROP_SAMPLES, r.samples)


class _Doc:
    """One document being built: metrics of the enabled set, the rest as properties."""

    def __init__(self, provider: AmazonCloudWatchEMFProvider, metrics_all: bool) -> None:
        self._provider = provider
        self._all = metrics_all
        self.result: dict[str, Any] = {}

    def metric(self, name: str, table: dict[str, tuple[str, bool]], value: float | None) -> None:
        if value is None:
            return  # not measured this time: absent rather than a made-up 0
        unit, core = table[name]
        if core or self._all:
            self._provider.add_metric(name=name, unit=unit, value=value)
        else:
            self._provider.add_metadata(name, value)

    def prop(self, name: str, value: object) -> None:
        self._provider.add_metadata(name, value)

    def common(self, request_id: str, invocation: int, age_ms: int) -> None:
        self.prop(names.PROP_REQUEST_ID, request_id)
        self.prop(names.PROP_INVOCATION, invocation)
        self.prop(names.PROP_ENVIRONMENT_AGE_MS, age_ms)
