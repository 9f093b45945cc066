"""The monitor's wire (Extensions and Telemetry APIs) and its entry point against a stub platform.

The sandbox cannot lose a runtimeDone on purpose; this stub can: it serves register, the
subscription and next from a script, and posts telemetry to the monitor's listener itself. The
monitor runs as `python -m tmp_monitor` in a private mount namespace with its own /tmp.
"""

from __future__ import annotations

import json
import os
import queue
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

import emf_check
from tmp_monitor import extensions_api, telemetry

ROOT = Path(__file__).resolve().parent.parent


# ---- the listener ------------------------------------------------------------------------------


def _raw(address: tuple[str, int], data: bytes) -> bytes:
    with socket.create_connection(address, timeout=5) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := sock.recv(4096):
            chunks.append(chunk)
    return b"".join(chunks)


@pytest.fixture
def listener() -> Iterator[tuple[telemetry.Listener, queue.SimpleQueue[Any]]]:
    q: queue.SimpleQueue[Any] = queue.SimpleQueue()
    found = telemetry.start_listener(q.put)
    assert found is not None
    yield found, q
    found.close()


def _post(body: bytes, extra: str = "") -> bytes:
    head = f"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{extra}"
    if "chunked" not in extra:
        head += f"Content-Length: {len(body)}\r\n"
    return head.encode() + b"\r\n" + body


def test_listener_queues_each_record_and_answers_200(listener: Any) -> None:
    server, q = listener
    batch = [
        {"time": "t", "type": "platform.start", "record": {"requestId": "r1"}},
        {"time": "t", "type": "platform.runtimeDone", "record": {"requestId": "r1"}},
    ]
    reply = _raw(server.address, _post(json.dumps(batch).encode()))
    assert reply.startswith(b"HTTP/1.1 200 ")
    assert [q.get(timeout=1)["type"] for _ in range(2)] == [
        "platform.start",
        "platform.runtimeDone",
    ]


def test_listener_answers_200_to_what_it_cannot_read(listener: Any) -> None:
    server, q = listener
    for junk in (b"not http at all\r\n\r\n", _post(b"{not json"), _post(b'"a string"'), b""):
        assert _raw(server.address, junk).startswith(b"HTTP/1.1 200 ")
    assert server.bad_batches >= 2
    assert q.empty()


def test_listener_reads_chunked_batches(listener: Any) -> None:
    server, q = listener
    body = json.dumps([{"time": "t", "type": "platform.report", "record": {}}]).encode()
    chunked = f"{len(body[:10]):x}\r\n".encode() + body[:10] + b"\r\n"
    chunked += f"{len(body[10:]):x}\r\n".encode() + body[10:] + b"\r\n0\r\n\r\n"
    reply = _raw(server.address, _post(chunked, "Transfer-Encoding: chunked\r\n"))
    assert reply.startswith(b"HTTP/1.1 200 ")
    assert q.get(timeout=1)["type"] == "platform.report"


def test_listener_is_reachable_by_its_uri(listener: Any) -> None:
    server, q = listener
    host, port = server.address
    assert server.uri == f"http://{host}:{port}"
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/",
        data=json.dumps([{"time": "t", "type": "platform.start", "record": {}}]).encode(),
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.status == 200
    assert q.get(timeout=1)["type"] == "platform.start"


def test_parse_report() -> None:
    facts = telemetry.parse_report(
        {
            "requestId": "r1",
            "status": "success",
            "metrics": {
                "durationMs": 12.5,
                "billedDurationMs": 13,
                "memorySizeMB": 128,
                "maxMemoryUsedMB": 70,
                "initDurationMs": 140.2,
            },
            "spans": [{"name": "extensionOverhead", "start": "t", "durationMs": 26.4}],
        }
    )
    assert facts is not None
    assert (facts.max_memory_used_mb, facts.init_duration_ms) == (70, 140.2)
    assert facts.extension_overhead_ms == 26.4
    assert telemetry.parse_report({"requestId": "r1"}) is None
    assert telemetry.parse_report("junk") is None


# ---- a stub platform ---------------------------------------------------------------------------


@dataclass
class Stub:
    subscribe_status: int = 200
    events: list[dict[str, Any]] = field(default_factory=list)  # answers to next, in order
    telemetry_after_invoke: list[str] = field(default_factory=list)  # record types to post
    registered: list[str] = field(default_factory=list)
    next_times: list[float] = field(default_factory=list)
    uri: str = ""
    server: ThreadingHTTPServer | None = None

    def post(self, kind: str, request_id: str) -> None:
        time.sleep(0.05)
        record: dict[str, Any] = {"requestId": request_id, "status": "success"}
        body = json.dumps([{"time": "t", "type": kind, "record": record}]).encode()
        port = int(self.uri.rsplit(":", 1)[1])
        req = urllib.request.Request(f"http://127.0.0.1:{port}/", data=body, method="POST")
        with urllib.request.urlopen(req, timeout=5) as response:
            assert response.status == 200


def serve(stub: Stub) -> tuple[str, ThreadingHTTPServer]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _reply(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length) or b"{}")
            stub.registered = body.get("events", [])
            self._reply(
                200,
                {"functionName": "stub-fn", "functionVersion": "3", "handler": "h"},
                {"Lambda-Extension-Identifier": "ext-1"},
            )

        def do_PUT(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length))
            stub.uri = body["destination"]["URI"]
            if stub.subscribe_status == 200:
                self._reply(200, "OK")
            else:
                self._reply(202, {"errorType": "Telemetry.NotSupported", "errorMessage": "no"})

        def do_GET(self) -> None:
            stub.next_times.append(time.monotonic())
            event = stub.events.pop(0)
            self._reply(200, event)
            if event["eventType"] == "INVOKE":
                for kind in stub.telemetry_after_invoke:
                    threading.Thread(target=stub.post, args=(kind, event["requestId"])).start()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"127.0.0.1:{server.server_address[1]}", server


def run_monitor(stub: Stub, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    api, server = serve(stub)
    script = (
        "mount -t tmpfs -o size=16m tmpfs /tmp && head -c 1048576 /dev/zero > /tmp/kept.bin && "
        f"exec {sys.executable} -m tmp_monitor"
    )
    full_env = {
        "PATH": os.environ["PATH"],
        "PYTHONPATH": str(ROOT / "extension"),
        "AWS_LAMBDA_RUNTIME_API": api,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "1769",
        **env,
    }
    try:
        return subprocess.run(
            ["unshare", "-m", "sh", "-c", script],
            env=full_env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        server.shutdown()
        server.server_close()


def deadline_in(seconds: float) -> int:
    return int((time.time() + seconds) * 1000)


def test_lost_runtime_done_closes_the_invocation_well_before_its_deadline() -> None:
    deadline = deadline_in(20)
    stub = Stub(
        events=[
            {
                "eventType": "INVOKE",
                "requestId": "r1",
                "deadlineMs": deadline,
                "invokedFunctionArn": "arn",
            },
            {"eventType": "SHUTDOWN", "shutdownReason": "SPINDOWN", "deadlineMs": deadline_in(22)},
        ],
        telemetry_after_invoke=["platform.start"],  # telemetry alive, runtimeDone never comes
    )
    done = run_monitor(stub, {"TMP_MONITOR_PURGE": "always"})
    assert done.returncode == 0, done.stderr
    assert stub.registered == ["INVOKE", "SHUTDOWN"]
    invocation, summary = emf_check.parse_documents(done.stdout)
    assert invocation["document"] == "invocation"
    assert invocation["fallback"] == "runtimeDoneMissing"
    # Closed without purge: the file is still there, nothing purged.
    assert invocation["TmpFiles"] == 1
    assert emf_check.value(invocation, "PurgedBytes") == 0
    assert invocation["FunctionName"] == "stub-fn"
    assert summary["runtimeDoneMissing"] == 1
    assert emf_check.value(summary, "ReportsMissing") == 1
    assert summary["shutdownReason"] == "spindown"
    # The second next came long before the invocation's deadline (20 s away).
    assert len(stub.next_times) == 2
    assert time.time() * 1000 < deadline
    assert done.stderr.count("no platform.runtimeDone") == 1


def test_runtime_done_closes_and_purges() -> None:
    stub = Stub(
        events=[
            {
                "eventType": "INVOKE",
                "requestId": "r1",
                "deadlineMs": deadline_in(20),
                "invokedFunctionArn": "arn",
            },
            {"eventType": "SHUTDOWN", "shutdownReason": "spindown", "deadlineMs": deadline_in(22)},
        ],
        telemetry_after_invoke=["platform.start", "platform.runtimeDone"],
    )
    done = run_monitor(stub, {"TMP_MONITOR_PURGE": "always"})
    assert done.returncode == 0, done.stderr
    invocation, summary = emf_check.parse_documents(done.stdout)
    assert "fallback" not in invocation
    assert invocation["status"] == "success"
    assert emf_check.value(invocation, "TmpUsedBytes") >= 2**20
    assert emf_check.value(invocation, "PurgedBytes") >= 2**20
    assert summary["runtimeDoneMissing"] == 0


def test_subscription_refused_degrades_and_powertools_variables_are_dropped() -> None:
    stub = Stub(
        subscribe_status=202,
        events=[
            {
                "eventType": "INVOKE",
                "requestId": "r1",
                "deadlineMs": deadline_in(20),
                "invokedFunctionArn": "arn",
            },
            {
                "eventType": "INVOKE",
                "requestId": "r2",
                "deadlineMs": deadline_in(20),
                "invokedFunctionArn": "arn",
            },
            {"eventType": "SHUTDOWN", "shutdownReason": "spindown", "deadlineMs": deadline_in(22)},
        ],
    )
    env = {
        "POWERTOOLS_DEBUG": "true",  # would make Powertools log to stdout
        "POWERTOOLS_METRICS_DISABLED": "true",
        "POWERTOOLS_SERVICE_NAME": "orders",
    }
    done = run_monitor(stub, env)
    assert done.returncode == 0, done.stderr
    docs = emf_check.parse_documents(done.stdout)  # nothing but EMF on stdout
    assert [d["document"] for d in docs] == ["invocation", "invocation", "summary"]
    assert [d.get("fallback") for d in docs[:2]] == ["telemetryUnavailable"] * 2
    assert all("service" not in d for d in docs)
    assert done.stderr.count("Telemetry API is not available") == 1


def test_disabled_registers_for_shutdown_only() -> None:
    stub = Stub(
        events=[{"eventType": "SHUTDOWN", "shutdownReason": "spindown", "deadlineMs": 0}],
    )
    done = run_monitor(stub, {"TMP_MONITOR_DISABLED": "true"})
    assert done.returncode == 0, done.stderr
    assert stub.registered == ["SHUTDOWN"]
    assert done.stdout == ""


def test_multi_concurrency_samples_the_environment_and_never_purges() -> None:
    stub = Stub(
        events=[{"eventType": "SHUTDOWN", "shutdownReason": "spindown", "deadlineMs": 0}],
    )
    done = run_monitor(stub, {"AWS_LAMBDA_MAX_CONCURRENCY": "8", "TMP_MONITOR_PURGE": "always"})
    assert done.returncode == 0, done.stderr
    assert stub.registered == ["SHUTDOWN"]
    docs = emf_check.parse_documents(done.stdout)
    assert [d["document"] for d in docs] == ["environment", "summary"]
    assert all("PurgedBytes" not in d for d in docs)
    assert done.stderr.count("multi-concurrency") == 1


# ---- the Extensions API client -----------------------------------------------------------------


def test_client_reads_chunked_and_refusals() -> None:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            if self.headers.get("Lambda-Extension-Identifier") != "good":
                data = b'{"errorType":"Extension.InvalidExtensionIdentifier"}'
                self.send_response(403)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                return
            body = json.dumps(
                {"eventType": "SHUTDOWN", "shutdownReason": "spindown", "deadlineMs": 1}
            ).encode()
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for part in (body[:7], body[7:]):
                self.wfile.write(f"{len(part):x}\r\n".encode() + part + b"\r\n")
            self.wfile.write(b"0\r\n\r\n")

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        client = extensions_api.Client(f"127.0.0.1:{server.server_address[1]}")
        client.extension_id = "good"
        assert client.next()["eventType"] == "SHUTDOWN"
        client.extension_id = "bad"
        with pytest.raises(extensions_api.ApiError) as info:
            client.next()
        assert info.value.status == 403
    finally:
        server.shutdown()
        server.server_close()
    from tmp_monitor import register

    with pytest.raises(register.RegisterError):  # the server is gone: refused, not a hang
        register.register(f"127.0.0.1:{server.server_address[1]}", ["INVOKE"])
    with pytest.raises(extensions_api.ApiError):
        extensions_api.Client(f"127.0.0.1:{server.server_address[1]}").next()


def test_next_gone_for_good_is_said_through_exit_error_before_the_exit() -> None:
    """issue 9: when the API the monitor needs is gone for good (a 4xx on next), it exits
    through /extension/exit/error, not silently (which the platform takes for a crash)."""
    import io

    from tmp_monitor import emf
    from tmp_monitor.monitor import Monitor
    from tmp_monitor.runner import Runner
    from tmp_monitor.sampler import Sampler

    posted: list[tuple[str, str | None, dict[str, Any]]] = []

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            self.send_response(403)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            kind = self.headers.get("Lambda-Extension-Function-Error-Type")
            posted.append((self.path, kind, body))
            self.send_response(202)
            self.send_header("Content-Length", "0")
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        client = extensions_api.Client(f"127.0.0.1:{server.server_address[1]}")
        client.extension_id = "ext-1"
        items: queue.SimpleQueue[Any] = queue.SimpleQueue()
        caller = extensions_api.NextCaller(client, items.put)
        caller.request()
        context = emf.Context("TmpMonitor", (("FunctionName",),), "f", "1", "0", False, False, "x")
        status = Runner(
            next_caller=caller,
            items=items,
            monitor=Monitor(start_wall_ms=int(time.time() * 1000)),
            sampler=Sampler(tmp_root="/nonexistent-tmp-monitor-test"),
            sink=emf.EmfSink(context, io.StringIO()),
            purger=None,
            period_s=0.05,
            telemetry_ok=True,
        ).run()
    finally:
        server.shutdown()
        server.server_close()
    assert status == 1
    assert [(path, kind) for path, kind, _ in posted] == [
        ("/2020-01-01/extension/exit/error", "Extension.ApiUnavailable")
    ]
    assert posted[0][2]["errorType"] == "Extension.ApiUnavailable"


# ---- the early registration ------------------------------------------------------------------


def test_early_registration_names_match_the_public_names() -> None:
    from tmp_monitor import names, register

    assert register.EXTENSION_NAME == names.EXTENSION_NAME
    assert register.ENV_DISABLED == names.ENV_DISABLED


def test_early_registration_reads_plain_and_chunked_answers() -> None:
    from tmp_monitor import register

    plain = b"HTTP/1.1 200 OK\r\nLambda-Extension-Identifier: id-1\r\nContent-Length: 2\r\n\r\n{}"
    assert register._parse(plain) == ("id-1", b"{}")
    chunked = (
        b"HTTP/1.1 200 OK\r\nlambda-extension-identifier: id-2\r\n"
        b'Transfer-Encoding: chunked\r\n\r\n3\r\n{"a\r\n4\r\n":1}\r\n0\r\n\r\n'
    )
    assert register._parse(chunked) == ("id-2", b'{"a":1}')
    with pytest.raises(register.RegisterError):
        register._parse(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
    with pytest.raises(register.RegisterError):
        register._parse(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")  # no identifier


def test_early_registration_imports_nothing_heavy() -> None:
    code = (
        "import sys; before = set(sys.modules); import tmp_monitor.__main__; "
        "print(sorted(set(sys.modules) - before))"
    )
    out = subprocess.run(
        [
            sys.executable,
            "-I",
            "-S",
            "-c",
            f"import sys; sys.path.insert(0, {str(ROOT / 'extension')!r}); {code}",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    loaded = set(json.loads(out.replace("'", '"')))
    heavy = {"socket", "json", "typing", "re", "enum", "logging", "dataclasses", "threading"}
    assert not loaded & heavy, sorted(loaded)
    assert {m for m in loaded if m.startswith("tmp_monitor")} == {
        "tmp_monitor",
        "tmp_monitor.__main__",
        "tmp_monitor.register",
    }


# ---- errors are contained: a reader that fails costs figures, never a hang ---------------------


def test_failing_readers_are_counted_and_next_still_comes(tmp_path: Path) -> None:
    import io

    from tmp_monitor import emf, purge
    from tmp_monitor.config import Config
    from tmp_monitor.monitor import Monitor
    from tmp_monitor.runner import Runner
    from tmp_monitor.sampler import Sampler

    class BrokenSampler(Sampler):
        def tick(self, mono_s: float, with_cpu: bool = False, new_census: bool = False) -> Any:
            raise OSError("injected: /proc unreadable")

        def end_of_runtime(self, top_n: int = 0) -> Any:
            raise OSError("injected: /tmp unreadable")

    stub = Stub(
        events=[
            {
                "eventType": "INVOKE",
                "requestId": "r1",
                "deadlineMs": deadline_in(20),
                "invokedFunctionArn": "arn",
            },
            {"eventType": "SHUTDOWN", "shutdownReason": "spindown", "deadlineMs": deadline_in(22)},
        ],
        telemetry_after_invoke=["platform.start", "platform.runtimeDone"],
    )
    api, server = serve(stub)
    try:
        client = extensions_api.Client(api)
        client.extension_id = "ext-1"
        items: queue.SimpleQueue[Any] = queue.SimpleQueue()
        listener = telemetry.start_listener(items.put)
        assert listener is not None
        assert telemetry.subscribe(api, "ext-1", listener.uri).ok
        out = io.StringIO()
        context = emf.Context("TmpMonitor", (("FunctionName",),), "f", "1", "0", False, False, "x")
        caller = extensions_api.NextCaller(client, items.put)
        caller.request()
        status = Runner(
            next_caller=caller,
            items=items,
            monitor=Monitor(start_wall_ms=int(time.time() * 1000)),
            sampler=BrokenSampler(tmp_root=str(tmp_path)),
            sink=emf.EmfSink(context, out),
            purger=purge.make_purger(Config(), root=str(tmp_path)),
            period_s=0.01,
            telemetry_ok=True,
        ).run()
        listener.close()
    finally:
        server.shutdown()
        server.server_close()
    assert status == 0
    assert len(stub.next_times) == 2  # the invocation was released
    invocation, summary = emf_check.parse_documents(out.getvalue())
    assert invocation["document"] == "invocation"
    assert invocation["errors"] >= 2  # the tick and the end-of-runtime measure
    assert summary["errors"] >= invocation["errors"]


def test_next_is_asked_again_after_a_500_and_a_dropped_connection() -> None:
    answers = ["500", "drop", "event"]

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            what = answers.pop(0)
            if what == "drop":
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            status = 500 if what == "500" else 200
            body = b'{"eventType":"SHUTDOWN","shutdownReason":"spindown","deadlineMs":1}'
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        client = extensions_api.Client(f"127.0.0.1:{server.server_address[1]}")
        client.extension_id = "x"
        got: queue.SimpleQueue[Any] = queue.SimpleQueue()
        caller = extensions_api.NextCaller(client, got.put)
        caller.request()
        result = got.get(timeout=10)
    finally:
        server.shutdown()
        server.server_close()
    assert result.error is None
    assert result.event["eventType"] == "SHUTDOWN"
    assert answers == []
