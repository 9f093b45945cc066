"""The three HTTP APIs of lambda-sandbox, through a real environment: the probe extension
(tests/functions/extensions/probe) and a custom runtime written here (standard library only)
make the calls and log what they got."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from sandbox_run import Run, extension_layer, python_function, run

FAST = 1024
ECHO = """
def handler(event, context):
    for i in range(event.get("lines", 0)):
        print(f"line {i:05d} " + "x" * event.get("width", 0))
    return "ok"
"""

# A `provided` runtime: talks to the Runtime API by hand and logs every reply on stdout.
BOOTSTRAP = """#!/usr/bin/python3 -u
import http.client, json, os
api = os.environ["AWS_LAMBDA_RUNTIME_API"]
def call(method, path, body=b""):
    conn = http.client.HTTPConnection(api)
    conn.request(method, "/2018-06-01/runtime" + path, body=body)
    reply = conn.getresponse()
    data = reply.read()
    conn.close()
    return reply.status, dict(reply.getheaders()), data.decode()
while True:
    status, headers, body = call("GET", "/invocation/next")
    print(json.dumps({"what": "next", "status": status, "headers": headers, "body": body}))
    request_id = headers["Lambda-Runtime-Aws-Request-Id"]
    event = json.loads(body)
    wrong = call("POST", "/invocation/not-the-id/response", b"{}")
    print(json.dumps({"what": "wrong-id", "status": wrong[0], "body": wrong[2]}))
    if event.get("register"):
        conn = http.client.HTTPConnection(api)
        conn.request("POST", "/2020-01-01/extension/register", body=b'{"events": ["INVOKE"]}',
                     headers={"Lambda-Extension-Name": "late"})
        late = conn.getresponse()
        print(json.dumps({"what": "late-register", "status": late.status,
                          "body": late.read().decode()}))
    if event.get("big"):
        big = call("POST", f"/invocation/{request_id}/response", b'"' + b"x" * (7 << 20) + b'"')
        print(json.dumps({"what": "big", "status": big[0], "body": big[2]}))
    elif event.get("fail"):
        failed = call("POST", f"/invocation/{request_id}/error",
                      json.dumps({"errorType": "Custom.Failure", "errorMessage": "asked to"}))
        print(json.dumps({"what": "error", "status": failed[0]}))
    else:
        done = call("POST", f"/invocation/{request_id}/response", json.dumps({"got": event}))
        print(json.dumps({"what": "response", "status": done[0], "body": done[2]}))
"""


def probe_log(r: Run, name: str = "probe") -> list[dict[str, Any]]:
    return r.json_lines(f"extension-{name}.stdout")


def entry(r: Run, what: str, name: str = "probe") -> dict[str, Any]:
    return next(e for e in probe_log(r, name) if e["what"] == what)


def batches(r: Run, name: str = "probe") -> list[list[dict[str, Any]]]:
    return [e["events"] for e in probe_log(r, name) if e["what"] == "batch"]


def custom_runtime(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / "bootstrap").write_text(BOOTSTRAP)
    (folder / "bootstrap").chmod(0o755)
    return folder


# -- Runtime API ---------------------------------------------------------------------------


def test_runtime_api_next_headers_response_and_invalid_request_id(tmp_path: Path) -> None:
    fn = custom_runtime(tmp_path / "custom")
    r = run(fn, "unused", "provided", memory=FAST, invocations=2, event={"k": "v"})
    assert r.returncode == 0, r.explain()
    log = r.json_lines("runtime.stdout")
    nexts = [e for e in log if e["what"] == "next"]
    assert [n["body"] for n in nexts] == ['{"k": "v"}'] * 2
    headers = nexts[0]["headers"]
    assert headers["Lambda-Runtime-Aws-Request-Id"] == r.reports[0].request_id
    assert headers["Lambda-Runtime-Invoked-Function-Arn"] == (
        "arn:aws:lambda:us-east-1:123456789012:function:custom"
    )
    assert int(headers["Lambda-Runtime-Deadline-Ms"]) > 0
    assert headers["Lambda-Runtime-Trace-Id"].startswith("Root=1-")  # see test_sandbox_api_trace
    wrong = next(e for e in log if e["what"] == "wrong-id")
    assert wrong["status"] == 400 and json.loads(wrong["body"])["errorType"] == "InvalidRequestID"
    assert [e["status"] for e in log if e["what"] == "response"] == [202, 202]
    assert [res["payload"] for res in r.results] == [{"got": {"k": "v"}}] * 2


def test_runtime_api_413_over_6_mb_and_posted_errors(tmp_path: Path) -> None:
    fn = custom_runtime(tmp_path / "custom")
    r = run(
        fn, "unused", "provided", memory=FAST, invocations=2, event=[{"big": True}, {"fail": True}]
    )
    assert r.returncode == 0, r.explain()
    big = next(e for e in r.json_lines("runtime.stdout") if e["what"] == "big")
    assert big["status"] == 413
    too_large, failed = r.results
    assert too_large["payload"]["errorType"] == "Function.ResponseSizeTooLarge"
    assert failed["status"] == "error"
    assert failed["payload"] == {"errorType": "Custom.Failure", "errorMessage": "asked to"}
    # A function error is a result: the environment carries on (one Init only).
    assert sum(line.startswith("INIT_START") for line in r.stdout) == 1


# -- Extensions API ------------------------------------------------------------------------


def test_fact3_calls_need_the_id_header_and_account_id_only_on_request(tmp_path: Path) -> None:
    fn = python_function(tmp_path / "echo", ECHO)
    layer = extension_layer(tmp_path / "layer", "asks", "plain")
    r = run(
        fn,
        "app.handler",
        "python3.11",
        layers=[layer],
        memory=FAST,
        env={"PROBE_ASKS_ACCOUNT": "1", "PROBE_TRY": "noid,badid,unknownid,subscribe-noid"},
    )
    assert r.returncode == 0, r.explain()
    assert entry(r, "register", "asks")["body"] == {
        "functionName": "echo",
        "functionVersion": "$LATEST",
        "handler": "app.handler",
        "accountId": "123456789012",
    }
    assert "accountId" not in entry(r, "register", "plain")["body"]
    expected = {
        "try-noid": "Extension.MissingExtensionIdentifier",
        "try-badid": "Extension.InvalidExtensionIdentifier",
        "try-unknownid": "Extension.UnknownExtensionIdentifier",
        "try-subscribe-noid": "Extension.MissingExtensionIdentifier",
    }
    for what, error_type in expected.items():
        status, body = entry(r, what, "plain")["reply"]
        assert (status, body["errorType"]) == (403, error_type), what


def test_fact4_invoke_event_fields_and_no_payload(tmp_path: Path) -> None:
    fn = python_function(tmp_path / "echo", ECHO)
    layer = extension_layer(tmp_path / "layer", "probe")
    r = run(
        fn,
        "app.handler",
        "python3.11",
        layers=[layer],
        memory=FAST,
        timeout=7,
        event={"secret": "payload"},
    )
    assert r.returncode == 0, r.explain()
    invoke = next(
        e for e in probe_log(r) if e["what"] == "event" and e["event"]["eventType"] == "INVOKE"
    )
    event = invoke["event"]
    assert set(event) == {"eventType", "deadlineMs", "requestId", "invokedFunctionArn", "tracing"}
    assert event["requestId"] == r.reports[0].request_id
    assert event["invokedFunctionArn"] == "arn:aws:lambda:us-east-1:123456789012:function:echo"
    # deadlineMs is epoch milliseconds, the invocation's start plus its 7 s timeout.
    assert 6.0 < event["deadlineMs"] / 1000 - invoke["t"] <= 7.0
    assert "payload" not in json.dumps(event)


@pytest.mark.parametrize(
    ("variables", "error_type"),
    [
        ({"PROBE_EVENTS": "INVOKE,RESTORE"}, "Extension.InvalidEventType"),
        ({"PROBE_NAME": " "}, "Extension.InvalidExtensionName"),
    ],
)
def test_registration_errors_as_lambda_names_them(
    tmp_path: Path, variables: dict[str, str], error_type: str
) -> None:
    fn = python_function(tmp_path / "echo", ECHO)
    layer = extension_layer(tmp_path / "layer", "probe")
    r = run(fn, "app.handler", "python3.11", layers=[layer], memory=FAST, env=variables)
    register = entry(r, "register")
    assert (register["status"], register["body"]["errorType"]) == (403, error_type)
    # The refused extension exits during Init, which fails as Lambda's does.
    assert r.returncode == 0 and r.results[0]["payload"]["errorType"] == "Extension.Crash"


# -- Telemetry API -------------------------------------------------------------------------


def test_fact8_subscribe_only_in_init_with_buffering_in_range(tmp_path: Path) -> None:
    fn = python_function(tmp_path / "echo", ECHO)
    layer = extension_layer(tmp_path / "layer", "probe")
    r = run(
        fn,
        "app.handler",
        "python3.11",
        layers=[layer],
        memory=FAST,
        env={"PROBE_SUBSCRIBE": "platform", "PROBE_TRY": "bad-buffering,late-subscribe"},
    )
    assert r.returncode == 0, r.explain()
    bad = [e for e in probe_log(r) if e["what"] == "try-bad-buffering"]
    assert [(e["key"], e["reply"][0], e["reply"][1]["errorType"]) for e in bad] == [
        ("maxItems", 400, "ValidationError"),
        ("maxBytes", 400, "ValidationError"),
        ("timeoutMs", 400, "ValidationError"),
    ]
    assert entry(r, "subscribe")["reply"] == [200, "OK"]
    status, body = entry(r, "try-late-subscribe")["reply"]
    assert (status, body["errorType"]) == (403, "Telemetry.SubscriptionClosed")
    (subscription,) = r.events_of("platform.telemetrySubscription")
    assert subscription["record"] == {"name": "probe", "state": "Subscribed", "types": ["platform"]}


def test_fact8_an_unsupported_telemetry_api_answers_202(tmp_path: Path) -> None:
    # The fault switch makes the sandbox answer as the Runtime Interface Emulator does.
    fn = python_function(tmp_path / "echo", ECHO)
    layer = extension_layer(tmp_path / "layer", "probe")
    r = run(
        fn,
        "app.handler",
        "python3.11",
        layers=[layer],
        memory=FAST,
        env={"PROBE_SUBSCRIBE": "platform"},
        extra_args=["--fault", "telemetry-unsupported"],
    )
    assert r.returncode == 0, r.explain()
    status, body = entry(r, "subscribe")["reply"]
    assert (status, body["errorType"]) == (202, "Telemetry.NotSupported")
    assert batches(r) == [] and r.results[0]["payload"] == "ok"


def test_every_schema_version_is_accepted(tmp_path: Path) -> None:
    fn = python_function(tmp_path / "echo", ECHO)
    layer = extension_layer(tmp_path / "layer", "v1", "v2", "v3", "vbad")
    r = run(
        fn,
        "app.handler",
        "python3.11",
        layers=[layer],
        memory=FAST,
        env={
            "PROBE_SUBSCRIBE": "platform",
            "PROBE_V1_SCHEMA": "2022-07-01",
            "PROBE_V2_SCHEMA": "2022-12-13",
            "PROBE_V3_SCHEMA": "2025-01-29",
            "PROBE_VBAD_SCHEMA": "2020-08-15",
        },
    )
    assert r.returncode == 0, r.explain()
    for name in ("v1", "v2", "v3"):
        assert entry(r, "subscribe", name)["reply"] == [200, "OK"], name
    assert entry(r, "subscribe", "vbad")["reply"][0] == 400


def test_init_events_before_the_subscription_are_replayed(tmp_path: Path) -> None:
    fn = python_function(tmp_path / "echo", 'print("import-time line")\n' + ECHO)
    layer = extension_layer(tmp_path / "layer", "early", "late")
    r = run(
        fn,
        "app.handler",
        "python3.11",
        layers=[layer],
        memory=FAST,
        env={
            "PROBE_SUBSCRIBE": "platform,function",
            "PROBE_LATE_DELAY_MS": "500",
        },
    )
    assert r.returncode == 0, r.explain()
    for name in ("early", "late"):
        delivered = [e for b in batches(r, name) for e in b]
        types = [e["type"] for e in delivered]
        assert types[0] == "platform.initStart", (name, types)
        assert "platform.report" in types
        assert "import-time line" in [e["record"] for e in delivered if e["type"] == "function"]


def test_batches_flush_at_max_items(tmp_path: Path) -> None:
    fn = python_function(tmp_path / "echo", ECHO)
    layer = extension_layer(tmp_path / "layer", "probe")
    # timeoutMs 30 s: only maxItems (and the flush at shutdown) can send a batch in this run.
    r = run(
        fn,
        "app.handler",
        "python3.11",
        layers=[layer],
        memory=FAST,
        event={"lines": 2500},
        env={"PROBE_SUBSCRIBE": "function", "PROBE_BUFFERING": "1000,1048576,30000"},
    )
    assert r.returncode == 0, r.explain()
    sizes = [len(b) for b in batches(r)]
    assert sizes == [1000, 1000, 500], sizes
    lines = [e["record"] for b in batches(r) for e in b]
    assert lines == [f"line {i:05d} " for i in range(2500)]


def test_batches_flush_at_max_bytes(tmp_path: Path) -> None:
    fn = python_function(tmp_path / "echo", ECHO)
    layer = extension_layer(tmp_path / "layer", "probe")
    r = run(
        fn,
        "app.handler",
        "python3.11",
        layers=[layer],
        memory=FAST,
        event={"lines": 1500, "width": 400},
        env={"PROBE_SUBSCRIBE": "function", "PROBE_BUFFERING": "10000,262144,30000"},
    )
    assert r.returncode == 0, r.explain()
    sizes = [e["size"] for e in probe_log(r) if e["what"] == "batch"]
    assert len(sizes) >= 3 and all(size <= 262144 for size in sizes), sizes
    assert sum(len(b) for b in batches(r)) == 1500


def test_batches_wait_for_timeout_ms(tmp_path: Path) -> None:
    fn = python_function(
        tmp_path / "spaced",
        """
import time
def handler(event, context):
    for i in range(3):
        print(f"spaced {i}")
        time.sleep(event["gap_s"])
    return "ok"
""",
    )
    layer = extension_layer(tmp_path / "layer", "probe")

    def batch_count(gap_s: float, timeout_ms: int) -> int:
        r = run(
            fn,
            "app.handler",
            "python3.11",
            layers=[layer],
            memory=FAST,
            event={"gap_s": gap_s},
            env={"PROBE_SUBSCRIBE": "function", "PROBE_BUFFERING": f"1000,262144,{timeout_ms}"},
        )
        assert r.returncode == 0, r.explain()
        return sum(any(str(e["record"]).startswith("spaced") for e in b) for b in batches(r))

    # Lines 100 ms apart within a 2 s window go out together; 400 ms apart with 25 ms, one by one.
    assert batch_count(0.1, 2000) == 1
    assert batch_count(0.4, 25) == 3


def test_failed_deliveries_are_retried(tmp_path: Path) -> None:
    fn = python_function(tmp_path / "echo", ECHO)
    layer = extension_layer(tmp_path / "layer", "probe")
    r = run(
        fn,
        "app.handler",
        "python3.11",
        layers=[layer],
        memory=FAST,
        env={"PROBE_SUBSCRIBE": "platform", "PROBE_LISTENER_FAIL": "2"},
    )
    assert r.returncode == 0, r.explain()
    refused = [e for e in probe_log(r) if e["what"] == "batch-refused"]
    assert len(refused) == 2
    delivered = [e["type"] for b in batches(r) for e in b]
    assert delivered[0] == "platform.initStart" and "platform.report" in delivered


def test_a_batch_refused_on_every_retry_is_dropped_and_said_so(tmp_path: Path) -> None:
    fn = python_function(tmp_path / "echo", ECHO)
    layer = extension_layer(tmp_path / "layer", "probe")
    r = run(
        fn,
        "app.handler",
        "python3.11",
        layers=[layer],
        memory=FAST,
        idle_ms=2000,
        invocations=2,
        env={"PROBE_SUBSCRIBE": "platform", "PROBE_LISTENER_FAIL": "1000"},
    )
    assert r.returncode == 0, r.explain()
    refused = [e for e in probe_log(r) if e["what"] == "batch-refused"]
    assert len(refused) >= 6  # the first POST and its five retries
    dropped = r.events_of("platform.logsDropped")
    assert dropped and dropped[0]["record"]["droppedRecords"] >= 1, r.explain()
    assert batches(r) == []


def test_registration_closes_when_the_runtime_first_calls_next(tmp_path: Path) -> None:
    fn = custom_runtime(tmp_path / "custom")
    r = run(fn, "unused", "provided", memory=FAST, event={"register": True})
    assert r.returncode == 0, r.explain()
    late = next(e for e in r.json_lines("runtime.stdout") if e["what"] == "late-register")
    assert late["status"] == 403
    assert json.loads(late["body"])["errorType"] == "Extension.RegistrationClosed"


def test_at_most_ten_extensions(tmp_path: Path) -> None:
    fn = python_function(tmp_path / "echo", ECHO)
    names = [f"ext{i:02d}" for i in range(11)]
    layer = extension_layer(tmp_path / "layer", *names)
    r = run(fn, "app.handler", "python3.11", layers=[layer], memory=2048)
    registrations = [entry(r, "register", name) for name in names]
    refused = [e for e in registrations if e["status"] != 200]
    assert len(refused) == 1, [e["status"] for e in registrations]
    assert refused[0]["body"]["errorType"] == "Extension.TooManyExtensions"
    # The one refused exits during Init: Init fails as Lambda's does, the run carries on.
    assert r.returncode == 0 and r.results[0]["payload"]["errorType"] == "Extension.Crash"
