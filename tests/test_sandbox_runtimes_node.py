"""nodejs20.x in lambda-sandbox: our runtime client with real Node.js, in a real environment.

CommonJS and ES module handlers, callback and async, the context object, Lambda's errors for a
bad handler and for a thrown error, and Lambda's log line format; after each error the
environment goes on serving invocations.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from sandbox_run import Run, run

FUNCTIONS = Path(__file__).resolve().parent / "functions"
ECHO_CJS = FUNCTIONS / "node_echo_cjs"
NODE = "nodejs20.x"
LOG_LINE = re.compile(
    r"^(?P<time>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z)\t(?P<request>\S+)\t(?P<level>[A-Z]+)\t(?P<message>.*)$"
)


def payloads(result: Run) -> list[Any]:
    return [r["payload"] for r in result.results]


def test_commonjs_async_handler_gets_event_and_context() -> None:
    result = run(ECHO_CJS, "index.handler", NODE, memory=256, timeout=5, event={"n": 1})
    [answer] = payloads(result)
    [report] = result.reports
    assert answer["style"] == "async"
    assert answer["event"] == {"n": 1}
    assert answer["requestId"] == report.request_id == result.results[0]["requestId"]
    assert answer["functionVersion"] == "$LATEST"
    # Node's client passes the memory size as Lambda's does: a string.
    assert answer["memoryLimitInMB"] == "256"
    assert answer["invokedFunctionArn"].startswith("arn:aws:lambda:")
    assert answer["invokedFunctionArn"].endswith(f":function:{answer['functionName']}")
    assert answer["logGroupName"] == f"/aws/lambda/{answer['functionName']}"
    assert answer["logStreamName"]
    assert 0 < answer["remainingMs"] <= 5000
    assert answer["waitsForEmptyEventLoop"] is True


def test_callback_handler_answers_when_the_event_loop_is_empty() -> None:
    # The handler calls back at once but leaves a 50 ms timer that marks the result: by default
    # the answer waits for it; with callbackWaitsForEmptyEventLoop = false it does not.
    waiting = run(ECHO_CJS, "index.callback", NODE)
    not_waiting = run(ECHO_CJS, "index.callbackNoWait", NODE)
    [waited] = payloads(waiting)
    [immediate] = payloads(not_waiting)
    assert (waited["style"], waited["timerRan"]) == ("callback", True)
    assert (immediate["style"], immediate["timerRan"]) == ("callbackNoWait", False)
    assert immediate["waitsForEmptyEventLoop"] is False


@pytest.mark.parametrize(
    ("function", "handler", "style"),
    [
        ("node_echo_esm", "index.handler", "esm-async"),
        ("node_echo_esm", "index.callback", "esm-callback"),
        ("node_echo_esm_typemodule", "src/app.handler", "esm-typemodule"),
        ("node_echo_cjs", "index.nested.deeper.handler", "nested"),
        ("node_echo_cjs", "legacy.handler", "cjs-succeed"),
    ],
)
def test_module_kinds_and_handler_paths(function: str, handler: str, style: str) -> None:
    # Two invocations: the handler loaded once serves both.
    result = run(FUNCTIONS / function, handler, NODE, invocations=2, event={"k": "v"})
    answers = payloads(result)
    assert [a["style"] for a in answers] == [style, style]
    assert [a["event"] for a in answers] == [{"k": "v"}, {"k": "v"}]
    assert all(r["status"] == "success" for r in result.results)


def test_es_module_under_type_module_is_loaded_from_var_task() -> None:
    result = run(FUNCTIONS / "node_echo_esm_typemodule", "src/app.handler", NODE)
    [answer] = payloads(result)
    assert answer["url"] == "file:///var/task/src/app.js"


@pytest.mark.parametrize(
    ("function", "handler", "error_type", "message"),
    [
        (
            "node_echo_cjs",
            "missing.handler",
            "Runtime.ImportModuleError",
            "Error: Cannot find module 'missing'",
        ),
        (
            "node_echo_cjs",
            "index.absent",
            "Runtime.HandlerNotFound",
            "index.absent is undefined or not exported",
        ),
        (
            "node_echo_cjs",
            "index.notAFunction",
            "Runtime.HandlerNotFound",
            "index.notAFunction is not a function",
        ),
        ("node_echo_cjs", "index", "Runtime.MalformedHandlerName", "Bad handler"),
        (
            "node_syntax_error",
            "index.handler",
            "Runtime.UserCodeSyntaxError",
            "SyntaxError: Unexpected token",
        ),
    ],
)
def test_bad_handler_is_lambdas_init_error_and_the_environment_goes_on(
    function: str, handler: str, error_type: str, message: str
) -> None:
    result = run(FUNCTIONS / function, handler, NODE, invocations=2)
    assert result.returncode == 0, result.explain()
    assert len(result.results) == 2
    for answer in payloads(result):
        assert answer["errorType"] == error_type
        assert message in answer["errorMessage"]
    # The client logs the error as Lambda's does, before any request id exists.
    logged = [m for m in _log_lines(result.stdout) if m["message"].startswith("Uncaught Exception")]
    assert logged and logged[0]["request"] == "undefined" and logged[0]["level"] == "ERROR"
    assert json.loads(logged[0]["message"].split("\t", 1)[1])["errorType"] == error_type


def test_thrown_error_is_reported_and_the_same_runtime_serves_the_next_invocation() -> None:
    events = [{"throw": False}, {"throw": True}, {"throw": False}]
    result = run(ECHO_CJS, "index.throws", NODE, invocations=3, event=events)
    before, failed, after = result.results
    assert failed["status"] == "error"
    error = failed["payload"]
    assert error["errorType"] == "TypeError"
    assert error["errorMessage"] == "boom from the handler"
    assert error["trace"][0] == "TypeError: boom from the handler"
    assert any("/var/task/index.js" in frame for frame in error["trace"])
    # A handled error does not reset the environment: the same process serves the next one.
    assert (before["status"], after["status"]) == ("success", "success")
    assert before["payload"]["pid"] == after["payload"]["pid"]
    assert [r.init_duration_ms is not None for r in result.reports] == [True, False, False]
    invoke_errors = [
        m for m in _log_lines(result.stdout) if m["message"].startswith("Invoke Error")
    ]
    assert [m["request"] for m in invoke_errors] == [failed["requestId"]]
    assert json.loads(invoke_errors[0]["message"].split("\t", 1)[1])["errorType"] == "TypeError"


def test_callback_error_is_reported_with_its_type() -> None:
    result = run(ECHO_CJS, "index.callbackError", NODE)
    [answer] = payloads(result)
    assert answer["errorType"] == "RangeError"
    assert answer["errorMessage"] == "called back with an error"


def test_console_lines_have_lambdas_text_format() -> None:
    result = run(ECHO_CJS, "index.logs", NODE, event={"x": 1})
    request_id = result.results[0]["requestId"]
    # What the client wrote, split only at \n (str.splitlines would also split at \r).
    raw = result.output("runtime.stdout").split("\n")
    lines = [m for m in _log_lines(raw) if m["request"] == request_id]
    assert [(m["level"], m["message"]) for m in lines] == [
        ("INFO", "a log line"),
        ("INFO", "an info line"),
        ("WARN", "a warn line"),
        ("ERROR", "an error line { n: 1 }"),
        ("DEBUG", "a debug line"),
        # One log event for a multi-line message: Lambda's text format turns \n into \r.
        ("INFO", "first\rsecond"),
    ]


@pytest.mark.parametrize(
    ("handler", "error_type", "message", "exit_status"),
    [
        ("index.uncaught", "Error", "thrown from a timer", 129),
        (
            "index.unhandledRejection",
            "Runtime.UnhandledPromiseRejection",
            "Error: nobody catches this",
            128,
        ),
    ],
)
def test_uncaught_error_ends_the_runtime_and_the_next_invocation_gets_a_new_one(
    handler: str, error_type: str, message: str, exit_status: int
) -> None:
    result = run(ECHO_CJS, handler, NODE, invocations=2, timeout=5)
    assert result.returncode == 0, result.explain()
    for answer in result.results:
        assert answer["payload"]["errorType"] == error_type
        assert answer["payload"]["errorMessage"] == message
    # The process ended with AWS's client's exit status; a new environment, with its own Init,
    # serves the next invocation.
    assert f"Runtime exited with error: exit status {exit_status}" in "\n".join(result.stdout)
    assert [r.init_duration_ms is not None for r in result.reports] == [True, True]


def _log_lines(stdout: list[str]) -> list[dict[str, str]]:
    found = []
    for line in stdout:
        match = LOG_LINE.match(line)
        if match:
            found.append(match.groupdict())
    return found
