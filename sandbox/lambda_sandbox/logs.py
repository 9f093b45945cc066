"""The environment's output: CloudWatch-like lines on stdout, results on stderr, --telemetry-out,
--capture-dir, and the pumps that read each process's stdout and stderr line by line.

stdout carries exactly what CloudWatch Logs would show for the function's log stream. The
function's result (not part of the log stream on Lambda) goes to stderr, one line per
invocation, when the caller gets it: `RESULT {"time", "requestId", "status", "payload"}`.
"""

from __future__ import annotations

import fcntl
import json
import os
import termios
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, BinaryIO, TextIO


def iso_time(epoch_s: float) -> str:
    """Lambda's timestamps: UTC, milliseconds, `Z`."""
    moment = datetime.fromtimestamp(epoch_s, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


@dataclass(frozen=True)
class Report:
    request_id: str
    duration_ms: float
    billed_ms: int
    memory_mb: int
    max_memory_used_mb: int
    init_duration_ms: float | None  # cold starts only
    status: str  # success, error, timeout, failure
    error_type: str = ""


def init_start_line(runtime_version: str, runtime_arn: str) -> str:
    return f"INIT_START Runtime Version: {runtime_version}\tRuntime Version ARN: {runtime_arn}"


def init_report_line(duration_ms: float, status: str, error_type: str) -> str:
    """Lambda prints INIT_REPORT only when Init did not succeed."""
    line = f"INIT_REPORT Init Duration: {duration_ms:.2f} ms\tPhase: init\tStatus: {status}"
    return line + (f"\tError Type: {error_type}" if error_type else "")


def extension_line(name: str, events: tuple[str, ...]) -> str:
    return f"EXTENSION\tName: {name}\tState: Ready\tEvents: [{', '.join(events)}]"


def start_line(request_id: str) -> str:
    return f"START RequestId: {request_id} Version: $LATEST"


def end_line(request_id: str) -> str:
    return f"END RequestId: {request_id}"


def timeout_line(epoch_s: float, request_id: str, timeout_s: float) -> str:
    return f"{iso_time(epoch_s)} {request_id} Task timed out after {timeout_s:.2f} seconds"


def report_line(report: Report) -> str:
    fields = [
        f"REPORT RequestId: {report.request_id}",
        f"Duration: {report.duration_ms:.2f} ms",
        f"Billed Duration: {report.billed_ms} ms",
        f"Memory Size: {report.memory_mb} MB",
        f"Max Memory Used: {report.max_memory_used_mb} MB",
    ]
    if report.init_duration_ms is not None:
        fields.append(f"Init Duration: {report.init_duration_ms:.2f} ms")
    if report.status != "success":
        fields.append(f"Status: {report.status}")
        if report.error_type:
            fields.append(f"Error Type: {report.error_type}")
    return "\t".join(fields)


class Output:
    """Where everything the environment shows goes; safe to call from any thread."""

    def __init__(
        self,
        stdout: TextIO,
        stderr: TextIO,
        telemetry_out: Path | None = None,
        capture_dir: Path | None = None,
    ) -> None:
        self._lock = threading.Lock()
        self._stdout = stdout
        self._stderr = stderr
        self._telemetry: IO[str] | None = (
            telemetry_out.open("a", encoding="utf-8") if telemetry_out else None
        )
        self._capture_dir = capture_dir
        if capture_dir is not None:
            capture_dir.mkdir(parents=True, exist_ok=True)
        self._captures: dict[str, BinaryIO] = {}

    def line(self, text: str) -> None:
        with self._lock:
            self._stdout.write(text + "\n")
            self._stdout.flush()

    def event(self, event: dict[str, Any]) -> None:
        if self._telemetry is None:
            return
        with self._lock:
            self._telemetry.write(json.dumps(event) + "\n")
            self._telemetry.flush()

    def result(self, request_id: str, status: str, body: bytes) -> None:
        text = body.decode("utf-8", "replace")
        try:
            payload: Any = json.loads(text)
        except ValueError:
            payload = text
        record = {
            "time": iso_time(time.time()),
            "requestId": request_id,
            "status": status,
            "payload": payload,
        }
        self.diagnostic("RESULT " + json.dumps(record))

    def diagnostic(self, text: str) -> None:
        with self._lock:
            self._stderr.write(text + "\n")
            self._stderr.flush()

    def capture(self, name: str, data: bytes) -> None:
        """Raw bytes a process wrote, to DIR/<name> (`runtime.stdout`, ...), appended."""
        if self._capture_dir is None:
            return
        with self._lock:
            sink = self._captures.get(name)
            if sink is None:
                sink = (self._capture_dir / name).open("ab")
                self._captures[name] = sink
            sink.write(data)
            sink.flush()

    def close(self) -> None:
        with self._lock:
            for sink in self._captures.values():
                sink.close()
            self._captures.clear()
            if self._telemetry is not None:
                self._telemetry.close()
                self._telemetry = None


class LogPump:
    """Reads one process's stdout and stderr; hands each complete line to `on_line`."""

    def __init__(
        self,
        name: str,
        streams: tuple[BinaryIO, BinaryIO],
        on_line: Callable[[str], None],
        output: Output,
    ) -> None:
        self._name = name
        self._on_line = on_line
        self._output = output
        self._busy = 0
        self._cond = threading.Condition()
        self._fds = [s.fileno() for s in streams]
        self._threads = [
            threading.Thread(target=self._pump, args=(fd, suffix), daemon=True)
            for fd, suffix in zip(self._fds, ("stdout", "stderr"), strict=True)
        ]
        for suffix in ("stdout", "stderr"):
            output.capture(f"{name}.{suffix}", b"")  # the file exists even if nothing comes
        for thread in self._threads:
            thread.start()

    def drain(self, timeout_s: float = 0.2) -> None:
        """Wait (bounded) until what the process wrote so far has been handed on, so that the
        function's lines come before the END line that follows them."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self._cond:
                busy = self._busy
            if not busy and all(_pending(fd) == 0 for fd in self._fds):
                return
            time.sleep(0.001)

    def join(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def _pump(self, fd: int, suffix: str) -> None:
        partial = b""
        while True:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                chunk = b""
            with self._cond:
                self._busy += 1
            try:
                if not chunk:
                    if partial:
                        self._emit(partial)
                    return
                self._output.capture(f"{self._name}.{suffix}", chunk)
                lines = (partial + chunk).split(b"\n")
                partial = lines.pop()
                for line in lines:
                    self._emit(line)
            finally:
                with self._cond:
                    self._busy -= 1

    def _emit(self, raw: bytes) -> None:
        self._on_line(raw.rstrip(b"\r").decode("utf-8", "replace"))


def _pending(fd: int) -> int:
    """Bytes waiting in a pipe (FIONREAD); 0 when it cannot tell."""
    try:
        buf = fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0")
    except OSError:
        return 0
    return int.from_bytes(buf, "little")
