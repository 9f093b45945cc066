"""The lifecycle of lambda-sandbox against Lambda's (reference lambda-platform.md, section 9).

Every test runs the real sandbox (cgroups, namespaces, awslambdaric) with the probe extension
(tests/functions/extensions/probe, standard library only), and reads what a user would read:
stdout, RESULT lines, --telemetry-out and the captured output of each process.
"""

from __future__ import annotations

import json
from pathlib import Path

from sandbox_run import extension_layer, leftovers, python_function, run

ECHO = """
import json, time
print("init at", time.time())
def handler(event, context):
    print(json.dumps({"invoked": time.time(), "requestId": context.aws_request_id}))
    return {"echo": event}
"""


def test_invocations_with_an_extension_report_like_lambda(tmp_path: Path) -> None:
    fn = python_function(tmp_path / "echo", ECHO)
    layer = extension_layer(tmp_path / "layer", "probe")
    r = run(fn, "app.handler", "python3.11", layers=[layer], invocations=3, event={"n": 1})
    assert r.returncode == 0, r.explain()
    assert [res["payload"] for res in r.results] == [{"echo": {"n": 1}}] * 3, r.explain()
    assert len(r.reports) == 3, r.explain()
    assert r.reports[0].init_duration_ms is not None and r.reports[0].init_duration_ms > 0
    assert all(rep.init_duration_ms is None for rep in r.reports[1:])
    # Max Memory Used is the environment's cgroup high-water mark: the runtime (a Python
    # interpreter with awslambdaric) and the extension (another) take well over 5 MB.
    assert all(rep.max_memory_used_mb >= 5 for rep in r.reports), r.explain()
    assert all(rep.memory_mb == 128 for rep in r.reports)
    events = [
        e["event"]["eventType"]
        for e in r.json_lines("extension-probe.stdout")
        if e["what"] == "event"
    ]
    assert events == ["INVOKE", "INVOKE", "INVOKE", "SHUTDOWN"]


FAST = 1024  # MB: a larger CPU share (as on Lambda), so Init takes less of the test's time


def probe_log(r: object, name: str = "probe") -> list[dict[str, object]]:
    return r.json_lines(f"extension-{name}.stdout")  # type: ignore[attr-defined, no-any-return]


def epoch(iso: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def test_fact1_invoke_waits_for_extension_next_but_the_response_does_not(tmp_path: Path) -> None:
    fn = python_function(tmp_path / "echo", ECHO)
    layer = extension_layer(tmp_path / "layer", "probe")
    r = run(
        fn,
        "app.handler",
        "python3.11",
        layers=[layer],
        invocations=2,
        memory=FAST,
        env={"PROBE_SLEEP_MS": "400"},
    )
    assert r.returncode == 0, r.explain()
    log = probe_log(r)
    invokes = [e for e in log if e["what"] == "event" and e["event"]["eventType"] == "INVOKE"]
    nexts = [e["t"] for e in log if e["what"] == "next"]
    # The probe's next after INVOKE 1 (it sleeps 400 ms first).
    next_after_1 = min(t for t in nexts if t > invokes[0]["t"])
    # The caller had its response while the extension was still busy...
    assert epoch(r.results[0]["time"]) < next_after_1
    # ...but the report came only after the extension's next, and so did invocation 2.
    report_1 = r.events_of("platform.report")[0]
    assert epoch(report_1["time"]) >= next_after_1 - 0.001
    calls = [line for line in r.output("runtime.stdout").splitlines() if line.startswith("{")]
    second_call = json.loads(calls[1])["invoked"]
    assert second_call >= next_after_1
    assert r.reports[0].duration_ms >= 400


def test_fact2_runtime_starts_after_every_extension_registered(tmp_path: Path) -> None:
    fn = python_function(tmp_path / "echo", ECHO)
    layer = extension_layer(tmp_path / "layer", "a-slow", "b-fast")
    r = run(
        fn,
        "app.handler",
        "python3.11",
        layers=[layer],
        memory=FAST,
        env={"PROBE_A_SLOW_DELAY_MS": "700"},
    )
    assert r.returncode == 0, r.explain()
    registered = [
        e["t"]
        for name in ("a-slow", "b-fast")
        for e in probe_log(r, name)
        if e["what"] == "register"
    ]
    init_line = next(
        line for line in r.output("runtime.stdout").splitlines() if line.startswith("init at")
    )
    runtime_started = float(init_line.split()[-1])
    assert len(registered) == 2 and runtime_started > max(registered), r.explain()
    # Init ends (initReport) only when both extensions and the runtime called next.
    first_nexts = [
        next(e["t"] for e in probe_log(r, name) if e["what"] == "next")
        for name in ("a-slow", "b-fast")
    ]
    init_report = r.events_of("platform.initReport")[0]
    assert epoch(init_report["time"]) >= max(first_nexts) - 0.001
    assert [line.split("\t")[1] for line in r.stdout if line.startswith("EXTENSION")] == [
        "Name: a-slow",
        "Name: b-fast",
    ]


def test_fact2_a_file_registering_under_another_name_hangs_init(tmp_path: Path) -> None:
    # The name trap: "other" matches no file, so it is an internal extension, and the file
    # "trap" never registers: the runtime never starts and Init times out after 10 s.
    fn = python_function(tmp_path / "echo", ECHO)
    layer = extension_layer(tmp_path / "layer", "trap")
    r = run(
        fn,
        "app.handler",
        "python3.11",
        layers=[layer],
        memory=FAST,
        env={"PROBE_NAME": "other", "PROBE_EVENTS": "INVOKE"},
    )
    assert r.returncode == 0, r.explain()
    register = next(e for e in probe_log(r, "trap") if e["what"] == "register")
    assert register["status"] == 200  # registered, as an internal extension
    assert "init at" not in r.output("runtime.stdout")
    assert r.results[0]["payload"]["errorType"] == "Sandbox.Timedout", r.explain()
    assert any(
        line.startswith("INIT_REPORT Init Duration") and "Status: timeout" in line
        for line in r.stdout
    ), r.explain()


def test_fact2_internal_extensions_may_not_register_for_shutdown(tmp_path: Path) -> None:
    fn = python_function(tmp_path / "echo", ECHO)
    layer = extension_layer(tmp_path / "layer", "trap")
    r = run(
        fn,
        "app.handler",
        "python3.11",
        layers=[layer],
        memory=FAST,
        env={"PROBE_NAME": "other"},
        timeout=1,
    )
    register = next(e for e in probe_log(r, "trap") if e["what"] == "register")
    assert register["status"] == 403
    assert register["body"]["errorType"] == "Extension.InvalidEventType"


def test_fact5_shutdown_lowercase_reason_deadline_and_sigkill(tmp_path: Path) -> None:
    fn = python_function(tmp_path / "echo", ECHO)
    layer = extension_layer(tmp_path / "layer", "polite", "stubborn")
    r = run(
        fn,
        "app.handler",
        "python3.11",
        layers=[layer],
        memory=FAST,
        env={"PROBE_STUBBORN_SHUTDOWN_MS": "5000"},
    )
    assert r.returncode == 0, r.explain()
    for name in ("polite", "stubborn"):
        shutdown = next(
            e
            for e in probe_log(r, name)
            if e["what"] == "event" and e["event"]["eventType"] == "SHUTDOWN"
        )
        assert shutdown["event"]["shutdownReason"] == "spindown"
        assert 0 < shutdown["event"]["deadlineMs"] / 1000 - shutdown["t"] <= 2.0
    assert probe_log(r, "polite")[-1]["what"] == "exit"
    # The stubborn one was still sleeping at the deadline: SIGKILLed, it never got to exit.
    assert all(e["what"] != "exit" for e in probe_log(r, "stubborn")), r.explain()
    assert leftovers(r.pid) == []


def test_fact6_extension_exiting_outside_shutdown_is_a_crash(tmp_path: Path) -> None:
    fn = python_function(tmp_path / "echo", ECHO)
    layer = extension_layer(tmp_path / "layer", "probe")
    r = run(
        fn,
        "app.handler",
        "python3.11",
        layers=[layer],
        memory=FAST,
        invocations=2,
        env={"PROBE_EXIT_ON": "1"},
    )  # exits with status 0 on its first INVOKE
    assert r.returncode == 0, r.explain()
    first, second = r.reports
    assert (first.status, first.error_type) == ("error", "Extension.Crash"), r.explain()
    assert "Extension.Crash" in r.stdout
    # The environment was reset: the second invocation had an Init of its own.
    assert second.init_duration_ms is not None
    assert sum(line.startswith("INIT_START") for line in r.stdout) == 2


def test_fact6_nothing_succeeds_after_init_error(tmp_path: Path) -> None:
    fn = python_function(tmp_path / "echo", ECHO)
    layer = extension_layer(tmp_path / "layer", "probe")
    r = run(
        fn,
        "app.handler",
        "python3.11",
        layers=[layer],
        memory=FAST,
        env={"PROBE_TRY": "init-error"},
    )
    assert r.returncode == 0, r.explain()
    log = {e["what"]: e for e in probe_log(r)}
    assert log["try-init-error"]["reply"][0] == 202
    assert log["after-init-error"]["reply"][0] == 403
    assert r.results[0]["payload"]["errorType"] == "Extension.InitError", r.explain()
    assert r.reports[0].error_type == "Extension.InitError"


def test_fact6_error_calls_need_the_error_type_header(tmp_path: Path) -> None:
    fn = python_function(tmp_path / "echo", ECHO)
    layer = extension_layer(tmp_path / "layer", "probe")
    r = run(
        fn,
        "app.handler",
        "python3.11",
        layers=[layer],
        memory=FAST,
        env={"PROBE_TRY": "init-error-noheader"},
    )
    reply = next(e for e in probe_log(r) if e["what"] == "try-init-error")["reply"]
    assert reply == [
        403,
        {
            "errorType": "Extension.MissingHeader",
            "errorMessage": "Missing Lambda-Extension-Function-Error-Type header",
        },
    ]


def test_fact7_post_response_extension_time_is_billed(tmp_path: Path) -> None:
    fn = python_function(tmp_path / "echo", ECHO)
    layer = extension_layer(tmp_path / "layer", "probe")
    r = run(
        fn, "app.handler", "python3.11", layers=[layer], memory=FAST, env={"PROBE_SLEEP_MS": "600"}
    )
    assert r.returncode == 0, r.explain()
    (rep,) = r.reports
    assert rep.duration_ms >= 600 and rep.billed_ms >= 600, r.explain()
    (report,) = r.events_of("platform.report")
    spans = {s["name"]: s["durationMs"] for s in report["record"]["spans"]}
    assert spans["extensionOverhead"] >= 500
    (runtime_done,) = r.events_of("platform.runtimeDone")
    assert runtime_done["record"]["metrics"]["durationMs"] < 500  # the runtime itself was quick


def test_fact7_extension_time_counts_in_the_timeout(tmp_path: Path) -> None:
    fn = python_function(tmp_path / "echo", ECHO)
    layer = extension_layer(tmp_path / "layer", "probe")
    r = run(
        fn,
        "app.handler",
        "python3.11",
        layers=[layer],
        memory=FAST,
        timeout=1,
        invocations=2,
        env={"PROBE_SLEEP_MS": "1500"},
    )
    assert r.returncode == 0, r.explain()
    first, second = r.reports
    assert first.status == "timeout", r.explain()
    assert r.results[0]["status"] == "success"  # the caller had the runtime's response
    assert any(line.endswith("Task timed out after 1.00 seconds") for line in r.stdout)
    # A timeout resets the environment: SHUTDOWN says why, and the next one is a cold start.
    reasons = [
        e["event"]["shutdownReason"]
        for e in probe_log(r)
        if e["what"] == "event" and e["event"]["eventType"] == "SHUTDOWN"
    ]
    assert reasons == ["timeout", "timeout"], reasons  # the second one times out as well
    assert second.init_duration_ms is not None


def test_function_timeout_resets_the_environment(tmp_path: Path) -> None:
    fn = python_function(
        tmp_path / "slow",
        """
import time
def handler(event, context):
    time.sleep(event["sleep"])
    return "done"
""",
    )
    layer = extension_layer(tmp_path / "layer", "probe")
    r = run(
        fn,
        "app.handler",
        "python3.11",
        layers=[layer],
        memory=FAST,
        timeout=1,
        invocations=2,
        event=[{"sleep": 5}, {"sleep": 0}],
    )
    assert r.returncode == 0, r.explain()
    assert r.results[0]["status"] == "timeout"
    assert r.results[0]["payload"]["errorType"] == "Sandbox.Timedout"
    assert r.results[1]["payload"] == "done"
    assert r.reports[0].status == "timeout" and r.reports[1].init_duration_ms is not None
    reasons = [
        e["event"]["shutdownReason"]
        for e in probe_log(r)
        if e["what"] == "event" and e["event"]["eventType"] == "SHUTDOWN"
    ]
    assert reasons == ["timeout", "spindown"]
    (runtime_done, _) = r.events_of("platform.runtimeDone")
    assert runtime_done["record"]["status"] == "timeout"


def test_fact9_runtime_done_before_next_report_after_it(tmp_path: Path) -> None:
    fn = python_function(tmp_path / "echo", ECHO)
    layer = extension_layer(tmp_path / "layer", "probe")
    r = run(
        fn,
        "app.handler",
        "python3.11",
        layers=[layer],
        memory=FAST,
        invocations=3,
        idle_ms=50,
        env={"PROBE_SUBSCRIBE": "platform", "PROBE_WAIT_DONE": "1"},
    )
    assert r.returncode == 0, r.explain()
    log = probe_log(r)
    seen = [e for e in log if e["what"] == "runtime-done-seen"]
    assert [e["seen"] for e in seen] == [True] * 3, r.explain()
    request_ids = [rep.request_id for rep in r.reports]
    assert [e["requestId"] for e in seen] == request_ids
    nexts = [e["t"] for e in log if e["what"] == "next"]
    for e in seen:
        next_after = min(t for t in nexts if t > e["t"])
        report_arrivals = [
            b["t"]
            for b in log
            if b["what"] == "batch"
            for ev in b["events"]
            if ev["type"] == "platform.report" and ev["record"]["requestId"] == e["requestId"]
        ]
        # Each report arrives once, after the probe's next for that invocation.
        assert len(report_arrivals) == 1 and report_arrivals[0] > next_after, r.explain()


def test_fact10_max_memory_used_includes_extensions(tmp_path: Path) -> None:
    fn = python_function(tmp_path / "echo", ECHO)
    layer = extension_layer(tmp_path / "layer", "probe")
    plain = run(fn, "app.handler", "python3.11", layers=[layer], memory=FAST)
    heavy = run(
        fn, "app.handler", "python3.11", layers=[layer], memory=FAST, env={"PROBE_ALLOC_MB": "60"}
    )
    assert plain.returncode == heavy.returncode == 0, heavy.explain()
    gained = heavy.reports[0].max_memory_used_mb - plain.reports[0].max_memory_used_mb
    assert 55 <= gained <= 75, (plain.reports, heavy.reports)


def test_fact10_max_memory_used_never_falls(tmp_path: Path) -> None:
    fn = python_function(
        tmp_path / "alloc",
        """
def handler(event, context):
    block = b"\\1" * (event["mb"] << 20)
    del block
    return "ok"
""",
    )
    r = run(
        fn,
        "app.handler",
        "python3.11",
        memory=FAST,
        invocations=3,
        event=[{"mb": 0}, {"mb": 50}, {"mb": 0}],
    )
    assert r.returncode == 0, r.explain()
    used = [rep.max_memory_used_mb for rep in r.reports]
    assert used[1] >= used[0] + 45 and used[2] >= used[1], used


def test_fact10_extensions_get_lambdas_narrower_environment(tmp_path: Path) -> None:
    fn = python_function(
        tmp_path / "env",
        """
import os
def handler(event, context):
    return dict(os.environ)
""",
    )
    layer = extension_layer(tmp_path / "layer", "probe")
    r = run(
        fn, "app.handler", "python3.11", layers=[layer], memory=FAST, env={"CUSTOMER_SETTING": "x"}
    )
    assert r.returncode == 0, r.explain()
    function_env = r.results[0]["payload"]
    extension_env = next(e for e in probe_log(r) if e["what"] == "register")["env"]
    hidden = [
        "_HANDLER",
        "LAMBDA_TASK_ROOT",
        "LAMBDA_RUNTIME_DIR",
        "AWS_EXECUTION_ENV",
        "AWS_LAMBDA_LOG_GROUP_NAME",
        "AWS_LAMBDA_LOG_STREAM_NAME",
    ]
    for key in hidden:
        assert key in function_env, key
        assert key not in extension_env, key
    assert not [k for k in extension_env if k.startswith("_")]
    for key in (
        "AWS_LAMBDA_RUNTIME_API",
        "AWS_REGION",
        "AWS_LAMBDA_FUNCTION_NAME",
        "AWS_LAMBDA_FUNCTION_VERSION",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
        "AWS_ACCESS_KEY_ID",
        "CUSTOMER_SETTING",
    ):
        assert extension_env[key] == function_env[key], key
    assert function_env["AWS_LAMBDA_FUNCTION_NAME"] == "env"  # the folder's name
    assert function_env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == str(FAST)


def test_out_of_memory_is_killed_reported_and_starts_afresh(tmp_path: Path) -> None:
    fn = python_function(
        tmp_path / "hog",
        """
def handler(event, context):
    blocks = [b"\\1" * (8 << 20) for _ in range(event["mb"] // 8)]
    return len(blocks)
""",
    )
    r = run(
        fn, "app.handler", "python3.11", memory=128, invocations=2, event=[{"mb": 400}, {"mb": 8}]
    )
    assert r.returncode == 0, r.explain()
    killed, fresh = r.results
    assert killed["payload"]["errorType"] == "Runtime.ExitError", r.explain()
    assert killed["payload"]["errorMessage"].endswith(
        "Error: Runtime exited with error: signal: killed"
    )
    assert fresh["payload"] == 1
    first, second = r.reports
    assert (first.status, first.error_type) == ("error", "Runtime.OutOfMemory")
    assert first.max_memory_used_mb >= 120  # it reached the limit
    assert second.init_duration_ms is not None  # a new environment, with an Init of its own
    assert sum(line.startswith("INIT_START") for line in r.stdout) == 2


def test_the_environment_is_frozen_between_invocations(tmp_path: Path) -> None:
    fn = python_function(tmp_path / "echo", ECHO)
    layer = extension_layer(tmp_path / "layer", "probe")
    r = run(
        fn,
        "app.handler",
        "python3.11",
        layers=[layer],
        memory=FAST,
        invocations=2,
        idle_ms=800,
        env={"PROBE_TICK_MS": "10", "PROBE_SUBSCRIBE": "platform"},
    )
    assert r.returncode == 0, r.explain()
    log = probe_log(r)
    # A thread of the extension ticking every 10 ms stood still for the idle time...
    ticks = next(e for e in log if e["what"] == "ticks")
    assert ticks["longest_gap"] >= 0.7, ticks
    # ...and report 1, emitted just before the freeze, reached it only after the thaw.
    report_1 = r.events_of("platform.report")[0]
    arrival = next(
        b["t"] for b in log if b["what"] == "batch" for e in b["events"] if e == report_1
    )
    assert arrival - epoch(report_1["time"]) >= 0.7


def test_runtime_crash_is_an_exit_error_and_resets(tmp_path: Path) -> None:
    fn = python_function(
        tmp_path / "crash",
        """
import os
def handler(event, context):
    if event["crash"]:
        os._exit(3)
    return "fine"
""",
    )
    layer = extension_layer(tmp_path / "layer", "probe")
    r = run(
        fn,
        "app.handler",
        "python3.11",
        layers=[layer],
        memory=FAST,
        invocations=2,
        event=[{"crash": True}, {"crash": False}],
    )
    assert r.returncode == 0, r.explain()
    crashed, fine = r.results
    assert crashed["payload"] == {
        "errorType": "Runtime.ExitError",
        "errorMessage": f"RequestId: {crashed['requestId']} Error: Runtime exited with error: "
        "exit status 3",
    }
    assert fine["payload"] == "fine" and r.reports[1].init_duration_ms is not None
    reasons = [
        e["event"]["shutdownReason"]
        for e in probe_log(r)
        if e["what"] == "event" and e["event"]["eventType"] == "SHUTDOWN"
    ]
    assert reasons == ["failure", "spindown"]
