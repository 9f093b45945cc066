"""Telemetry API 2022-07-01: subscriptions, and delivery of batches to each subscriber's listener.

Every subscriber has its own buffer and delivery thread. A batch goes out when the buffer holds
`maxItems` events or `maxBytes` bytes, or `timeoutMs` after its first event, as a JSON array
POSTed to the listener; a failed POST is retried with backoff. Events of the Init phase that came
before a subscription are replayed to it. While the environment is frozen nothing is sent.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import requests

from lambda_sandbox.api_server import Reply, Request, error_reply, json_reply
from lambda_sandbox.extensions_api import Extension

PATH = "/2022-07-01/telemetry"
SCHEMA_VERSIONS = ("2022-07-01", "2022-12-13", "2025-01-29")
TYPES = ("platform", "function", "extension")
MAX_ITEMS = (1000, 10000)
MAX_BYTES = (262144, 1048576)
TIMEOUT_MS = (25, 30000)
DEFAULT_BUFFERING = {"maxItems": 1000, "maxBytes": 262144, "timeoutMs": 1000}
RETRY_DELAYS_S = (0.05, 0.1, 0.2, 0.4, 0.8)
POST_TIMEOUT_S = 5.0

Event = dict[str, Any]


def category(event_type: str) -> str:
    """The subscription type an event belongs to: `platform.report` is `platform`."""
    return event_type.split(".", 1)[0]


@dataclass(frozen=True)
class Subscription:
    extension: str
    types: tuple[str, ...]
    max_items: int
    max_bytes: int
    timeout_ms: int
    uri: str
    schema_version: str


def parse_subscription(extension: str, body: bytes) -> Subscription | str:
    """The subscription a PUT body asks for, or what is wrong with it."""
    try:
        value = json.loads(body)
    except ValueError as exc:
        return f"body is not JSON: {exc}"
    if not isinstance(value, dict):
        return "body must be a JSON object"
    schema = value.get("schemaVersion")
    if schema not in SCHEMA_VERSIONS:
        return f"schemaVersion must be one of {', '.join(SCHEMA_VERSIONS)}"
    types = value.get("types")
    if not isinstance(types, list) or not types or any(t not in TYPES for t in types):
        return f"types must be a non-empty list of {', '.join(TYPES)}"
    buffering = value.get("buffering") or {}
    if not isinstance(buffering, dict):
        return "buffering must be an object"
    limits = {"maxItems": MAX_ITEMS, "maxBytes": MAX_BYTES, "timeoutMs": TIMEOUT_MS}
    chosen: dict[str, int] = {}
    for key, (low, high) in limits.items():
        raw = buffering.get(key, DEFAULT_BUFFERING[key])
        if not isinstance(raw, int) or isinstance(raw, bool) or not low <= raw <= high:
            return f"buffering.{key} must be an integer from {low} to {high}"
        chosen[key] = raw
    destination = value.get("destination")
    if not isinstance(destination, dict):
        return "destination must be an object"
    if destination.get("protocol") != "HTTP":
        return "destination.protocol must be HTTP (lambda-sandbox does not deliver over TCP)"
    uri = destination.get("URI")
    if not isinstance(uri, str) or urlsplit(uri).scheme != "http" or not urlsplit(uri).hostname:
        return "destination.URI must be an http:// URI"
    return Subscription(
        extension,
        tuple(dict.fromkeys(types)),
        chosen["maxItems"],
        chosen["maxBytes"],
        chosen["timeoutMs"],
        uri,
        str(schema),
    )


def delivery_url(uri: str) -> str:
    """Where we POST: `sandbox.localdomain` is the environment's name for loopback."""
    parts = urlsplit(uri)
    if parts.hostname == "sandbox.localdomain":
        netloc = "127.0.0.1" + (f":{parts.port}" if parts.port else "")
        return urlunsplit(parts._replace(netloc=netloc))
    return uri


class _Subscriber:
    def __init__(self, subscription: Subscription) -> None:
        self.subscription = subscription
        self.url = delivery_url(subscription.uri)
        self.buffer: deque[bytes] = deque()
        self.buffered_bytes = 0
        self.first_at = 0.0
        self.thread: threading.Thread | None = None


class TelemetryApi:
    def __init__(
        self,
        identify: Callable[[Request], Extension | Reply],
        on_subscribed: Callable[[Subscription], None],
        on_dropped: Callable[[str, int, int], None],
        unsupported: bool = False,
        late: bool = False,
    ) -> None:
        self._identify = identify
        self._on_subscribed = on_subscribed
        self._on_dropped = on_dropped  # (subscriber, records, bytes) given up after retries
        self._unsupported = unsupported  # fault switch: answer like the Runtime Interface Emulator
        self._late = late  # fault switch: nothing goes out while an invocation runs
        self._in_invocation = False
        self._cond = threading.Condition()
        self._subscribers: dict[str, _Subscriber] = {}
        self._history: list[tuple[str, bytes]] | None = []  # Init's events, for late subscribers
        self._held = False
        self._flushing = False
        self._closing = False
        self._inflight = 0

    # The platform side.

    def publish(self, event: Event, skip: str = "") -> None:
        """Queue an event for every subscriber of its type (but `skip`)."""
        data = json.dumps(event).encode()
        kind = category(str(event["type"]))
        with self._cond:
            if self._history is not None:
                self._history.append((kind, data))
            for name, sub in self._subscribers.items():
                if kind in sub.subscription.types and name != skip:
                    self._append(sub, data)
            self._cond.notify_all()

    def invocation_started(self) -> None:
        with self._cond:
            self._in_invocation = self._late

    def invocation_ended(self, timeout_s: float) -> None:
        """With the fault telemetry-late, what the invocation produced goes out now, after it."""
        if self._late:
            with self._cond:
                self._in_invocation = False
            self.flush(timeout_s)

    def close_subscriptions(self) -> None:
        """The end of Init: later PUTs get 403, and nothing more needs replaying."""
        with self._cond:
            self._history = None

    def hold(self, timeout_s: float = 2.0) -> None:
        """Stop sending (the environment is about to freeze); wait for POSTs in flight."""
        with self._cond:
            self._held = True
            self._cond.wait_for(lambda: self._inflight == 0, timeout_s)

    def release(self) -> None:
        with self._cond:
            self._held = False
            self._cond.notify_all()

    def flush(self, timeout_s: float) -> bool:
        """Send everything buffered now; True when all of it went out in time."""
        with self._cond:
            self._flushing = True
            self._cond.notify_all()
            done = self._cond.wait_for(self._drained, timeout_s)
            self._flushing = False
            return done

    def close(self, timeout_s: float = 1.0) -> None:
        with self._cond:
            self._closing = True
            self._held = False
            self._cond.notify_all()
            threads = [s.thread for s in self._subscribers.values() if s.thread]
        deadline = time.monotonic() + timeout_s
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    # The HTTP side.

    def handle(self, request: Request) -> Reply | None:
        if request.path != PATH:
            return None
        if request.method != "PUT":
            return error_reply(405, "InvalidRequest", f"{request.method} {request.path}")
        found = self._identify(request)
        if isinstance(found, Reply):
            return found
        if self._unsupported:
            return error_reply(202, "Telemetry.NotSupported", "Telemetry API is not supported")
        parsed = parse_subscription(found.name, request.body)
        if isinstance(parsed, str):
            return error_reply(400, "ValidationError", parsed)
        with self._cond:
            if self._history is None or self._closing:
                return error_reply(
                    403, "Telemetry.SubscriptionClosed", "Telemetry API subscription is closed"
                )
            sub = _Subscriber(parsed)
            old = self._subscribers.get(found.name)
            if old is not None:
                sub.buffer, sub.buffered_bytes, sub.first_at = (
                    old.buffer,
                    old.buffered_bytes,
                    old.first_at,
                )
            else:
                for kind, data in self._history:
                    if kind in parsed.types:
                        self._append(sub, data)
            self._subscribers[found.name] = sub
            if old is None:
                sub.thread = threading.Thread(
                    target=self._deliver_loop, args=(found.name,), daemon=True
                )
                sub.thread.start()
            else:
                sub.thread = old.thread
            self._cond.notify_all()
        self._on_subscribed(parsed)
        return json_reply(200, "OK")

    # Delivery.

    def _append(self, sub: _Subscriber, data: bytes) -> None:
        if not sub.buffer:
            sub.first_at = time.monotonic()
        sub.buffer.append(data)
        sub.buffered_bytes += len(data)

    def _drained(self) -> bool:
        return self._inflight == 0 and all(not s.buffer for s in self._subscribers.values())

    def _due(self, sub: _Subscriber) -> float:
        """Seconds until this subscriber's buffer must go out (0: now)."""
        s = sub.subscription
        if self._flushing or self._closing:
            return 0.0
        if len(sub.buffer) >= s.max_items or sub.buffered_bytes >= s.max_bytes:
            return 0.0
        return max(0.0, sub.first_at + s.timeout_ms / 1000 - time.monotonic())

    def _take(self, sub: _Subscriber) -> list[bytes]:
        """The next batch: at most maxItems events, and at most maxBytes of JSON array (more only
        when one event alone is larger)."""
        batch: list[bytes] = []
        size = 2  # the brackets; each event after the first adds a comma
        s = sub.subscription
        while sub.buffer and len(batch) < s.max_items:
            grown = size + len(sub.buffer[0]) + (1 if batch else 0)
            if batch and grown > s.max_bytes:
                break
            data = sub.buffer.popleft()
            batch.append(data)
            sub.buffered_bytes -= len(data)
            size = grown
        if sub.buffer:
            sub.first_at = time.monotonic()
        return batch

    def _deliver_loop(self, name: str) -> None:
        session = requests.Session()
        try:
            while True:
                with self._cond:
                    while True:
                        sub = self._subscribers[name]
                        if self._closing and not sub.buffer:
                            return
                        if sub.buffer and not self._held and not self._in_invocation:
                            wait = self._due(sub)
                            if wait <= 0:
                                break
                            self._cond.wait(wait)
                        else:
                            self._cond.wait()
                    batch = self._take(sub)
                    self._inflight += 1
                sent = False
                try:
                    sent = self._post(session, sub, batch)
                finally:
                    with self._cond:
                        self._inflight -= 1
                        self._cond.notify_all()
                if not sent:
                    self._on_dropped(name, len(batch), sum(len(d) for d in batch))
        finally:
            session.close()

    def _post(self, session: requests.Session, sub: _Subscriber, batch: list[bytes]) -> bool:
        body = b"[" + b",".join(batch) + b"]"
        for delay in (*RETRY_DELAYS_S, None):
            try:
                reply = session.post(
                    sub.url,
                    data=body,
                    headers={"Content-Type": "application/json"},
                    timeout=POST_TIMEOUT_S,
                )
                if reply.status_code < 300:
                    return True
            except requests.RequestException:
                pass
            if delay is None or self._closing:
                return False
            time.sleep(delay)
        return False
