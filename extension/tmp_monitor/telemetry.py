"""The Telemetry API: the subscription, the listener thread, and parsing of platform records.

The listener parses, queues and always answers 200: an error would make the platform send
the batch again, forever. It never does the monitor's work (that is the runner's, on the main
thread).
"""

from __future__ import annotations

import _socket
import _thread

from tmp_monitor.extensions_api import (
    ID_HEADER,
    WireError,
    read_body,
    read_headers,
    reader,
    request,
)

# The listener and the subscription come before the first next: no typing, json, socket,
# threading or dataclasses here (extensions_api says why). mypy reads this as true.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, Final, NotRequired, TypedDict

    from tmp_monitor.monitor import ReportFacts

PATH: Final = "/2022-07-01/telemetry"
SCHEMA_VERSION: Final = "2022-12-13"
# The smallest buffering the API allows: records reach us 25 ms after they happen, which is
# what an invocation waits for runtimeDone (SPEC 8: ExtensionOverheadMs).
BUFFERING: Final = {"maxItems": 1000, "maxBytes": 262144, "timeoutMs": 25}
LISTEN_HOSTS: Final = ("sandbox.localdomain", "127.0.0.1")
SUBSCRIBE_TIMEOUT_S: Final = 5.0
READ_TIMEOUT_S: Final = 5.0  # a platform connection that stalls mid-batch is given up
_OK: Final = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


if TYPE_CHECKING:

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

    def __init__(
        self,
        sock: _socket.socket,
        host: str,
        put: Callable[[TelemetryEvent], None],
        hold: bool = False,
    ) -> None:
        self._sock = sock
        self._put = put
        self.bad_batches = 0
        # hold: batches are answered but kept unparsed until release() (json's import and the
        # parsing would otherwise cost CPU during Init, which the runtime's Init shares).
        self._holding = hold
        self._held: list[bytes] = []
        self._lock = _thread.allocate_lock()
        port = sock.getsockname()[1]
        self.uri = f"http://{host}:{port}"
        self.address = (host, port)
        self._done = _thread.allocate_lock()
        self._done.acquire()  # released when the thread ends
        _thread.start_new_thread(self._serve, ())

    def close(self) -> None:
        """Stop serving (tests; the monitor just exits)."""
        try:  # noqa: SIM105 (contextlib: 3 ms of imports before the first next)
            self._sock.shutdown(_socket.SHUT_RDWR)  # wakes accept()
        except OSError:
            pass
        self._sock.close()
        if self._done.acquire(timeout=2.0):
            self._done.release()

    def _serve(self) -> None:
        try:
            while True:
                try:
                    # The built-in socket's accept: a file descriptor (socket.socket wraps it).
                    fd, _ = self._sock._accept()  # type: ignore[attr-defined]
                except OSError:
                    return  # closed
                conn = _socket.socket(fileno=fd)
                try:
                    self._handle(conn)
                finally:
                    conn.close()
        finally:
            self._done.release()

    def release(self) -> None:
        """Parse the batches held so far, in order, and every later one as it comes."""
        with self._lock:
            self._holding = False
            held, self._held = self._held, []
            for body in held:
                self._parse(body)

    def _handle(self, conn: _socket.socket) -> None:
        # Whatever comes, answer 200 (a refused batch would be sent again, forever); a batch
        # that cannot be read is counted and dropped.
        try:
            conn.settimeout(READ_TIMEOUT_S)
            stream = reader(conn)
            stream.readline(65537)  # request line: POST <path> HTTP/1.1
            headers = read_headers(stream)
            body = read_body(stream, headers, until_close=False)
        except Exception:
            self.bad_batches += 1
        else:
            with self._lock:
                if self._holding:
                    self._held.append(body)
                else:
                    self._parse(body)
        try:  # noqa: SIM105 (as in close)
            conn.sendall(_OK)
        except OSError:
            pass

    def _parse(self, body: bytes) -> None:
        try:
            import json  # not before the first next (see the imports above)

            batch = json.loads(body) if body else []
            for item in batch if isinstance(batch, list) else [batch]:
                if isinstance(item, dict) and isinstance(item.get("type"), str):
                    self._put(item)  # type: ignore[arg-type]
        except Exception:
            self.bad_batches += 1


def start_listener(put: Callable[[TelemetryEvent], None], hold: bool = False) -> Listener | None:
    """Listen on sandbox.localdomain (else 127.0.0.1), on a free port; None if neither binds.

    put receives each record of each batch, on the listener's thread (queue.SimpleQueue.put).
    """
    for host in LISTEN_HOSTS:
        sock = _socket.socket(_socket.AF_INET, _socket.SOCK_STREAM)
        try:
            # As socket.create_server does: a restarted monitor can take a port in TIME_WAIT.
            sock.setsockopt(_socket.SOL_SOCKET, _socket.SO_REUSEADDR, 1)
            sock.bind((host, 0))
            sock.listen(16)
        except OSError:
            sock.close()
            continue
        return Listener(sock, host, put, hold)
    return None


class Subscription:
    """The subscription's outcome (a plain class: no dataclasses before the first next)."""

    __slots__ = ("detail", "ok")

    def __init__(self, ok: bool, detail: str) -> None:
        self.ok = ok
        self.detail = detail  # why not, when not ok


def subscribe(api: str, extension_id: str, uri: str) -> Subscription:
    """PUT the platform-events subscription. 202 (Telemetry.NotSupported) and errors: not ok."""
    host, _, port = api.rpartition(":")
    # Written out rather than json.dumps'd (json imports re and enum: 8 ms before the first
    # next); uri is ours (http://host:port), nothing in it needs escaping.
    buffering = ",".join(f'"{k}":{v}' for k, v in BUFFERING.items())
    body = (
        f'{{"schemaVersion":"{SCHEMA_VERSION}","types":["platform"],'
        f'"buffering":{{{buffering}}},"destination":{{"protocol":"HTTP","URI":"{uri}"}}}}'
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
    from tmp_monitor.monitor import ReportFacts  # loaded by then: the runner imports it

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
