"""The Telemetry API: the subscription, the listener thread, and parsing of platform records.

The listener parses, queues and always answers 200: an error would make the platform send
the batch again, forever. It never does the monitor's work (that is the runner's, on the main
thread).
"""

from __future__ import annotations

import contextlib
import http.client
import http.server
import json
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, NotRequired, TypedDict

from tmp_monitor.extensions_api import ID_HEADER
from tmp_monitor.monitor import ReportFacts

PATH: Final = "/2022-07-01/telemetry"
SCHEMA_VERSION: Final = "2022-12-13"
# The smallest buffering the API allows: records reach us 25 ms after they happen, which is
# what an invocation waits for runtimeDone (SPEC 8: ExtensionOverheadMs).
BUFFERING: Final = {"maxItems": 1000, "maxBytes": 262144, "timeoutMs": 25}
LISTEN_HOSTS: Final = ("sandbox.localdomain", "127.0.0.1")
SUBSCRIBE_TIMEOUT_S: Final = 5.0
MAX_BODY: Final = 8 << 20  # twice the largest batch the API sends, with room


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


@dataclass(frozen=True, slots=True)
class Listener:
    uri: str
    server: http.server.HTTPServer
    thread: threading.Thread

    def close(self) -> None:
        """Stop serving (tests; the monitor just exits). Wakes the idle poll with a connection."""
        stopper = threading.Thread(target=self.server.shutdown, daemon=True)
        stopper.start()
        host, port = self.server.server_address[:2]
        for _ in range(20):  # until the serving loop has seen the shutdown flag
            with contextlib.suppress(OSError):
                socket.create_connection((str(host), int(port)), timeout=1.0).close()
            stopper.join(0.1)
            if not stopper.is_alive():
                break
        self.server.server_close()


class _Server(http.server.HTTPServer):
    put: Callable[[TelemetryEvent], None]
    bad_batches: int

    def server_bind(self) -> None:
        # HTTPServer.server_bind looks up the host's FQDN (a DNS query): not needed here.
        socket.socket.bind(self.socket, self.server_address)
        self.server_address = self.socket.getsockname()
        host, port = self.server_address[:2]
        self.server_name = host
        self.server_port = port


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server
    # HTTP/1.0: one batch per connection. With keep-alive, this one-thread server would sit on
    # an idle connection while the platform posts the next batch on a new one.
    protocol_version = "HTTP/1.0"

    def do_POST(self) -> None:
        try:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(min(length, MAX_BODY)) if length > 0 else b""
            batch = json.loads(body) if body else []
            if not isinstance(batch, list):
                batch = [batch]
            for item in batch:
                if isinstance(item, dict) and isinstance(item.get("type"), str):
                    self.server.put(item)  # type: ignore[arg-type]
        except Exception:
            self.server.bad_batches += 1
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        return None  # BaseHTTPRequestHandler logs every request to stderr


def start_listener(put: Callable[[TelemetryEvent], None]) -> Listener | None:
    """Listen on sandbox.localdomain (else 127.0.0.1), on a free port; None if neither binds.

    put receives each record of each batch, on the listener's thread (queue.SimpleQueue.put).
    """
    for host in LISTEN_HOSTS:
        try:
            server = _Server((host, 0), _Handler)
        except OSError:
            continue
        server.put = put
        server.bad_batches = 0
        port = server.server_address[1]
        thread = threading.Thread(
            target=server.serve_forever,
            # No periodic wake-ups (they would cost CPU all along): close() wakes it instead.
            kwargs={"poll_interval": 3600.0},
            name="tmp-monitor-telemetry",
            daemon=True,
        )
        thread.start()
        return Listener(uri=f"http://{host}:{port}", server=server, thread=thread)
    return None


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
    conn = http.client.HTTPConnection(host or "127.0.0.1", int(port or 9001), SUBSCRIBE_TIMEOUT_S)
    try:
        conn.request(
            "PUT",
            PATH,
            body=body,
            headers={ID_HEADER: extension_id, "Content-Type": "application/json"},
        )
        response = conn.getresponse()
        payload = response.read().decode(errors="replace")
    except (OSError, http.client.HTTPException) as exc:
        return Subscription(False, f"the Telemetry API could not be reached: {exc}")
    finally:
        conn.close()
    if response.status == 200:
        return Subscription(True, "")
    return Subscription(False, f"HTTP {response.status}: {payload[:200]}")


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
