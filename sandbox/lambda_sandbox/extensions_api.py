"""Extensions API 2020-01-01: register, event/next, init/error, exit/error.

Error types and the external/internal split follow Lambda's own init (RAPID): a registration
whose name matches a file in /opt/extensions is that file's; any other name is an internal
extension, which may not ask for SHUTDOWN.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from lambda_sandbox.api_server import CLOSE_CONNECTION, Reply, Request, error_reply, json_reply

PREFIX = "/2020-01-01/extension"
MAX_EXTENSIONS = 10
EVENTS = ("INVOKE", "SHUTDOWN")
ID_HEADER = "Lambda-Extension-Identifier"


@dataclass(frozen=True)
class FunctionInfo:
    function_name: str
    function_version: str
    handler: str
    account_id: str


@dataclass
class Extension:
    id: str
    name: str
    events: tuple[str, ...]
    external: bool
    queue: deque[dict[str, Any]] = field(default_factory=deque)
    waiting: bool = False  # blocked in /event/next
    error_type: str = ""  # set by init/error or exit/error; every later call fails
    error_call: str = ""
    next_calls: int = 0

    @property
    def idle(self) -> bool:
        """Called next and has nothing left to take: done with the current phase."""
        return self.waiting and not self.queue


class ExtensionsApi:
    def __init__(
        self,
        cond: threading.Condition,
        files: Iterable[str],
        info: FunctionInfo,
        next_fault: str = "",
    ) -> None:
        self._cond = cond
        # Fault switch: each extension's first next, when its event is due, is answered 500
        # (extensions-api-500-once) or its connection closed (extensions-api-close-once)
        # instead; the event stays queued for the next call.
        self._next_fault = next_fault
        self.files = tuple(files)
        self._info = info
        self.by_id: dict[str, Extension] = {}
        self.registration_open = True
        self.closed = False

    # What the lifecycle asks.

    def registered(self, name: str) -> Extension | None:
        for ext in self.by_id.values():
            if ext.name == name:
                return ext
        return None

    def all(self) -> list[Extension]:
        return list(self.by_id.values())

    def subscribed(self, event: str) -> list[Extension]:
        return [e for e in self.by_id.values() if event in e.events]

    def deliver(self, event: str, body: dict[str, Any]) -> None:
        with self._cond:
            for ext in self.subscribed(event):
                ext.queue.append(body)
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self.closed = True
            self._cond.notify_all()

    def identify(self, request: Request) -> Extension | Reply:
        """The registered extension a request's id header names, or the 403 Lambda gives."""
        raw = request.header(ID_HEADER)
        if not raw:
            return error_reply(
                403, "Extension.MissingExtensionIdentifier", f"Missing {ID_HEADER} header"
            )
        try:
            uuid.UUID(raw)
        except ValueError:
            return error_reply(403, "Extension.InvalidExtensionIdentifier", f"Invalid {ID_HEADER}")
        ext = self.by_id.get(raw)
        if ext is None:
            return error_reply(403, "Extension.UnknownExtensionIdentifier", "Unknown extension")
        return ext

    # The HTTP side.

    def handle(self, request: Request) -> Reply | None:
        if not request.path.startswith(PREFIX + "/"):
            return None
        call = request.path[len(PREFIX) :]
        if request.method == "POST" and call == "/register":
            return self._register(request)
        if request.method == "GET" and call == "/event/next":
            return self._next(request)
        if request.method == "POST" and call in ("/init/error", "/exit/error"):
            return self._error(request, call.strip("/"))
        return error_reply(404, "InvalidRequest", f"{request.method} {request.path}")

    def _register(self, request: Request) -> Reply:
        name = request.header("Lambda-Extension-Name")
        if not name:
            return error_reply(403, "Extension.InvalidExtensionName", "Empty extension name")
        try:
            body = json.loads(request.body or b"{}")
            events = body.get("events") or []
            if not isinstance(events, list) or not all(isinstance(e, str) for e in events):
                raise ValueError("events must be a list of strings")
        except (ValueError, AttributeError) as exc:
            return error_reply(403, "InvalidRequestFormat", str(exc))
        external = name in self.files
        for event in events:
            if event not in EVENTS or (event == "SHUTDOWN" and not external):
                return error_reply(
                    403,
                    "Extension.InvalidEventType",
                    f"{event}: "
                    + ("not allowed for internal extensions" if event in EVENTS else "unknown"),
                )
        with self._cond:
            if not self.registration_open:
                return error_reply(
                    403, "Extension.RegistrationClosed", "Extension registration closed already"
                )
            if self.registered(name) is not None:
                return error_reply(
                    403,
                    "Extension.InvalidExtensionState",
                    "Extension with this name already registered",
                )
            if len(self.by_id) >= MAX_EXTENSIONS:
                return error_reply(
                    403,
                    "Extension.TooManyExtensions",
                    f"Extension limit ({MAX_EXTENSIONS}) reached",
                )
            ext = Extension(str(uuid.uuid4()), name, tuple(dict.fromkeys(events)), external)
            self.by_id[ext.id] = ext
            self._cond.notify_all()
        reply: dict[str, str] = {
            "functionName": self._info.function_name,
            "functionVersion": self._info.function_version,
            "handler": self._info.handler,
        }
        features = {f.strip() for f in request.header("Lambda-Extension-Accept-Feature").split(",")}
        if "accountId" in features:
            reply["accountId"] = self._info.account_id
        return json_reply(200, reply, {ID_HEADER: ext.id})

    def _next(self, request: Request) -> Reply:
        found = self.identify(request)
        if isinstance(found, Reply):
            return found
        ext = found
        with self._cond:
            if ext.error_type:
                return _after_error(ext)
            ext.next_calls += 1
            ext.waiting = True
            self._cond.notify_all()
            self._cond.wait_for(lambda: bool(ext.queue) or self.closed)
            if not ext.queue:
                ext.waiting = False
                return error_reply(500, "Extension.EnvironmentShutdown", "environment shut down")
            if self._next_fault and ext.next_calls == 1:
                ext.waiting = False
                self._cond.notify_all()
                if self._next_fault == "extensions-api-close-once":
                    return CLOSE_CONNECTION
                return error_reply(500, "ServiceException", "internal error")
            event = ext.queue.popleft()
            ext.waiting = False
            self._cond.notify_all()
        return json_reply(200, event, {"Lambda-Extension-Event-Identifier": str(uuid.uuid4())})

    def _error(self, request: Request, call: str) -> Reply:
        found = self.identify(request)
        if isinstance(found, Reply):
            return found
        ext = found
        error_type = request.header("Lambda-Extension-Function-Error-Type")
        if not error_type:
            return error_reply(
                403,
                "Extension.MissingHeader",
                "Missing Lambda-Extension-Function-Error-Type header",
            )
        with self._cond:
            if ext.error_type:
                return _after_error(ext)
            ext.error_type = error_type
            ext.error_call = call
            self._cond.notify_all()
        return json_reply(202, {"status": "OK"})


def _after_error(ext: Extension) -> Reply:
    return error_reply(
        403,
        "Extension.InvalidExtensionState",
        f"extension {ext.name} reported {ext.error_call} ({ext.error_type}); no further calls",
    )
