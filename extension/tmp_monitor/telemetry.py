"""The Telemetry API: the subscription, the listener thread, and parsing of platform records.

The listener parses, queues and always answers 200: an error would make the platform send
the batch again, forever. It never does the monitor's work (that is the runner's, on the main
thread).
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, NotRequired, TypedDict

from tmp_monitor.extensions_api import ID_HEADER, WireError, read_body, read_headers, request

PATH: Final = "/2022-07-01/telemetry"
SCHEMA_VERSION: Final = "2022-12-13"
# The smallest buffering the API allows: records reach us 25 ms after they happen, which is
# what an invocation waits for runtimeDone (SPEC 8: ExtensionOverheadMs).
BUFFERING: Final = {"maxItems": 1000, "maxBytes": 262144, "timeoutMs": 25}
LISTEN_HOSTS: Final = ("sandbox.localdomain", "127.0.0.1")
SUBSCRIBE_TIMEOUT_S: Final = 5.0
READ_TIMEOUT_S: Final = 5.0  # a platform connection that stalls mid-batch is given up
_OK: Final = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


class TelemetryEvent(TypedDict):
    time: str
    type: str
    record: Any


class Span(TypedDict):
    name: str
    start: str
    durationMs: float


class ReportMetrics(TypedDict):
    durationMs: float
    billedDurationMs: float
    memorySizeMB: int
    maxMemoryUsedMB: int
    initDurationMs: NotRequired[float]
    restoreDurationMs: NotRequired[float]


class ReportRecord(TypedDict):
    requestId: str
    status: str
    metrics: ReportMetrics
    spans: NotRequired[list[Span]]


class Listener:
    """The listener thread: accepts the platform's POSTs, one connection at a time."""

    def __init__(self, sock: socket.socket, host: str, put: Callable[[TelemetryEvent], None]):
        self._sock = sock
        self._put = put
        self.bad_batches = 0
        port = sock.getsockname()[1]
        self.uri = f"http://{host}:{port}"
        self.address = (host, port)
        self._thread = threading.Thread(
            target=self._serve, name="tmp-monitor-telemetry", daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        """Stop serving (tests; the monitor just exits)."""
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)  # wakes accept()
        self._sock.close()
        self._thread.join(2.0)

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return  # closed
            with conn:
                self._handle(conn)

    def _handle(self, conn: socket.socket) -> None:
        # Whatever comes, answer 200 (a refused batch would be sent again, forever); a batch
        # that cannot be read is counted and dropped.
        try:
            conn.settimeout(READ_TIMEOUT_S)
            with conn.makefile("rb") as stream:
                stream.readline(65537)  # request line: POST <path> HTTP/1.1
                headers = read_headers(stream)
                body = read_body(stream, headers, until_close=False)
            batch = json.loads(body) if body else []
            for item in batch if isinstance(batch, list) else [batch]:
                if isinstance(item, dict) and isinstance(item.get("type"), str):
                    self._put(item)  # type: ignore[arg-type]
        except Exception:
            self.bad_batches += 1
        with contextlib.suppress(OSError):
            conn.sendall(_OK)


def start_listener(put: Callable[[TelemetryEvent], None]) -> Listener | None:
    """Listen on sandbox.localdomain (else 127.0.0.1), on a free port; None if neither binds.

    put receives each record of each batch, on the listener's thread (queue.SimpleQueue.put).
    """
    for host in LISTEN_HOSTS:
        try:
            sock = socket.create_server((host, 0), backlog=16)
        except OSError:
            continue
        return Listener(sock, host, put)
    return None


@dataclass(frozen=True, slots=True)
class ReportFacts:
    """A platform.report record, parsed (parse_report)."""

    request_id: str
    status: str
    duration_ms: float
    billed_duration_ms: float
    memory_size_mb: int
    max_memory_used_mb: int
    init_duration_ms: float | None
    extension_overhead_ms: float | None


@dataclass(frozen=True, slots=True)
class Subscription:
    ok: bool
    detail: str  # why not, when not ok


def subscribe(api: str, extension_id: str, uri: str) -> Subscription:
    """PUT the platform-events subscription. 202 (Telemetry.NotSupported) and errors: not ok."""
    host, _, port = api.rpartition(":")
    body = json.dumps(
        {
            "schemaVersion": SCHEMA_VERSION,
            "types": ["platform"],
            "buffering": BUFFERING,
            "destination": {"protocol": "HTTP", "URI": uri},
        }
    ).encode()
    headers = {ID_HEADER: extension_id, "Content-Type": "application/json"}
    try:
        status, _, payload = request(
            host or "127.0.0.1", int(port or 9001), "PUT", PATH, headers, body, SUBSCRIBE_TIMEOUT_S
        )
    except (OSError, ValueError, WireError) as exc:
        return Subscription(False, f"the Telemetry API could not be reached: {exc}")
    if status == 200:
        return Subscription(True, "")
    return Subscription(False, f"HTTP {status}: {payload[:200].decode(errors='replace')}")


def parse_report(record: Any) -> ReportFacts | None:
    """A platform.report record, or None when it lacks what the report document needs."""
    try:
        metrics = record["metrics"]
        overhead = None
        for span in record.get("spans") or ():
            if span.get("name") == "extensionOverhead":
                overhead = float(span["durationMs"])
        init = metrics.get("initDurationMs")
        return ReportFacts(
            request_id=str(record["requestId"]),
            status=str(record.get("status", "")),
            duration_ms=float(metrics["durationMs"]),
            billed_duration_ms=float(metrics["billedDurationMs"]),
            memory_size_mb=int(metrics["memorySizeMB"]),
            max_memory_used_mb=int(metrics["maxMemoryUsedMB"]),
            init_duration_ms=float(init) if init is not None else None,
            extension_overhead_ms=overhead,
        )
    except (KeyError, TypeError, ValueError, AttributeError):
        return None
