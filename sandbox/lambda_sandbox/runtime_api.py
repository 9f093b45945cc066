"""Runtime API 2018-06-01: what the runtime client sees (next, response, error, init/error).

The object holds the runtime's side of one environment; the lifecycle hands it invocations and
waits on the shared condition for what the runtime posts.
"""

from __future__ import annotations

import json
import re
import threading
import time
from dataclasses import dataclass

from lambda_sandbox.api_server import Reply, Request, error_reply, json_reply

PREFIX = "/2018-06-01/runtime"
MAX_RESPONSE_BYTES = 6 * 1024 * 1024
_INVOCATION = re.compile(rf"^{PREFIX}/invocation/([^/]+)/(response|error)$")


@dataclass(frozen=True)
class Invocation:
    request_id: str
    payload: bytes
    deadline_ms: int
    function_arn: str
    trace_id: str = ""


@dataclass(frozen=True)
class Outcome:
    """What the runtime posted: a response, or an error (errorType and the raw error body)."""

    request_id: str
    ok: bool
    body: bytes
    error_type: str
    at: float  # time.monotonic() when it arrived


def error_type_of(body: bytes, header: str) -> str:
    """The error type a runtime reported, from its header or, failing that, its JSON body."""
    if header:
        return header
    try:
        value = json.loads(body)
    except ValueError:
        return "Runtime.Unknown"
    if isinstance(value, dict) and isinstance(value.get("errorType"), str):
        return str(value["errorType"])
    return "Runtime.Unknown"


class RuntimeApi:
    def __init__(self, cond: threading.Condition) -> None:
        self._cond = cond
        self.next_calls = 0
        self.waiting = False  # the runtime is blocked in /next
        self.last_next_at: float | None = None
        self.pending: Invocation | None = None
        self.current: Invocation | None = None
        self.outcome: Outcome | None = None
        self.init_error: Outcome | None = None
        self.closed = False

    def deliver(self, invocation: Invocation) -> None:
        with self._cond:
            self.pending = invocation
            self.outcome = None
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self.closed = True
            self._cond.notify_all()

    def handle(self, request: Request) -> Reply | None:
        if not request.path.startswith(PREFIX + "/"):
            return None
        if request.method == "GET" and request.path == f"{PREFIX}/invocation/next":
            return self._next()
        if request.method == "POST" and request.path == f"{PREFIX}/init/error":
            return self._init_error(request)
        match = _INVOCATION.match(request.path)
        if request.method == "POST" and match:
            return self._post(request, match.group(1), match.group(2) == "response")
        return error_reply(404, "InvalidRequest", f"{request.method} {request.path}")

    def _next(self) -> Reply:
        with self._cond:
            self.next_calls += 1
            self.waiting = True
            self.last_next_at = time.monotonic()
            self._cond.notify_all()
            self._cond.wait_for(lambda: self.pending is not None or self.closed)
            self.waiting = False
            invocation = self.pending
            if invocation is None:
                return error_reply(500, "Runtime.EnvironmentShutdown", "environment shutting down")
            self.pending = None
            self.current = invocation
            self._cond.notify_all()
        headers = {
            "Lambda-Runtime-Aws-Request-Id": invocation.request_id,
            "Lambda-Runtime-Deadline-Ms": str(invocation.deadline_ms),
            "Lambda-Runtime-Invoked-Function-Arn": invocation.function_arn,
        }
        if invocation.trace_id:
            headers["Lambda-Runtime-Trace-Id"] = invocation.trace_id
        return Reply(200, invocation.payload, headers)

    def _post(self, request: Request, request_id: str, is_response: bool) -> Reply:
        with self._cond:
            current = self.current
            if current is None or current.request_id != request_id or self.outcome is not None:
                return error_reply(400, "InvalidRequestID", "Invalid request ID")
            if is_response and len(request.body) > MAX_RESPONSE_BYTES:
                # Lambda fails the invocation and tells the runtime why.
                self.outcome = Outcome(
                    request_id,
                    False,
                    json.dumps(
                        {
                            "errorType": "Function.ResponseSizeTooLarge",
                            "errorMessage": "Response payload size exceeded maximum allowed "
                            f"payload size ({MAX_RESPONSE_BYTES} bytes).",
                        }
                    ).encode(),
                    "Function.ResponseSizeTooLarge",
                    time.monotonic(),
                )
                self._cond.notify_all()
                return error_reply(
                    413,
                    "RequestEntityTooLarge",
                    f"Exceeded maximum allowed payload size ({MAX_RESPONSE_BYTES} bytes).",
                )
            error_type = (
                ""
                if is_response
                else error_type_of(
                    request.body, request.header("Lambda-Runtime-Function-Error-Type")
                )
            )
            self.outcome = Outcome(
                request_id, is_response, request.body, error_type, time.monotonic()
            )
            self._cond.notify_all()
        return json_reply(202, {"status": "OK"})

    def _init_error(self, request: Request) -> Reply:
        with self._cond:
            error_type = error_type_of(
                request.body, request.header("Lambda-Runtime-Function-Error-Type")
            )
            self.init_error = Outcome("", False, request.body, error_type, time.monotonic())
            self._cond.notify_all()
        return json_reply(202, {"status": "OK"})
