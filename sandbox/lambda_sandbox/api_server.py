"""The HTTP server on 127.0.0.1 that carries the Runtime, Extensions and Telemetry APIs.

Each API is a plain object with `handle(request) -> Reply | None`; the server only parses HTTP and
routes. Handlers may block (long polls), so every connection gets its own thread.
"""

from __future__ import annotations

import json
import socket
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    headers: Mapping[str, str]  # keys lower-cased
    body: bytes

    def header(self, name: str) -> str:
        return self.headers.get(name.lower(), "")


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)


def json_reply(status: int, value: Any, headers: Mapping[str, str] | None = None) -> Reply:
    return Reply(status, json.dumps(value).encode(), headers or {})


def error_reply(status: int, error_type: str, message: str) -> Reply:
    return json_reply(status, {"errorType": error_type, "errorMessage": message})


# A handler returning this gets no answer: the server closes the connection (a fault switch).
CLOSE_CONNECTION = Reply(0)

Handler = Callable[[Request], "Reply | None"]


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A process killed in the middle of a long poll leaves a closed socket; that is normal.
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)


class ApiServer:
    """One server per execution environment, on a free loopback port."""

    def __init__(self, handlers: Sequence[Handler]) -> None:
        routes = tuple(handlers)

        class _Conn(BaseHTTPRequestHandler):
            # Runtime clients (awslambdaric's C client, Node's http) keep connections alive.
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                # Small request/reply pairs: without this, Nagle and delayed ACKs add ~40 ms.
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = {k.lower(): v for k, v in self.headers.items()}
                request = Request(self.command, self.path.split("?", 1)[0], headers, body)
                reply = None
                for route in routes:
                    reply = route(request)
                    if reply is not None:
                        break
                if reply is None:
                    reply = error_reply(404, "NotFound", f"{self.command} {self.path}")
                if reply is CLOSE_CONNECTION:
                    self.close_connection = True
                    return
                head = [f"HTTP/1.1 {reply.status} {HTTPStatus(reply.status).phrase}"]
                head += [f"{key}: {value}" for key, value in reply.headers.items()]
                head += ["Content-Type: application/json", f"Content-Length: {len(reply.body)}"]
                # One write for head and body: a second small write would wait for an ACK.
                self.wfile.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + reply.body)

            do_GET = do_POST = do_PUT = do_DELETE = _serve

            def log_message(self, format: str, *args: Any) -> None:
                return  # the environment's output is CloudWatch-like; access logs do not belong

        self._server = _Server(("127.0.0.1", 0), _Conn)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self._server.server_address[1]}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
