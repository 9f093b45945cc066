"""Wire client of the Lambda Extensions API (register, next, init/exit error).

Plain HTTP on loopback with the standard library: no TLS, no third-party client (SPEC 3).
next is a long poll and has no timeout: the platform answers when there is an event, and
freezes the whole environment in between.
"""

from __future__ import annotations

import http.client
import json
from typing import Any, Final, NotRequired, TypedDict

PREFIX: Final = "/2020-01-01/extension"
ID_HEADER: Final = "Lambda-Extension-Identifier"
NAME_HEADER: Final = "Lambda-Extension-Name"
ERROR_TYPE_HEADER: Final = "Lambda-Extension-Function-Error-Type"
CONNECT_TIMEOUT_S: Final = 5.0  # register and the error calls; next waits without limit


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
        conn = http.client.HTTPConnection(self._host, self._port, timeout=timeout)
        try:
            data = json.dumps(body).encode() if body is not None else None
            if data is not None:
                headers = {**headers, "Content-Type": "application/json"}
            conn.request(method, PREFIX + path, body=data, headers=headers)
            response = conn.getresponse()
            payload = response.read()
            return response.status, {k.lower(): v for k, v in response.getheaders()}, payload
        except (OSError, http.client.HTTPException) as exc:
            raise ApiError(path, 0, str(exc)) from exc
        finally:
            conn.close()

    def register(self, name: str, events: list[str]) -> RegisterResponse:
        """POST /register under name (the file name in /opt/extensions); keeps the id."""
        status, headers, payload = self._call(
            "POST", "/register", {"events": events}, {NAME_HEADER: name}, CONNECT_TIMEOUT_S
        )
        if status != 200:
            raise ApiError("register", status, payload.decode(errors="replace"))
        self.extension_id = headers.get(ID_HEADER.lower(), "")
        if not self.extension_id:
            raise ApiError("register", status, f"no {ID_HEADER} header")
        parsed: RegisterResponse = json.loads(payload or b"{}")
        return parsed

    def next(self) -> Event:
        """GET /event/next: blocks until the platform has an event."""
        status, _, payload = self._call(
            "GET", "/event/next", None, {ID_HEADER: self.extension_id}, None
        )
        if status != 200:
            raise ApiError("next", status, payload.decode(errors="replace"))
        event: Event = json.loads(payload)
        return event

    def init_error(self, error_type: str, message: str) -> None:
        self._error("/init/error", error_type, message)

    def exit_error(self, error_type: str, message: str) -> None:
        self._error("/exit/error", error_type, message)

    def _error(self, path: str, error_type: str, message: str) -> None:
        body = {"errorMessage": message, "errorType": error_type, "stackTrace": []}
        headers = {ID_HEADER: self.extension_id, ERROR_TYPE_HEADER: error_type}
        self._call("POST", path, body, headers, CONNECT_TIMEOUT_S)
