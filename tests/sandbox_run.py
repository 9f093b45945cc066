"""Run `lambda-sandbox run ...` the way a user does, and parse what it shows.

    from sandbox_run import run
    r = run(FUNCTIONS / "python_echo", "app.handler", "python3.11", invocations=3)
    assert r.returncode == 0
    r.reports[0].init_duration_ms, r.results[0]["payload"], r.events_of("platform.report")
    r.emf_documents("tmp-monitor")   # JSON lines of that extension's captured stdout

Only the public interface is used: the command line, stdout (CloudWatch-like lines), stderr
(RESULT lines), --telemetry-out and the test-only --capture-dir.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

LAMBDA_SANDBOX = Path(sys.executable).parent / "lambda-sandbox"
PROBE = Path(__file__).resolve().parent / "functions" / "extensions" / "probe"


CGROUP_ROOT = Path("/sys/fs/cgroup")
WORK_ROOT = Path("/var/tmp/lambda-sandbox")


def leftovers(pid: int) -> list[str]:
    """What a finished `lambda-sandbox` process `pid` left behind: processes, cgroups, loop
    devices, work files (its environments are all named `<pid>-<start time>-<random>`)."""
    prefix = f"{pid}-"
    found: list[str] = []
    for group in CGROUP_ROOT.glob("*/lambda-sandbox/*"):
        if group.name.startswith(prefix):
            found.append(f"cgroup {group}")
    for group in CGROUP_ROOT.glob("unified/lambda-sandbox/*"):
        if group.name.startswith(prefix):
            found.append(f"cgroup {group}")
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cgroups = (proc / "cgroup").read_text()
        except OSError:
            continue
        if f"/lambda-sandbox/{prefix}" in cgroups:
            found.append(f"process {proc.name}")
    for backing in Path("/sys/block").glob("loop*/loop/backing_file"):
        try:
            text = backing.read_text()
        except OSError:
            continue
        if f"{WORK_ROOT}/{prefix}" in text:
            found.append(f"loop device {backing.parent.parent.name} -> {text.strip()}")
    for line in Path("/proc/self/mounts").read_text().splitlines():
        if f"{WORK_ROOT}/{prefix}" in line:
            found.append(f"mount {line}")
    found += [f"work files {p}" for p in WORK_ROOT.glob(f"{prefix}*")]
    return found


def python_function(folder: Path, source: str, module: str = "app") -> Path:
    """A Python function folder holding `<module>.py` with this source."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{module}.py").write_text(source)
    return folder


def extension_layer(folder: Path, *names: str, source: Path = PROBE) -> Path:
    """A layer folder whose /opt/extensions holds the probe extension under each name."""
    target = folder / "extensions"
    target.mkdir(parents=True, exist_ok=True)
    for name in names:
        shutil.copy2(source, target / name)
        (target / name).chmod(0o755)
    return folder


_REPORT = re.compile(r"^REPORT RequestId: (?P<id>\S+)\t(?P<fields>.*)$")


@dataclass(frozen=True)
class ReportLine:
    request_id: str
    duration_ms: float
    billed_ms: int
    memory_mb: int
    max_memory_used_mb: int
    init_duration_ms: float | None
    status: str  # "success" unless the line says otherwise
    error_type: str


def parse_report(line: str) -> ReportLine | None:
    match = _REPORT.match(line)
    if match is None:
        return None
    fields = dict(part.split(": ", 1) for part in match.group("fields").split("\t"))

    def number(key: str) -> float:
        return float(fields[key].split()[0])

    return ReportLine(
        request_id=match.group("id"),
        duration_ms=number("Duration"),
        billed_ms=int(number("Billed Duration")),
        memory_mb=int(number("Memory Size")),
        max_memory_used_mb=int(number("Max Memory Used")),
        init_duration_ms=number("Init Duration") if "Init Duration" in fields else None,
        status=fields.get("Status", "success"),
        error_type=fields.get("Error Type", ""),
    )


@dataclass(frozen=True)
class Run:
    argv: tuple[str, ...]
    pid: int  # of the lambda-sandbox process; its cgroups and work files are named after it
    returncode: int
    stdout: list[str]
    stderr: list[str]
    events: list[dict[str, Any]]  # --telemetry-out, in order
    reports: list[ReportLine]
    results: list[dict[str, Any]]  # RESULT lines: time, requestId, status, payload
    captured: Mapping[str, bytes] = field(default_factory=dict)  # "runtime.stdout" -> bytes

    def events_of(self, event_type: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["type"] == event_type]

    def output(self, name: str) -> str:
        """Captured output of one process: `runtime.stdout`, `extension-probe.stderr`, ..."""
        return self.captured.get(name, b"").decode("utf-8", "replace")

    def json_lines(self, name: str) -> list[dict[str, Any]]:
        """Every line of a captured stream parsed as JSON (a line that is not raises)."""
        return [json.loads(line) for line in self.output(name).splitlines() if line.strip()]

    def emf_documents(self, extension: str = "tmp-monitor") -> list[dict[str, Any]]:
        return self.json_lines(f"extension-{extension}.stdout")

    def explain(self) -> str:
        """Everything, for an assertion message."""
        return "\n".join(
            [
                "$ " + " ".join(self.argv),
                f"exit status {self.returncode}",
                "--- stdout",
                *self.stdout,
                "--- stderr",
                *self.stderr,
            ]
        )


def run(
    function_dir: Path,
    handler: str,
    runtime: str,
    *,
    layers: Sequence[Path] = (),
    env: Mapping[str, str] | None = None,
    memory: int = 128,
    ephemeral: int = 512,
    timeout: int = 3,
    invocations: int = 1,
    event: Any = None,
    idle_ms: int = 0,
    efs: Sequence[tuple[Path, str]] = (),
    extra_args: Sequence[str] = (),
    process_timeout_s: float = 600,
) -> Run:
    """`event`: a JSON-able value for every invocation, or a list (one per invocation)."""
    with tempfile.TemporaryDirectory(prefix="sandbox-run-") as tmp:
        work = Path(tmp)
        telemetry = work / "telemetry.jsonl"
        capture = work / "capture"
        argv = [
            str(LAMBDA_SANDBOX),
            "run",
            str(function_dir),
            "--handler",
            handler,
            "--runtime",
            runtime,
            "--memory",
            str(memory),
            "--ephemeral-storage",
            str(ephemeral),
            "--timeout",
            str(timeout),
            "--invocations",
            str(invocations),
            "--idle-ms",
            str(idle_ms),
            "--telemetry-out",
            str(telemetry),
            "--capture-dir",
            str(capture),
        ]
        for layer in layers:
            argv += ["--layer", str(layer)]
        for key, value in (env or {}).items():
            argv += ["--env", f"{key}={value}"]
        for host_dir, target in efs:
            argv += ["--efs", f"{host_dir}:{target}"]
        if isinstance(event, list):
            events_file = work / "events.json"
            events_file.write_text(json.dumps(event))
            argv += ["--event", f"@{events_file}"]
        elif event is not None:
            argv += ["--event", json.dumps(event)]
        argv += list(extra_args)
        with subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        ) as proc:
            out, err = proc.communicate(timeout=process_timeout_s)
        stdout = _lines(out)
        stderr = _lines(err)
        events = (
            [json.loads(line) for line in telemetry.read_text().splitlines()]
            if telemetry.exists()
            else []
        )
        captured = (
            {p.name: p.read_bytes() for p in sorted(capture.iterdir())} if capture.is_dir() else {}
        )
    return Run(
        argv=tuple(argv),
        pid=proc.pid,
        returncode=proc.returncode,
        stdout=stdout,
        stderr=stderr,
        events=events,
        reports=[r for r in map(parse_report, stdout) if r is not None],
        results=[json.loads(line[7:]) for line in stderr if line.startswith("RESULT {")],
        captured=captured,
    )


def _lines(text: str) -> list[str]:
    """Lines split at \n only: Lambda's multi-line log events hold \r, which splitlines() splits."""
    lines = text.split("\n")
    return lines[:-1] if lines[-1] == "" else lines
