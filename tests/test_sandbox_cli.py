"""`lambda-sandbox run` as a user meets it: arguments, exit status, output, Ctrl-C, cleanup."""

from __future__ import annotations

import json
import re
import signal
import subprocess
from pathlib import Path

import pytest

from sandbox_run import LAMBDA_SANDBOX, extension_layer, leftovers, python_function, run

FAST = 1024
HELLO = """
print("loading")
def handler(event, context):
    print("handling", event["n"])
    return {"n": event["n"]}
"""
UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


def sandbox(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LAMBDA_SANDBOX), *args], capture_output=True, text=True, timeout=120, check=False
    )


def test_stdout_is_what_cloudwatch_logs_shows(tmp_path: Path) -> None:
    fn = python_function(tmp_path / "hello", HELLO)
    layer = extension_layer(tmp_path / "layer", "probe")
    r = run(
        fn,
        "app.handler",
        "python3.11",
        layers=[layer],
        memory=FAST,
        invocations=2,
        event=[{"n": 1}, {"n": 2}],
    )
    assert r.returncode == 0, r.explain()
    platform = [line for line in r.stdout if not line.startswith("{")]  # the probe logs JSON
    assert re.fullmatch(
        r"INIT_START Runtime Version: \S+\tRuntime Version ARN: \S+", platform[0]
    ), platform
    assert platform[1] == "loading"
    assert platform[2] == "EXTENSION\tName: probe\tState: Ready\tEvents: [INVOKE, SHUTDOWN]"
    first, second = r.reports
    assert platform[3:6] == [
        f"START RequestId: {first.request_id} Version: $LATEST",
        "handling 1",
        f"END RequestId: {first.request_id}",
    ]
    assert re.fullmatch(
        rf"REPORT RequestId: {UUID}\tDuration: \d+\.\d\d ms\tBilled Duration: \d+ ms\t"
        r"Memory Size: 1024 MB\tMax Memory Used: \d+ MB\tInit Duration: \d+\.\d\d ms",
        platform[6],
    ), platform[6]
    assert platform[7:10] == [
        f"START RequestId: {second.request_id} Version: $LATEST",
        "handling 2",
        f"END RequestId: {second.request_id}",
    ]
    assert "Init Duration" not in platform[10]
    # The result of each invocation is on stderr.
    assert [(res["requestId"], res["status"], res["payload"]) for res in r.results] == [
        (first.request_id, "success", {"n": 1}),
        (second.request_id, "success", {"n": 2}),
    ]


def test_telemetry_out_has_every_event_including_log_lines(tmp_path: Path) -> None:
    fn = python_function(tmp_path / "hello", HELLO)
    layer = extension_layer(tmp_path / "layer", "probe")
    r = run(fn, "app.handler", "python3.11", layers=[layer], memory=FAST, event={"n": 7})
    assert r.returncode == 0, r.explain()
    assert all(set(e) == {"time", "type", "record"} for e in r.events)
    types = [e["type"] for e in r.events]
    order = [
        "platform.initStart",
        "platform.initRuntimeDone",
        "platform.initReport",
        "platform.extension",
        "platform.start",
        "platform.runtimeDone",
        "platform.report",
    ]
    assert [t for t in types if t.startswith("platform.")] == order
    function_lines = [e["record"] for e in r.events if e["type"] == "function"]
    assert function_lines == ["loading", "handling 7"]
    extension_lines = [e["record"] for e in r.events if e["type"] == "extension"]
    assert extension_lines and all(isinstance(x, str) for x in extension_lines)
    (report,) = r.events_of("platform.report")
    metrics = report["record"]["metrics"]
    assert set(metrics) == {
        "durationMs",
        "billedDurationMs",
        "memorySizeMB",
        "maxMemoryUsedMB",
        "initDurationMs",
    }
    assert metrics["maxMemoryUsedMB"] == r.reports[0].max_memory_used_mb
    assert [s["name"] for s in report["record"]["spans"]] == [
        "responseLatency",
        "extensionOverhead",
    ]


def test_capture_dir_holds_each_process_raw_output(tmp_path: Path) -> None:
    fn = python_function(
        tmp_path / "hello",
        """
import sys, time
def handler(event, context):
    sys.stderr.write("to stderr\\n")
    time.sleep(event["sleep"])
    return 1
""",
    )
    layer = extension_layer(tmp_path / "layer", "probe")
    # The first invocation times out, so the second runs in a new environment: captures append.
    r = run(
        fn,
        "app.handler",
        "python3.11",
        layers=[layer],
        memory=FAST,
        invocations=2,
        timeout=1,
        event=[{"sleep": 3}, {"sleep": 0}],
    )
    assert r.returncode == 0, r.explain()
    assert r.output("runtime.stderr").count("to stderr") == 2
    assert sum(e["what"] == "register" for e in r.json_lines("extension-probe.stdout")) == 2
    assert set(r.captured) == {
        "runtime.stdout",
        "runtime.stderr",
        "extension-probe.stdout",
        "extension-probe.stderr",
    }


def test_bad_handler_is_lambdas_error_and_the_run_goes_on(tmp_path: Path) -> None:
    fn = python_function(tmp_path / "hello", HELLO)
    missing_module = run(fn, "nosuch.handler", "python3.11", memory=FAST, invocations=2)
    assert missing_module.returncode == 0, missing_module.explain()
    assert [res["payload"]["errorType"] for res in missing_module.results] == [
        "Runtime.ImportModuleError"
    ] * 2
    assert [rep.error_type for rep in missing_module.reports] == ["Runtime.ImportModuleError"] * 2
    missing_function = run(fn, "app.nosuch", "python3.11", memory=FAST)
    assert missing_function.results[0]["payload"]["errorType"] == "Runtime.HandlerNotFound"
    assert any(
        line.startswith("INIT_REPORT") and "Status: error" in line
        for line in missing_function.stdout
    )


def test_bad_arguments_exit_2_with_one_message(tmp_path: Path) -> None:
    fn = python_function(tmp_path / "hello", HELLO)
    cases = [
        (["--memory", "64"], "--memory"),
        (["--runtime", "cobol"], "unknown runtime"),
        (["--env", "NOEQUALS"], "KEY=VALUE"),
        (["--event", "{not json"], "--event is not JSON"),
        (["--efs", f"{tmp_path}:/data"], "HOST_DIR:/mnt/NAME"),
        (["--layer", str(tmp_path / "nope.zip")], "no such file"),
    ]
    for extra, message in cases:
        args = ["run", str(fn), "--handler", "app.handler", "--runtime", "python3.11", *extra]
        done = sandbox(*args)
        assert done.returncode == 2, (extra, done.stderr)
        assert message in done.stderr, (extra, done.stderr)
        assert done.stdout == ""
    done = sandbox("run", str(tmp_path / "absent"), "--handler", "a.b", "--runtime", "provided")
    assert done.returncode == 2 and "is not a folder" in done.stderr


def test_a_machine_that_cannot_run_it_gets_one_clear_message(tmp_path: Path) -> None:
    fn = python_function(tmp_path / "hello", HELLO)
    fn.chmod(0o755)
    tmp_path.chmod(0o755)
    # Not root: the preflight check names what is missing; nothing runs.
    done = subprocess.run(
        [
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            str(LAMBDA_SANDBOX),
            "run",
            str(fn),
            "--handler",
            "app.handler",
            "--runtime",
            "python3.11",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "not running as root" in lines[0], done.stderr
    assert done.stdout == ""


def test_event_file_gives_one_payload_per_invocation(tmp_path: Path) -> None:
    fn = python_function(tmp_path / "hello", HELLO)
    events = tmp_path / "events.json"
    events.write_text(json.dumps([{"n": 1}, {"n": 2}, {"n": 3}]))
    done = sandbox(
        "run",
        str(fn),
        "--handler",
        "app.handler",
        "--runtime",
        "python3.11",
        "--memory",
        str(FAST),
        "--event",
        f"@{events}",
    )
    assert done.returncode == 0, done.stderr
    results = [json.loads(x[7:]) for x in done.stderr.splitlines() if x.startswith("RESULT ")]
    assert [res["payload"] for res in results] == [{"n": 1}, {"n": 2}, {"n": 3}]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_shuts_down_cleanly_and_leaves_nothing(tmp_path: Path, sig: signal.Signals) -> None:
    fn = python_function(tmp_path / "hello", HELLO)
    layer = extension_layer(tmp_path / "layer", "probe")
    capture = tmp_path / "capture"
    proc = subprocess.Popen(
        [
            str(LAMBDA_SANDBOX),
            "run",
            str(fn),
            "--handler",
            "app.handler",
            "--runtime",
            "python3.11",
            "--memory",
            str(FAST),
            "--layer",
            str(layer),
            "--invocations",
            "100000",
            "--idle-ms",
            "20",
            "--event",
            '{"n": 0}',
            "--capture-dir",
            str(capture),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("REPORT"):
            break
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 128 + sig, err
    assert err.strip().splitlines()[-1] == f"lambda-sandbox: interrupted by {sig.name}"
    log = [json.loads(x) for x in (capture / "extension-probe.stdout").read_text().splitlines()]
    shutdown = [e for e in log if e["what"] == "event" and e["event"]["eventType"] == "SHUTDOWN"]
    assert [e["event"]["shutdownReason"] for e in shutdown] == ["spindown"]
    assert log[-1]["what"] == "exit"
    assert leftovers(proc.pid) == []


def test_200_invocations_leave_nothing_behind(tmp_path: Path) -> None:
    fn = python_function(tmp_path / "hello", HELLO)
    layer = extension_layer(tmp_path / "layer", "probe")
    r = run(
        fn,
        "app.handler",
        "python3.11",
        layers=[layer],
        memory=FAST,
        invocations=200,
        event={"n": 1},
        env={"PROBE_SUBSCRIBE": "platform,function"},
    )
    assert r.returncode == 0, r.explain()
    assert len(r.reports) == 200 and all(rep.status == "success" for rep in r.reports)
    assert sum(line.startswith("INIT_START") for line in r.stdout) == 1
    assert leftovers(r.pid) == []
