"""Every invocation carries an X-Ray trace header, as on Lambda, even with tracing off.

Lambda sends `Lambda-Runtime-Trace-Id: Root=1-<8 hex: epoch s>-<24 hex>;Parent=<16 hex>;Sampled=0`
with each event, which the runtime client puts in _X_AMZN_TRACE_ID, and gives the same value as
INVOKE's `tracing` {type: X-Amzn-Trace-Id, value} and platform.start's `tracing`.
"""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path

import pytest

from sandbox_run import extension_layer, python_function, run

TRACE = re.compile(r"Root=1-([0-9a-f]{8})-[0-9a-f]{24};Parent=[0-9a-f]{16};Sampled=0")

PY_TRACE = """
import os


def handler(event, context):
    return os.environ.get("_X_AMZN_TRACE_ID")
"""

NODE_TRACE = "exports.handler = async () => process.env._X_AMZN_TRACE_ID ?? null;\n"


def _function(tmp_path: Path, runtime: str) -> tuple[Path, str]:
    if runtime == "python3.11":
        return python_function(tmp_path / "fn", PY_TRACE), "app.handler"
    (tmp_path / "fn").mkdir()
    (tmp_path / "fn" / "index.js").write_text(NODE_TRACE)
    return tmp_path / "fn", "index.handler"


@pytest.mark.parametrize("runtime", ["python3.11", "nodejs20.x"])
def test_each_invocation_has_its_own_trace_id_everywhere_lambda_shows_it(
    tmp_path: Path, runtime: str
) -> None:
    fn, handler = _function(tmp_path, runtime)
    layer = extension_layer(tmp_path / "layer", "probe")
    r = run(fn, handler, runtime, layers=[layer], invocations=2, timeout=7)
    assert r.returncode == 0, r.explain()
    seen = [res["payload"] for res in r.results]
    for value, res in zip(seen, r.results, strict=True):
        match = TRACE.fullmatch(value or "")
        assert match, value
        started = next(
            e for e in r.events_of("platform.start") if e["record"]["requestId"] == res["requestId"]
        )
        assert started["record"]["tracing"] == {"type": "X-Amzn-Trace-Id", "value": value}
        # the Root's time is the invocation's start, in epoch seconds
        assert abs(int(match.group(1), 16) - _epoch(started["time"])) <= 2
    assert seen[0] != seen[1]
    invokes = [
        e["event"]
        for e in r.json_lines("extension-probe.stdout")
        if e["what"] == "event" and e["event"]["eventType"] == "INVOKE"
    ]
    assert [e["tracing"] for e in invokes] == [
        {"type": "X-Amzn-Trace-Id", "value": value} for value in seen
    ]


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()
