"""Reading what the monitor wrote: sandbox telemetry files, CloudWatch Logs events, log groups.

Every reader returns the same `Logs`: the monitor's EMF documents and the platform's reports,
each tagged with the environment (log stream) it came from, because invocation numbers and
request ids are only meaningful within one environment.
"""

from __future__ import annotations

import gzip
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from tmp_monitor import names

PER_INVOCATION = (names.DOC_INVOCATION, names.DOC_REPORT)
DOCUMENT_KINDS = (*PER_INVOCATION, names.DOC_SUMMARY, names.DOC_ENVIRONMENT)

# A platform REPORT line as Lambda writes it in the TEXT log format.
_REPORT_LINE = re.compile(r"^REPORT RequestId: (?P<id>\S+)\s")
_REPORT_FIELD = re.compile(r"(?P<key>[A-Za-z ]+): (?P<value>[0-9.]+) (?:ms|MB)")
_EXPORT_LINE = re.compile(r"^(?P<ts>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:?\d\d)) ")

# Filter pattern for log groups: our documents (EMF) and the platform's reports (TEXT and JSON
# log formats); everything else the function logs is left on the server.
LOG_GROUP_FILTER = '?"_aws" ?"REPORT RequestId" ?"platform.report"'


class InputError(Exception):
    """Input that cannot be read, with the place it failed: `file:line: what`."""

    def __init__(self, source: str, line: int | None, what: str) -> None:
        where = source if line is None else f"{source}:{line}"
        super().__init__(f"{where}: {what}")


@dataclass(frozen=True)
class Document:
    """One EMF document of the monitor: its kind, where it came from and its top-level members."""

    kind: str
    stream: str
    time_ms: int
    members: Mapping[str, Any]

    def number(self, name: str) -> float | None:
        return as_number(self.members.get(name))

    @property
    def request_id(self) -> str | None:
        value = self.members.get(names.PROP_REQUEST_ID)
        return value if isinstance(value, str) else None

    @property
    def invocation(self) -> int | None:
        value = as_number(self.members.get(names.PROP_INVOCATION))
        return None if value is None else int(value)


@dataclass(frozen=True)
class PlatformReport:
    """The platform's own report of one invocation (telemetry record or REPORT log line)."""

    stream: str
    request_id: str
    max_memory_used_mb: float
    memory_size_mb: float | None


@dataclass(frozen=True)
class Logs:
    documents: tuple[Document, ...]
    platform_reports: tuple[PlatformReport, ...]


def as_number(value: object) -> float | None:
    """A metric value: a number, or (as Powertools writes them) a list of numbers."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if (
        isinstance(value, list)
        and value
        and all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
    ):
        return float(max(value))
    return None


@dataclass
class _Collector:
    documents: list[Document]
    reports: list[PlatformReport]

    def logs(self) -> Logs:
        return Logs(tuple(self.documents), tuple(self.reports))


def _document(text: str, stream: str, source: str, line: int | None) -> Document | None:
    """The monitor's document in one log message, None for any other message."""
    stripped = text.strip()
    if not stripped.startswith("{") or '"_aws"' not in stripped:
        return None
    try:
        body = json.loads(stripped)
    except json.JSONDecodeError as exc:
        raise InputError(source, line, f"broken EMF document ({exc.msg})") from None
    if not isinstance(body, dict):
        return None
    kind = body.get(names.PROP_DOCUMENT)
    if kind not in DOCUMENT_KINDS:
        return None  # EMF of someone else (the function's own metrics, another extension)
    aws = body.get("_aws")
    stamp = aws.get("Timestamp") if isinstance(aws, dict) else None
    if not isinstance(stamp, int):
        raise InputError(source, line, "EMF document without an integer _aws.Timestamp")
    if kind in PER_INVOCATION and not isinstance(body.get(names.PROP_REQUEST_ID), str):
        raise InputError(source, line, f"{kind} document without {names.PROP_REQUEST_ID}")
    return Document(kind, stream, stamp, body)


def _platform_report(
    record: Mapping[str, Any], stream: str, source: str, line: int | None
) -> PlatformReport:
    metrics = record.get("metrics")
    request_id = record.get("requestId")
    used = as_number(metrics.get("maxMemoryUsedMB")) if isinstance(metrics, dict) else None
    if not isinstance(request_id, str) or used is None:
        raise InputError(source, line, "platform.report without requestId or maxMemoryUsedMB")
    size = as_number(metrics.get("memorySizeMB")) if isinstance(metrics, dict) else None
    return PlatformReport(stream, request_id, used, size)


def _report_line(text: str, stream: str) -> PlatformReport | None:
    """A TEXT-format `REPORT RequestId: ... Max Memory Used: N MB` line."""
    match = _REPORT_LINE.match(text)
    if match is None:
        return None
    fields = {m["key"].strip(): float(m["value"]) for m in _REPORT_FIELD.finditer(text)}
    used = fields.get("Max Memory Used")
    if used is None:
        return None
    return PlatformReport(stream, match["id"], used, fields.get("Memory Size"))


def _message(out: _Collector, text: str, stream: str, source: str, line: int | None) -> None:
    """One CloudWatch Logs message: our document, a platform report, or something to ignore."""
    doc = _document(text, stream, source, line)
    if doc is not None:
        out.documents.append(doc)
        return
    report = _report_line(text, stream)
    if report is not None:
        out.reports.append(report)
        return
    stripped = text.strip()
    if stripped.startswith("{") and '"platform.report"' in stripped:
        # The JSON log format: the platform writes its telemetry record as the message.
        try:
            body = json.loads(stripped)
        except json.JSONDecodeError:
            return
        if isinstance(body, dict) and body.get("type") == "platform.report":
            record = body.get("record")
            if isinstance(record, dict):
                out.reports.append(_platform_report(record, stream, source, line))


def _read_text(path: Path) -> str:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InputError(str(path), None, exc.strerror or str(exc)) from None
    if raw[:2] == b"\x1f\x8b":  # log exports to S3 are gzipped
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise InputError(str(path), None, f"broken gzip file ({exc})") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise InputError(str(path), line, "not UTF-8 text") from None


def read_file(path: Path) -> Logs:
    """Any file the report reads, told apart by its first line."""
    text = _read_text(path)
    first = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    source = str(path)
    if not first:
        raise InputError(source, None, "empty file")
    if first.startswith("{"):
        try:
            head = json.loads(first)
        except json.JSONDecodeError:
            head = None
        if isinstance(head, dict) and {"time", "type", "record"} <= head.keys():
            return read_telemetry(text, source)
        return read_events_json(text, source)
    return read_export(text, source)


def read_telemetry(text: str, source: str) -> Logs:
    """A `lambda-sandbox --telemetry-out` file: one Telemetry API event per line.

    Each `platform.initStart` begins a new execution environment (the sandbox starts a fresh
    one after a crash or timeout), so the events after it are tagged with a new stream.
    """
    out = _Collector([], [])
    environment = 0
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            event = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(source, number, f"not JSON ({exc.msg})") from None
        if not isinstance(event, dict) or not {"time", "type", "record"} <= event.keys():
            raise InputError(source, number, 'not a telemetry event {"time","type","record"}')
        kind, record = event["type"], event["record"]
        if kind == "platform.initStart" or environment == 0:
            environment += 1
        stream = f"{source} (environment {environment})"
        if kind == "extension" and isinstance(record, str):
            doc = _document(record, stream, source, number)
            if doc is not None:
                out.documents.append(doc)
        elif kind == "platform.report":
            if not isinstance(record, dict):
                raise InputError(source, number, "platform.report record is not an object")
            out.reports.append(_platform_report(record, stream, source, number))
    return out.logs()


def _line_of(text: str, pos: int) -> int:
    return text.count("\n", 0, pos) + 1


def _skip_ws(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in " \t\r\n":
        pos += 1
    return pos


def _page_events(
    text: str, pos: int, source: str, decoder: json.JSONDecoder
) -> tuple[list[tuple[Any, int]], int]:
    """The items of the `events` array of the page at `pos`, each with the offset it starts at,
    and the offset after the page.

    Walks the page member by member so that a malformed event is reported at its own line
    rather than at the top of the file.
    """
    if text[pos] != "{":
        raise InputError(source, _line_of(text, pos), 'expected a {"events": [...]} object')
    items: list[tuple[Any, int]] = []
    seen_events = False
    pos = _skip_ws(text, pos + 1)
    while text[pos] != "}":
        key, pos = decoder.raw_decode(text, pos)
        pos = _skip_ws(text, pos)
        if text[pos] != ":":
            raise InputError(source, _line_of(text, pos), "expected ':'")
        pos = _skip_ws(text, pos + 1)
        if key == "events" and text[pos] == "[":
            seen_events = True
            pos = _skip_ws(text, pos + 1)
            while text[pos] != "]":
                start = pos
                item, pos = decoder.raw_decode(text, pos)
                items.append((item, start))
                pos = _skip_ws(text, pos)
                if text[pos] == ",":
                    pos = _skip_ws(text, pos + 1)
            pos += 1
        else:
            _, pos = decoder.raw_decode(text, pos)
        pos = _skip_ws(text, pos)
        if text[pos] == ",":
            pos = _skip_ws(text, pos + 1)
    if not seen_events:
        raise InputError(source, _line_of(text, pos), 'no "events" array in this object')
    return items, pos + 1


def read_events_json(text: str, source: str) -> Logs:
    """What `aws logs filter-log-events` (or `get-log-events`) prints: one or more pages
    `{"events": [{"timestamp", "message", "logStreamName"?, ...}], "nextToken"?}`."""
    out = _Collector([], [])
    decoder = json.JSONDecoder()
    pos = _skip_ws(text, 0)
    try:
        while pos < len(text):
            items, pos = _page_events(text, pos, source, decoder)
            for item, start in items:
                _event(out, item, source, _line_of(text, start))
            pos = _skip_ws(text, pos)
    except json.JSONDecodeError as exc:
        raise InputError(source, exc.lineno, f"not JSON ({exc.msg})") from None
    except IndexError:
        raise InputError(source, _line_of(text, len(text)), "unexpected end of file") from None
    return out.logs()


def _event(out: _Collector, item: object, source: str, line: int) -> None:
    if not isinstance(item, dict):
        raise InputError(source, line, "a log event is not an object")
    message, stamp = item.get("message"), item.get("timestamp")
    if not isinstance(message, str) or not isinstance(stamp, int):
        raise InputError(source, line, 'log event without "message" or integer "timestamp"')
    stream = item.get("logStreamName")
    stream = stream if isinstance(stream, str) else source
    _message(out, message, stream, source, line)


def read_export(text: str, source: str) -> Logs:
    """A log export: `<ISO timestamp> <message>` per event; the file is one log stream.

    Lines without a timestamp continue the previous (multi-line) message; ours are one line.
    """
    out = _Collector([], [])
    matched = False
    for number, line in enumerate(text.splitlines(), start=1):
        match = _EXPORT_LINE.match(line)
        if match is None:
            continue
        matched = True
        _message(out, line[match.end() :], source, source, number)
    if not matched:
        raise InputError(
            source,
            1,
            "not a telemetry file, CloudWatch Logs events JSON or log export "
            "(<ISO timestamp> <message> lines)",
        )
    return out.logs()


class LogsClient(Protocol):
    def filter_log_events(self, **kwargs: Any) -> Mapping[str, Any]: ...


@dataclass(frozen=True)
class Progress:
    """How far a log group read is: pages and events so far, and the time reached."""

    pages: int
    events: int
    fraction: float


def read_log_group(
    client: LogsClient,
    group: str,
    start_ms: int,
    end_ms: int,
    on_page: Callable[[Progress], None] = lambda _: None,
    page_size: int | None = None,
) -> Logs:
    """All our documents and the platform's reports in a log group between two instants."""
    out = _Collector([], [])
    kwargs: dict[str, Any] = {
        "logGroupName": group,
        "startTime": start_ms,
        "endTime": end_ms,
        "filterPattern": LOG_GROUP_FILTER,
    }
    if page_size is not None:
        kwargs["limit"] = page_size
    pages = events = 0
    latest = start_ms
    source = f"log group {group}"
    while True:
        page = client.filter_log_events(**kwargs)
        pages += 1
        for event in page.get("events", []):
            events += 1
            stream = str(event.get("logStreamName", group))
            stamp = int(event.get("timestamp", start_ms))
            latest = max(latest, stamp)
            where = f"{source} {stream} event {event.get('eventId', events)}"
            _message(out, str(event.get("message", "")), stream, where, None)
        span = max(end_ms - start_ms, 1)
        on_page(Progress(pages, events, min(1.0, (latest - start_ms) / span)))
        token = page.get("nextToken")
        if not token:
            return out.logs()
        kwargs["nextToken"] = token


def merge(parts: Sequence[Logs]) -> Logs:
    return Logs(
        tuple(d for p in parts for d in p.documents),
        tuple(r for p in parts for r in p.platform_reports),
    )


def parse_since(text: str, now: datetime) -> datetime:
    """`--since`: a duration back from now (`90s`, `30m`, `1h`, `2d`) or an ISO 8601 instant."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([smhd])", text.strip())
    if match is not None:
        seconds = float(match[1]) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[match[2]]
        return datetime.fromtimestamp(now.timestamp() - seconds, UTC)
    try:
        instant = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"--since {text!r}: use e.g. 30m, 1h, 2d or an ISO 8601 time") from None
    return instant if instant.tzinfo else instant.replace(tzinfo=UTC)
