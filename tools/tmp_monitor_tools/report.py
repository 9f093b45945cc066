"""The per-invocation report: invocation and report documents joined by request id.

The invocation document says what `/tmp` and the processes held at the end of the runtime; the
report document (or, where it never came, the platform's own report) gives Max Memory Used of
the same invocation. Both are keyed by (environment, request id).
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict, dataclass, fields

from tmp_monitor import names

from .sources import Document, Logs, PlatformReport

MIB = 1024 * 1024


@dataclass(frozen=True)
class Row:
    """One invocation. Byte figures in bytes, Max Memory Used and memory size in MB (MiB)."""

    environment: int
    stream: str
    request_id: str
    invocation: int | None
    time_ms: int
    tmp_used_bytes: float | None
    tmp_peak_bytes: float | None
    tmp_resident_bytes: float | None
    function_rss_bytes: float | None
    monitor_rss_bytes: float | None
    max_memory_used_mb: float | None
    memory_size_mb: float | None
    tmp_share_percent: float | None
    purged_bytes: float | None
    purged_files: float | None
    # "monitor": the monitor's report document; "platform": only the platform's own report.
    max_memory_source: str | None


@dataclass(frozen=True)
class Environment:
    """One execution environment (log stream) and its summary document, if it shut down."""

    number: int
    stream: str
    invocations: float | None
    lifetime_tmp_peak_bytes: float | None
    lifetime_purged_bytes: float | None
    reports_missing: float | None
    shutdown_reason: str | None


@dataclass(frozen=True)
class Report:
    rows: tuple[Row, ...]
    environments: tuple[Environment, ...]
    # Environment-level documents (multi-concurrency mode), which belong to no invocation.
    environment_samples: int


def build(logs: Logs) -> Report:
    """Join the documents of `logs` into one row per invocation, in time order per environment."""
    invocations: dict[tuple[str, str], Document] = {}
    reports: dict[tuple[str, str], Document] = {}
    summaries: dict[str, Document] = {}
    samples = 0
    for doc in logs.documents:
        if doc.kind == names.DOC_ENVIRONMENT:
            samples += 1
        elif doc.kind == names.DOC_SUMMARY:
            summaries[doc.stream] = doc
        elif doc.request_id is not None:
            # Delivery is at least once: a repeated document replaces its twin.
            target = invocations if doc.kind == names.DOC_INVOCATION else reports
            target[(doc.stream, doc.request_id)] = doc
    platform = {(r.stream, r.request_id): r for r in logs.platform_reports}

    first_seen: dict[str, int] = {}
    for doc in sorted(logs.documents, key=lambda d: d.time_ms):
        first_seen.setdefault(doc.stream, doc.time_ms)
    numbers = {s: n for n, s in enumerate(sorted(first_seen, key=first_seen.__getitem__), 1)}

    rows = [
        _row(key, invocations.get(key), reports.get(key), platform.get(key), numbers[key[0]])
        for key in invocations.keys() | reports.keys()
    ]
    rows.sort(key=lambda r: (r.environment, r.invocation or 0, r.time_ms))
    environments = tuple(_environment(n, s, summaries.get(s)) for s, n in numbers.items())
    return Report(tuple(rows), tuple(sorted(environments, key=lambda e: e.number)), samples)


def _metric(doc: Document | None, name: str) -> float | None:
    return None if doc is None else doc.number(name)


def _row(
    key: tuple[str, str],
    inv: Document | None,
    rep: Document | None,
    platform: PlatformReport | None,
    environment: int,
) -> Row:
    stream, request_id = key
    # A key exists only for a document, so one of the two is there.
    main = inv if inv is not None else rep
    max_used = _metric(rep, names.MAX_MEMORY_USED_MB)
    memory_size = _metric(rep, names.MEMORY_SIZE_MB)
    source = "monitor" if max_used is not None else None
    if max_used is None and platform is not None:
        max_used, memory_size = platform.max_memory_used_mb, platform.memory_size_mb
        source = "platform"
    resident = _metric(inv, names.TMP_RESIDENT_BYTES)
    share = _metric(rep, names.TMP_SHARE_OF_MAX_MEMORY)
    if share is None and resident is not None and max_used:
        share = 100.0 * resident / (max_used * MIB)
    return Row(
        environment=environment,
        stream=stream,
        request_id=request_id,
        invocation=None if main is None else main.invocation,
        time_ms=0 if main is None else main.time_ms,
        tmp_used_bytes=_metric(inv, names.TMP_USED_BYTES),
        tmp_peak_bytes=_metric(inv, names.TMP_PEAK_BYTES),
        tmp_resident_bytes=resident,
        function_rss_bytes=_metric(inv, names.FUNCTION_RSS_BYTES),
        monitor_rss_bytes=_metric(inv, names.EXTENSION_RSS_BYTES),
        max_memory_used_mb=max_used,
        memory_size_mb=memory_size,
        tmp_share_percent=share,
        purged_bytes=_metric(inv, names.PURGED_BYTES),
        purged_files=_metric(inv, names.PURGED_FILES),
        max_memory_source=source,
    )


def _environment(number: int, stream: str, summary: Document | None) -> Environment:
    reason = None if summary is None else summary.members.get(names.PROP_SHUTDOWN_REASON)
    return Environment(
        number=number,
        stream=stream,
        invocations=_metric(summary, names.INVOCATIONS),
        lifetime_tmp_peak_bytes=_metric(summary, names.LIFETIME_TMP_PEAK_BYTES),
        lifetime_purged_bytes=_metric(summary, names.LIFETIME_PURGED_BYTES),
        reports_missing=_metric(summary, names.REPORTS_MISSING),
        shutdown_reason=reason if isinstance(reason, str) else None,
    )


def human_bytes(value: float | None) -> str:
    """Bytes in binary units, as `du -h` would, to three significant figures."""
    if value is None:
        return "-"
    size, unit = float(value), "B"
    for next_unit in ("KiB", "MiB", "GiB", "TiB"):
        if abs(size) < 1024:
            break
        size, unit = size / 1024, next_unit
    if unit == "B":
        return f"{size:.0f} B"
    return f"{size:.1f} {unit}" if abs(size) < 100 else f"{size:.0f} {unit}"


def _mb(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f} MB"


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} %"


COLUMNS = (
    "invocation",
    "/tmp used",
    "peak",
    "resident",
    "function RSS",
    "monitor RSS",
    "Max Memory Used",
    "/tmp share",
    "purged",
)


def table(report: Report) -> str:
    """The report as a text table, one line per invocation; notes below it."""
    several = len(report.environments) > 1
    header = (("env",) if several else ()) + COLUMNS
    lines = []
    for row in report.rows:
        cells = (
            "-" if row.invocation is None else str(row.invocation),
            human_bytes(row.tmp_used_bytes),
            human_bytes(row.tmp_peak_bytes),
            human_bytes(row.tmp_resident_bytes),
            human_bytes(row.function_rss_bytes),
            human_bytes(row.monitor_rss_bytes),
            _mb(row.max_memory_used_mb) + ("*" if row.max_memory_source == "platform" else ""),
            _percent(row.tmp_share_percent),
            human_bytes(row.purged_bytes),
        )
        lines.append(((str(row.environment),) if several else ()) + cells)
    widths = [max(len(c[i]) for c in [header, *lines]) for i in range(len(header))]
    out = ["  ".join(h.rjust(w) for h, w in zip(header, widths, strict=True))]
    out += ["  ".join(c.rjust(w) for c, w in zip(cells, widths, strict=True)) for cells in lines]
    out += _notes(report, several)
    return "\n".join(out) + "\n"


def _notes(report: Report, several: bool) -> list[str]:
    notes = []
    if report.environment_samples:
        notes.append(
            f"{report.environment_samples} environment-level samples not shown (multi-concurrency "
            "mode has no per-invocation figures)"
        )
    if any(r.max_memory_source == "platform" for r in report.rows):
        notes.append("* from the platform's report (the monitor's report document is missing)")
    if any(r.tmp_used_bytes is None for r in report.rows):
        notes.append("- no invocation document for some invocations (the environment died?)")
    for env in report.environments:
        label = f"env {env.number}: {env.stream}" if several else "environment"
        if env.invocations is None:
            notes.append(f"{label}: no summary document (still running, or shut down later)")
        else:
            notes.append(
                f"{label}: {env.invocations:.0f} invocations, /tmp peak "
                f"{human_bytes(env.lifetime_tmp_peak_bytes)}, purged "
                f"{human_bytes(env.lifetime_purged_bytes)}, reports missing "
                f"{env.reports_missing or 0:.0f}, shutdown {env.shutdown_reason or '-'}"
            )
    return notes


def to_csv(report: Report) -> str:
    buffer = io.StringIO()
    names_ = [f.name for f in fields(Row)]
    writer = csv.DictWriter(buffer, fieldnames=names_, lineterminator="\n")
    writer.writeheader()
    for row in report.rows:
        writer.writerow({k: "" if v is None else v for k, v in asdict(row).items()})
    return buffer.getvalue()


def to_json(report: Report) -> str:
    body = {
        "invocations": [asdict(r) for r in report.rows],
        "environments": [asdict(e) for e in report.environments],
        "environment_samples": report.environment_samples,
    }
    return json.dumps(body, indent=2) + "\n"
