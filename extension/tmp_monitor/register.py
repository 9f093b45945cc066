"""Registration with the Extensions API, done before anything else is imported.

Lambda starts the function's runtime only once every extension has registered, so whatever
the monitor does before its register call is added to the user's cold start (SPEC 8: 30 ms).
This module therefore needs nothing but the interpreter's built-in _socket and os: no `socket`
(enum), no `json` (re), no `typing`. It costs the 7 ms of a bare interpreter start plus one
request; every other import happens while the runtime starts beside us.
"""

from __future__ import annotations

import _socket
import os

# Must equal names.EXTENSION_NAME and names.ENV_DISABLED (tests/test_monitor_wire.py checks):
# names imports typing, which this module avoids.
EXTENSION_NAME = "tmp-monitor"
ENV_DISABLED = "TMP_MONITOR_DISABLED"
_TRUE = ("true", "1", "yes")  # config.load's spelling of true
TIMEOUT_S = 5.0


class RegisterError(Exception):
    pass


def disabled() -> bool:
    """TMP_MONITOR_DISABLED as config.load reads it (it decides what we register for)."""
    return (os.environ.get(ENV_DISABLED) or "").strip().lower() in _TRUE


def register(api: str, events: list[str]) -> tuple[str, bytes]:
    """POST /register: (the Lambda-Extension-Identifier, the JSON body). Raises RegisterError."""
    host, _, port = api.rpartition(":")
    body = ('{"events":[' + ",".join(f'"{e}"' for e in events) + "]}").encode()
    head = (
        "POST /2020-01-01/extension/register HTTP/1.1\r\n"
        f"Host: {api}\r\nConnection: close\r\nContent-Type: application/json\r\n"
        f"Lambda-Extension-Name: {EXTENSION_NAME}\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    try:
        sock = _socket.socket(_socket.AF_INET, _socket.SOCK_STREAM)
        try:
            sock.settimeout(TIMEOUT_S)
            sock.connect((host or "127.0.0.1", int(port or 9001)))
            sock.sendall(head.encode() + body)
            chunks: list[bytes] = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        finally:
            sock.close()
    except (OSError, ValueError) as exc:
        raise RegisterError(f"register: {exc}") from exc
    return _parse(b"".join(chunks))


def _parse(response: bytes) -> tuple[str, bytes]:
    head, sep, body = response.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = lines[0].split()
    if not sep or len(status) < 2 or status[1] != "200":
        raise RegisterError(f"register: {lines[0][:200] or 'no answer'}: {body[:200]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    identifier = headers.get("lambda-extension-identifier", "")
    if not identifier:
        raise RegisterError("register: no Lambda-Extension-Identifier header")
    if "chunked" in headers.get("transfer-encoding", "").lower():
        body = _unchunk(body)
    elif "content-length" in headers:
        body = body[: int(headers["content-length"])]
    return identifier, body


def _unchunk(data: bytes) -> bytes:
    out: list[bytes] = []
    while data:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0] or b"0", 16)
        if size == 0:
            break
        out.append(data[:size])
        data = data[size + 2 :]
    return b"".join(out)
