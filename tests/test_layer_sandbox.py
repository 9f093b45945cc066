"""The built x86_64 layer attached to real functions in lambda-sandbox: a Node.js, a Python and a
`provided` (bash) function each get the monitor's documents, joined to the platform's REPORT;
and a function sees the same environment variables and loads the same libraries with and
without the layer (the layer puts nothing in /opt/lib, /opt/python or /opt/bin).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sandbox_run import Run, run

ROOT = Path(__file__).resolve().parent.parent
FUNCTIONS = ROOT / "tests" / "functions"
LAYER = ROOT / "dist" / "tmp-monitor-x86_64.zip"
INVOCATIONS = 3
# Variables whose value differs between any two environments, layer or not.
PER_ENVIRONMENT = {"AWS_LAMBDA_RUNTIME_API", "AWS_LAMBDA_LOG_STREAM_NAME", "_X_AMZN_TRACE_ID"}


def layer() -> Path:
    if not LAYER.is_file():
        pytest.fail(f"{LAYER} is missing: build it with ./build.sh layer")
    return LAYER


def metric(doc: dict[str, Any], name: str) -> float:
    value = doc[name]
    [single] = value if isinstance(value, list) else [value]
    return float(single)


@pytest.mark.parametrize(
    ("function", "handler", "runtime"),
    [
        ("node_echo_cjs", "index.handler", "nodejs20.x"),
        ("python_echo", "app.handler", "python3.11"),
        ("provided_bash", "function.handler", "provided"),
    ],
)
def test_monitor_documents_every_invocation_of_any_runtime(
    function: str, handler: str, runtime: str
) -> None:
    result = run(FUNCTIONS / function, handler, runtime, layers=[layer()], invocations=INVOCATIONS)
    assert result.returncode == 0, result.explain()
    assert any(
        line.startswith("EXTENSION\tName: tmp-monitor\tState: Ready") for line in result.stdout
    ), result.explain()
    docs = result.emf_documents()  # every line of the monitor's stdout is one JSON document
    assert docs and all("_aws" in doc for doc in docs), result.output(
        "extension-tmp-monitor.stdout"
    )
    ids = [report.request_id for report in result.reports]
    assert len(ids) == INVOCATIONS, result.explain()
    invocations = [d for d in docs if d["document"] == "invocation"]
    assert [d["requestId"] for d in invocations] == ids, result.explain()
    reports = {d["requestId"]: d for d in docs if d["document"] == "report"}
    assert sorted(reports) == sorted(ids), result.explain()
    for line in result.reports:
        assert metric(reports[line.request_id], "MaxMemoryUsedMB") == line.max_memory_used_mb
    assert [d["shutdownReason"] for d in docs if d["document"] == "summary"] == ["spindown"]
    assert "Traceback" not in result.output("extension-tmp-monitor.stderr")


def probe(function: str, runtime: str, handler: str, layers: list[Path]) -> dict[str, Any]:
    result: Run = run(FUNCTIONS / function, handler, runtime, layers=layers)
    assert result.returncode == 0, result.explain()
    [answer] = result.results
    assert answer["status"] == "success", answer
    payload: dict[str, Any] = answer["payload"]
    return payload


@pytest.mark.parametrize(
    ("function", "runtime", "handler"),
    [
        ("python_env_probe", "python3.11", "app.handler"),
        ("node_env_probe", "nodejs20.x", "index.handler"),
    ],
)
def test_function_sees_the_same_environment_with_and_without_the_layer(
    function: str, runtime: str, handler: str
) -> None:
    without = probe(function, runtime, handler, [])
    with_layer = probe(function, runtime, handler, [layer()])

    def comparable(env: dict[str, str]) -> dict[str, str]:
        return {k: v for k, v in env.items() if k not in PER_ENVIRONMENT}

    assert comparable(with_layer["env"]) == comparable(without["env"])
    assert with_layer["maps"] == without["maps"]
    assert not [p for p in with_layer["maps"] if p.startswith("/opt/")]
    # The one difference a function can see: the monitor's process beside it.
    extra = set(with_layer["processes"].values()) - set(without["processes"].values())
    assert len(extra) == 1 and "/opt/tmp-monitor/bootstrap.py" in extra.pop()
