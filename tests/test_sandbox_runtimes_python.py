"""python3.11 (AWS's awslambdaric) and provided (a bootstrap) in lambda-sandbox."""

from __future__ import annotations

from pathlib import Path

from sandbox_run import run

FUNCTIONS = Path(__file__).resolve().parent / "functions"


def test_awslambdaric_returns_the_result_and_the_logs_appear() -> None:
    result = run(FUNCTIONS / "python_echo", "app.handler", "python3.11", event={"q": [1, 2]})
    [answer] = result.results
    request_id = answer["requestId"]
    assert answer["status"] == "success"
    assert answer["payload"]["event"] == {"q": [1, 2]}
    assert answer["payload"]["request_id"] == request_id
    assert answer["payload"]["memory_limit_in_mb"] == "128"
    assert 0 < answer["payload"]["remaining_ms"] <= 3000
    lines = result.stdout
    start = lines.index(next(line for line in lines if line.startswith("START RequestId:")))
    end = lines.index(next(line for line in lines if line.startswith("END RequestId:")))
    between = lines[start + 1 : end]
    assert "print from python_echo" in between
    # awslambdaric's own log format: [LEVEL]\t<time>\t<request id>\t<message>
    assert any(
        line.startswith("[INFO]\t")
        and line.endswith(f"\t{request_id}\tlogging from python_echo {request_id}")
        for line in between
    )


def test_awslambdaric_reports_a_raised_error_and_goes_on() -> None:
    result = run(FUNCTIONS / "python_echo", "app.fails", "python3.11", invocations=2)
    assert result.returncode == 0, result.explain()
    for answer in result.results:
        assert answer["status"] == "error"
        assert answer["payload"]["errorType"] == "ValueError"
        assert answer["payload"]["errorMessage"] == "boom from python_echo"


def test_awslambdaric_missing_module_is_import_module_error() -> None:
    result = run(FUNCTIONS / "python_echo", "nothere.handler", "python3.11", invocations=2)
    assert result.returncode == 0, result.explain()
    assert len(result.results) == 2
    for answer in result.results:
        assert answer["payload"]["errorType"] == "Runtime.ImportModuleError"
        assert "No module named 'nothere'" in answer["payload"]["errorMessage"]


def test_awslambdaric_is_the_copy_in_var_runtime() -> None:
    result = run(FUNCTIONS / "python_env_probe", "app.handler", "python3.11")
    [answer] = result.results
    native = [path for path in answer["payload"]["maps"] if "runtime_client" in path]
    assert native and all(path.startswith("/var/runtime/") for path in native)
    assert answer["payload"]["env"]["PYTHONPATH"].split(":")[-1] == "/var/runtime"


def test_provided_runtime_runs_the_functions_bootstrap() -> None:
    events = [{"n": 1, "text": "héllo ☃"}, {"n": 2}]
    result = run(
        FUNCTIONS / "provided_bash", "ignored.handler", "provided", invocations=2, event=events
    )
    assert [r["payload"] for r in result.results] == events
    assert [r["status"] for r in result.results] == ["success", "success"]
    stdout = "\n".join(result.stdout)
    assert "bash runtime ready, handler ignored.handler, task root /var/task" in stdout
    for answer in result.results:
        assert f"bash runtime echoing request {answer['requestId']}: " in stdout
