"""One `lambda-sandbox run` as a subprocess, and what it showed, parsed.

The benchmark drives the sandbox through its command line, as a user does, so that what it
measures is the product and not a test double. Everything it reads comes from the platform's own
telemetry (`--telemetry-out`), the RESULT lines, and the raw output of the monitor's process
(`--capture-dir`): the EMF documents on its stdout and the benchmark probes' lines on its stderr.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

EXTENSION = "tmp-monitor"


class SandboxFailed(Exception):
    """The environment could not run; the message holds the command's exit status and stderr."""


@dataclass(frozen=True)
class Run:
    reports: tuple[dict[str, Any], ...]  # platform.report records, in order
    init_reports: tuple[dict[str, Any], ...]  # platform.initReport records
    results: tuple[dict[str, Any], ...]  # RESULT lines: requestId, status, payload
    documents: tuple[dict[str, Any], ...]  # EMF documents the monitor wrote
    probe_lines: tuple[str, ...]  # "BENCH ..." lines on the extension's stderr
    extension_stderr: str
    wall_s: float

    def docs(self, kind: str) -> list[dict[str, Any]]:
        """The monitor's documents of one kind: invocation, report or summary."""
        return [d for d in self.documents if d.get("document") == kind]

    def payloads(self) -> list[Any]:
        return [r["payload"] for r in self.results]

    def require_monitor(self, invocations: int) -> None:
        """The monitor ran (one invocation document per invocation): a monitor that turned
        itself off costs nothing, and its figures would flatter it."""
        got = len(self.docs("invocation"))
        if got != invocations:
            raise SandboxFailed(
                f"{got} invocation documents for {invocations} invocations; the monitor's "
                f"stderr: {self.extension_stderr[-600:]}"
            )


def run(
    function_dir: Path,
    handler: str,
    runtime: str,
    *,
    layers: Sequence[Path] = (),
    env: Mapping[str, str] | None = None,
    memory: int = 128,
    invocations: int = 1,
    events: Sequence[Any] | None = None,
    idle_ms: int = 0,
    timeout: int = 3,
) -> Run:
    """Init, `invocations` invocations (with `events` cycled through), Shutdown."""
    with tempfile.TemporaryDirectory(prefix="tmp-monitor-bench-") as scratch:
        work = Path(scratch)
        telemetry = work / "telemetry.jsonl"
        capture = work / "capture"
        command = [
            sys.executable,
            "-m",
            "lambda_sandbox",
            "run",
            str(function_dir),
            "--handler",
            handler,
            "--runtime",
            runtime,
            "--memory",
            str(memory),
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
            command += ["--layer", str(layer)]
        for key, value in (env or {}).items():
            command += ["--env", f"{key}={value}"]
        if events is not None:
            event_file = work / "events.json"
            event_file.write_text(json.dumps(list(events)))
            command += ["--event", f"@{event_file}"]
        started = time.monotonic()
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        wall = time.monotonic() - started
        if done.returncode != 0:
            tail = "\n".join(done.stderr.strip().splitlines()[-8:])
            raise SandboxFailed(f"lambda-sandbox exited {done.returncode}: {tail}")
        records = _telemetry(telemetry)
        ext_out = _read(capture / f"extension-{EXTENSION}.stdout")
        ext_err = _read(capture / f"extension-{EXTENSION}.stderr")
    return Run(
        reports=tuple(r for t, r in records if t == "platform.report"),
        init_reports=tuple(r for t, r in records if t == "platform.initReport"),
        results=tuple(_results(done.stderr)),
        documents=tuple(_documents(ext_out)),
        probe_lines=tuple(line for line in ext_err.splitlines() if line.startswith("BENCH ")),
        extension_stderr=ext_err,
        wall_s=wall,
    )


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return ""


def _telemetry(path: Path) -> list[tuple[str, Any]]:
    out = []
    for line in _read(path).splitlines():
        if line.strip():
            event = json.loads(line)
            out.append((event.get("type", ""), event.get("record")))
    return out


def _results(stderr: str) -> list[dict[str, Any]]:
    return [json.loads(line[7:]) for line in stderr.splitlines() if line.startswith("RESULT ")]


def _documents(stdout: str) -> list[dict[str, Any]]:
    docs = []
    for line in stdout.splitlines():
        try:
            doc = json.loads(line)
        except ValueError:
            continue
        if isinstance(doc, dict) and "_aws" in doc:
            docs.append(doc)
    return docs
