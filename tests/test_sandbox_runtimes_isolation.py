"""What a function sees from inside lambda-sandbox, through both language runtimes: only its own
environment's processes, an unprivileged identity, Lambda's variables and nothing of the host's,
and nothing writable but /tmp and its --efs mounts."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sandbox_run import run

FUNCTIONS = Path(__file__).resolve().parent / "functions"
PROBES = [
    ("python_env_probe", "app.handler", "python3.11"),
    ("node_env_probe", "index.handler", "nodejs20.x"),
]
SANDBOX_UID, SANDBOX_GID = 993, 990
HOST_MARKER = "TMP_MONITOR_TEST_HOST_ONLY"


# One run per runtime serves every test of this module.
@pytest.fixture(scope="module", params=PROBES, ids=[p[2] for p in PROBES])
def probe(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> dict:
    function, handler, runtime = request.param
    efs = tmp_path_factory.mktemp("efs")
    # Owned by the function's user, as an EFS access point's root directory would be.
    os.chown(efs, SANDBOX_UID, SANDBOX_GID)
    # A variable of the host process must not reach the function.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(HOST_MARKER, "leaked")
        result = run(
            FUNCTIONS / function,
            handler,
            runtime,
            env={"GIVEN": "by --env"},
            memory=256,
            efs=[(efs, "/mnt/data")],
        )
    [answer] = result.results
    assert answer["status"] == "success", answer["payload"]
    return answer["payload"]


def test_runs_unprivileged(probe: dict) -> None:
    assert (probe["uid"], probe["euid"], probe["gid"]) == (SANDBOX_UID, SANDBOX_UID, SANDBOX_GID)
    assert 0 not in probe["groups"]


def test_sees_only_its_environments_processes(probe: dict) -> None:
    # Its own PID namespace: the sandbox's init as PID 1 and the runtime (no extensions here);
    # none of the host's processes, such as this pytest.
    processes = {int(pid): cmdline for pid, cmdline in probe["processes"].items()}
    assert set(processes) == {1, probe["pid"]}, processes
    assert "lambda_sandbox" in processes[1]
    assert "/var/runtime" in processes[probe["pid"]] or "awslambdaric" in processes[probe["pid"]]
    assert not any("pytest" in cmdline for cmdline in processes.values())


def test_can_write_only_to_tmp_and_its_efs_mount(probe: dict) -> None:
    assert probe["mnt"] == ["/mnt/data"]
    assert sorted(probe["writable_dirs"]) == ["/mnt/data", "/tmp"]
    assert probe.get("writable_files", []) == []
    assert probe["cwd"] == "/var/task"


def test_has_lambdas_variables_and_none_of_the_hosts(probe: dict) -> None:
    env = probe["env"]
    assert env["LAMBDA_TASK_ROOT"] == "/var/task"
    assert env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == "256"
    assert env["AWS_LAMBDA_RUNTIME_API"].startswith("127.0.0.1:")
    assert env["_HANDLER"] in ("app.handler", "index.handler")
    assert env["AWS_EXECUTION_ENV"].startswith("AWS_Lambda_")
    assert env["GIVEN"] == "by --env"
    assert HOST_MARKER not in env


def test_sandbox_localdomain_resolves_to_loopback(probe: dict) -> None:
    assert probe["sandbox_localdomain"] == "127.0.0.1"
