"""The lifecycle of lambda-sandbox against Lambda's (reference lambda-platform.md, section 9).

Every test runs the real sandbox (cgroups, namespaces, awslambdaric) with the probe extension
(tests/functions/extensions/probe, standard library only), and reads what a user would read:
stdout, RESULT lines, --telemetry-out and the captured output of each process.
"""

from __future__ import annotations

from pathlib import Path

from sandbox_run import extension_layer, python_function, run

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
