"""Wire client of the Lambda Extensions API: next, and the HTTP both APIs speak.

Registration is tmp_monitor.register's (it runs before anything else is imported). There is no
init error call: the monitor never fails the function's Init; when it cannot work it keeps
calling next until SHUTDOWN. The one exit is when next itself is gone for good (a 4xx, or
failures past every retry): then it says so through /extension/exit/error before it exits.

Plain HTTP/1.1 on loopback over a socket: http.client would pull in the email package (and
ssl, where present), several MiB of the monitor's RSS, which lands in Max Memory Used (SPEC 3).
next is a long poll and has no timeout: the platform answers when there is an event, and
freezes the whole environment in between.
"""

from __future__ import annotations

import _queue
import _socket
import _thread
import io
import time

# typing's TYPE_CHECKING without importing typing (or json, socket, threading, dataclasses: the
# entry point asks for the first event through this module before anything else is imported,
# and all the import costs before it is the user's cold start). mypy reads any constant of
# that name as true.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, Final, NotRequired, TypedDict

PREFIX: Final = "/2020-01-01/extension"
RETRY_FIRST_S: Final = 0.01
RETRY_MAX_S: Final = 1.0
ID_HEADER: Final = "Lambda-Extension-Identifier"
ERROR_TYPE_HEADER: Final = "Lambda-Extension-Function-Error-Type"
EXIT_ERROR_TIMEOUT_S: Final = 1.0


if TYPE_CHECKING:

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


class _SocketReader(io.RawIOBase):
    """A connected _socket.socket as a raw stream (socket.makefile without the socket module)."""

    def __init__(self, sock: _socket.socket) -> None:
        self._sock = sock

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        return self._sock.recv_into(buffer)


def reader(sock: _socket.socket) -> io.BufferedReader:
    """A buffered reader of what sock receives (the caller closes sock)."""
    return io.BufferedReader(_SocketReader(sock))


def request(
    host: str,
    port: int,
    method: str,
    path: str,
    headers: dict[str, str],
    body: bytes | None,
    timeout: float | None,
    on_sent: Callable[[], None] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 exchange on a fresh connection: (status, headers, body). Raises OSError,
    WireError. on_sent is called once the request is out (the answer may take long)."""
    head = [f"{method} {path} HTTP/1.1", f"Host: {host}:{port}", "Connection: close"]
    head += [f"{k}: {v}" for k, v in headers.items()]
    data = body or b""
    if body is not None or method in ("POST", "PUT"):
        head.append(f"Content-Length: {len(data)}")
    sock = _socket.socket(_socket.AF_INET, _socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        sock.connect((host, port))
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + data)
        if on_sent is not None:
            on_sent()
        stream = reader(sock)
        status_line = stream.readline(65537).decode("latin-1").split(None, 2)
        if len(status_line) < 2 or not status_line[0].startswith("HTTP/"):
            raise WireError(f"not an HTTP response: {status_line!r}")
        response_headers = read_headers(stream)
        return int(status_line[1]), response_headers, read_body(stream, response_headers, True)
    finally:
        sock.close()


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
        on_sent: Callable[[], None] | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        data = None
        if body is not None:
            import json  # not before the first next (see the imports above)

            data = json.dumps(body).encode()
            headers = {**headers, "Content-Type": "application/json"}
        try:
            return request(
                self._host, self._port, method, PREFIX + path, headers, data, timeout, on_sent
            )
        except (OSError, ValueError, WireError) as exc:
            raise ApiError(path, 0, str(exc)) from exc

    def next(self, on_sent: Callable[[], None] | None = None) -> Event:
        """GET /event/next: blocks until the platform has an event (on_sent: see request)."""
        status, _, payload = self._call(
            "GET", "/event/next", None, {ID_HEADER: self.extension_id}, None, on_sent
        )
        if status != 200:
            raise ApiError("next", status, payload.decode(errors="replace"))
        import json  # by the first event, the entry point has imported it: a lookup

        event: Event = json.loads(payload)
        return event

    def exit_error(self, error_type: str, message: str) -> None:
        """POST /extension/exit/error, best effort: the API may be gone already."""
        body = {"errorMessage": message, "errorType": error_type, "stackTrace": []}
        headers = {ID_HEADER: self.extension_id, ERROR_TYPE_HEADER: error_type}
        try:  # noqa: SIM105 (contextlib is an import this module avoids before the first next)
            self._call("POST", "/exit/error", body, headers, EXIT_ERROR_TIMEOUT_S)
        except ApiError:
            pass


# A next that fails the way a passing fault does (a 5xx answer, a dropped connection) is asked
# again after each of these pauses: giving up would end the process, which the platform takes
# for an Extension.Crash of the function's invocation. A 4xx is the platform's final word.
NEXT_RETRY_DELAYS_S: Final = (0.01, 0.1, 0.5, 1.0, 2.0)


class NextResult:
    """What a next brought: the event, or (event None) why there is none.

    A plain class, not a dataclass: dataclasses costs 10 ms of imports before the first next.
    """

    __slots__ = ("error", "event")

    def __init__(self, event: Event | None, error: ApiError | None) -> None:
        self.event = event
        self.error = error


class NextCaller:
    """Calls next on its own thread when asked, and hands over what comes back.

    The main thread can so keep sampling while a next is pending (the degraded modes need it),
    and the entry point can ask for the first event before it has imported the rest.
    """

    def __init__(self, client: Client, put: Callable[[NextResult], None]) -> None:
        self._client = client
        self._put = put
        # _queue and _thread rather than threading (4 ms of imports before the first next)
        self._wanted: _queue.SimpleQueue[None] = _queue.SimpleQueue()
        self.pending = False  # a next asked for and not answered yet
        self.sent = 0  # nexts on the wire so far
        self._mutex = _thread.allocate_lock()
        self._sent_waiters: list[tuple[int, _thread.LockType]] = []
        self._first_answer = _thread.allocate_lock()
        self._first_answer.acquire()  # released once the first next has been answered
        _thread.start_new_thread(self._run, ())

    def exit_error(self, error_type: str, message: str) -> None:
        self._client.exit_error(error_type, message)

    def request(self) -> None:
        self.pending = True
        self._wanted.put(None)

    def wait_sent(self, count: int, timeout_s: float) -> None:
        """Until count nexts have been on the wire (or timeout_s has passed).

        Init, or an invocation, ends when a next reaches the platform: who would hold the GIL
        meanwhile (imports) waits for it first, or the send waits for them.
        """
        with self._mutex:
            if self.sent >= count:
                return
            lock = _thread.allocate_lock()
            lock.acquire()
            self._sent_waiters.append((count, lock))
        lock.acquire(timeout=timeout_s)

    def wait_first_answer(self) -> None:
        """Until the first next has been answered (Init is over then), or has failed."""
        self._first_answer.acquire()
        self._first_answer.release()

    def _on_sent(self) -> None:
        with self._mutex:
            self.sent += 1
            waiting = self._sent_waiters
            self._sent_waiters = [(n, lock) for n, lock in waiting if n > self.sent]
            for n, lock in waiting:
                if n <= self.sent:
                    lock.release()

    def _run(self) -> None:
        while True:
            self._wanted.get()
            result = self._next()
            self.pending = False
            self._put(result)
            if self._first_answer.locked():
                self._first_answer.release()
            if result.event is None:
                return

    def _next(self) -> NextResult:
        delays = iter(NEXT_RETRY_DELAYS_S)
        while True:
            try:
                return NextResult(self._client.next(self._on_sent), None)
            except ApiError as exc:
                delay = next(delays, None)
                if delay is None or 400 <= exc.status < 500:
                    return NextResult(None, exc)
            time.sleep(delay)
