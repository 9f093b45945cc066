"""Wire client of the Lambda Extensions API: next, and the HTTP both APIs speak.

Registration is tmp_monitor.register's (it runs before anything else is imported). There is no
init/exit error call: the monitor never fails the function's Init or invocation; when it cannot
work it keeps calling next until SHUTDOWN.

Plain HTTP/1.1 on loopback over a socket: http.client would pull in the email package (and
ssl, where present), several MiB of the monitor's RSS, which lands in Max Memory Used (SPEC 3).
next is a long poll and has no timeout: the platform answers when there is an event, and
freezes the whole environment in between.
"""

from __future__ import annotations

import io
import json
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, NotRequired, TypedDict

PREFIX: Final = "/2020-01-01/extension"
RETRY_FIRST_S: Final = 0.01
RETRY_MAX_S: Final = 1.0
ID_HEADER: Final = "Lambda-Extension-Identifier"


class Tracing(TypedDict):
    type: str
    value: str


class RegisterResponse(TypedDict):
    functionName: str
    functionVersion: str
    handler: str
    accountId: NotRequired[str]


class InvokeEvent(TypedDict):
    eventType: str  # "INVOKE"
    deadlineMs: int
    requestId: str
    invokedFunctionArn: str
    tracing: NotRequired[Tracing]


class ShutdownEvent(TypedDict):
    eventType: str  # "SHUTDOWN"
    shutdownReason: str  # spindown, timeout, failure: in any case (RAPID, RIE differ)
    deadlineMs: int


Event = InvokeEvent | ShutdownEvent


class ApiError(Exception):
    """The Extensions API refused a call, or could not be reached."""

    def __init__(self, call: str, status: int, body: str) -> None:
        super().__init__(f"{call}: HTTP {status}: {body[:200]}")
        self.status = status


def _split(api: str) -> tuple[str, int]:
    host, _, port = api.rpartition(":")
    return (host or "127.0.0.1"), int(port or 9001)


MAX_HEADER_LINES: Final = 100
MAX_BODY: Final = 8 << 20


class WireError(Exception):
    """What came over the socket is not HTTP we can read."""


def read_headers(stream: io.BufferedReader) -> dict[str, str]:
    """Header lines up to the blank line, names lower-cased."""
    headers: dict[str, str] = {}
    for _ in range(MAX_HEADER_LINES):
        line = stream.readline(65537)
        if not line:
            raise WireError("connection closed in the headers")
        if line in (b"\r\n", b"\n"):
            return headers
        name, sep, value = line.decode("latin-1").partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    raise WireError("too many header lines")


def read_body(stream: io.BufferedReader, headers: dict[str, str], until_close: bool) -> bytes:
    """The body: by Content-Length, chunked, or (responses only) up to the end of the stream."""
    if "chunked" in headers.get("transfer-encoding", "").lower():
        parts: list[bytes] = []
        size = 0
        while True:
            line = stream.readline(1024)
            length = int(line.split(b";")[0].strip() or b"0", 16)
            if length == 0:
                read_headers(stream)  # trailers
                return b"".join(parts)
            size += length
            if size > MAX_BODY:
                raise WireError("body too large")
            parts.append(stream.read(length))
            stream.readline(3)
    if "content-length" in headers:
        length = int(headers["content-length"])
        if not 0 <= length <= MAX_BODY:
            raise WireError(f"Content-Length {length}")
        body = stream.read(length)
        if len(body) != length:
            raise WireError("connection closed in the body")
        return body
    return bytes(stream.read(MAX_BODY)) if until_close else b""


def request(
    host: str,
    port: int,
    method: str,
    path: str,
    headers: dict[str, str],
    body: bytes | None,
    timeout: float | None,
) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 exchange on a fresh connection: (status, headers, body). Raises OSError,
    WireError."""
    head = [f"{method} {path} HTTP/1.1", f"Host: {host}:{port}", "Connection: close"]
    head += [f"{k}: {v}" for k, v in headers.items()]
    data = body or b""
    if body is not None or method in ("POST", "PUT"):
        head.append(f"Content-Length: {len(data)}")
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.settimeout(timeout)
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + data)
        with sock.makefile("rb") as stream:
            status_line = stream.readline(65537).decode("latin-1").split(None, 2)
            if len(status_line) < 2 or not status_line[0].startswith("HTTP/"):
                raise WireError(f"not an HTTP response: {status_line!r}")
            response_headers = read_headers(stream)
            return int(status_line[1]), response_headers, read_body(stream, response_headers, True)


class Client:
    """One registered extension's calls. `api` is AWS_LAMBDA_RUNTIME_API (host:port)."""

    def __init__(self, api: str) -> None:
        self._host, self._port = _split(api)
        self.extension_id = ""

    def _call(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None,
        headers: dict[str, str],
        timeout: float | None,
    ) -> tuple[int, dict[str, str], bytes]:
        data = json.dumps(body).encode() if body is not None else None
        if data is not None:
            headers = {**headers, "Content-Type": "application/json"}
        try:
            return request(self._host, self._port, method, PREFIX + path, headers, data, timeout)
        except (OSError, ValueError, WireError) as exc:
            raise ApiError(path, 0, str(exc)) from exc

    def next(self) -> Event:
        """GET /event/next: blocks until the platform has an event."""
        status, _, payload = self._call(
            "GET", "/event/next", None, {ID_HEADER: self.extension_id}, None
        )
        if status != 200:
            raise ApiError("next", status, payload.decode(errors="replace"))
        event: Event = json.loads(payload)
        return event


# A next that fails the way a passing fault does (a 5xx answer, a dropped connection) is asked
# again after each of these pauses: giving up would end the process, which the platform takes
# for an Extension.Crash of the function's invocation. A 4xx is the platform's final word.
NEXT_RETRY_DELAYS_S: Final = (0.01, 0.1, 0.5, 1.0, 2.0)


@dataclass(frozen=True, slots=True)
class NextResult:
    event: Event | None
    error: ApiError | None


class NextCaller:
    """Calls next on its own thread when asked, and hands over what comes back.

    The main thread can so keep sampling while a next is pending (the degraded modes need it),
    and the entry point can ask for the first event before it has imported the rest.
    """

    def __init__(self, client: Client, put: Callable[[NextResult], None]) -> None:
        self._client = client
        self._put = put
        self._wanted = threading.Semaphore(0)
        self.pending = False  # a next asked for and not answered yet
        self._thread = threading.Thread(target=self._run, name="tmp-monitor-next", daemon=True)
        self._thread.start()

    def request(self) -> None:
        self.pending = True
        self._wanted.release()

    def _run(self) -> None:
        while True:
            self._wanted.acquire()
            result = self._next()
            self.pending = False
            self._put(result)
            if result.event is None:
                return

    def _next(self) -> NextResult:
        delays = iter(NEXT_RETRY_DELAYS_S)
        while True:
            try:
                return NextResult(self._client.next(), None)
            except ApiError as exc:
                delay = next(delays, None)
                if delay is None or 400 <= exc.status < 500:
                    return NextResult(None, exc)
            time.sleep(delay)
