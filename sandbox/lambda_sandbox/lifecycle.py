"""Init, Invoke and Shutdown of execution environments, as Lambda runs them.

One `Environment` is one execution environment: its isolated processes (host), its API server
and its telemetry subscribers. `run` drives invocations through environments: a timeout, a
runtime crash (an out-of-memory kill is one), an extension crash or a failed Init ends the
environment (Shutdown with reason `timeout` or `failure`), and the next invocation starts a new
one with a new Init, as Lambda does.
"""

from __future__ import annotations

import json
import math
import signal
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from lambda_sandbox import environ, layout, records
from lambda_sandbox.api_server import ApiServer
from lambda_sandbox.extensions_api import ExtensionsApi, FunctionInfo
from lambda_sandbox.logs import (
    LogPump,
    Output,
    Report,
    end_line,
    extension_line,
    init_report_line,
    init_start_line,
    report_line,
    start_line,
    timeout_line,
)
from lambda_sandbox.runtime_api import Invocation, RuntimeApi
from lambda_sandbox.runtimes import Runtime
from lambda_sandbox.telemetry_api import Subscription, TelemetryApi

INIT_TIMEOUT_S = 10.0
RUNTIME_TERM_S = 0.3  # the runtime's share of the shutdown budget before SIGKILL
SHUTDOWN_EXTERNAL_S = 2.0  # budget with any external extension
SHUTDOWN_INTERNAL_S = 0.5  # internal extensions only
TELEMETRY_FLUSH_S = 0.5  # delivering what is buffered before SHUTDOWN goes out
SHUTDOWN_SHORT_S = 0.1  # fault shutdown-short: what is left of the deadline when SHUTDOWN comes
# Fault switches that lose one kind of platform event on its way to subscribers (it still
# happens: stdout and --telemetry-out show it).
LOST_BY_FAULT = {"no-runtime-done": "platform.runtimeDone", "no-report": "platform.report"}
MIB = 1 << 20


class Proc(Protocol):
    pid: int
    stdout: BinaryIO
    stderr: BinaryIO

    def signal(self, sig: int) -> None: ...
    def wait(self, timeout: float | None = None) -> int | None: ...


class Sandbox(Protocol):
    def spawn(
        self, argv: list[str], env: dict[str, str], cwd: str = "/", name: str = ""
    ) -> Proc: ...
    def freeze(self) -> None: ...
    def thaw(self) -> None: ...
    def max_memory_bytes(self) -> int: ...
    def oom_kills(self) -> int: ...
    def kill_all(self) -> None: ...
    def close(self) -> None: ...


@dataclass(frozen=True)
class FunctionConfig:
    function_dir: Path
    handler: str
    runtime: Runtime
    function_name: str
    layers: tuple[Path, ...] = ()
    user_env: tuple[tuple[str, str], ...] = ()
    memory_mb: int = 128
    ephemeral_mb: int = 512
    timeout_s: float = 3.0
    efs: tuple[tuple[Path, str], ...] = ()
    faults: frozenset[str] = frozenset()  # test-only fault switches (cli.FAULTS)


# Builds the isolated environment for a config (host.Sandbox.create in production).
SandboxFactory = Callable[[FunctionConfig], Sandbox]


@dataclass(frozen=True)
class Failure:
    error_type: str
    message: str
    status: str = "error"  # runtimeDone/report status: error or timeout


@dataclass(frozen=True)
class InvokeResult:
    request_id: str
    status: str
    error_type: str
    reset: str  # shutdown reason when this invocation ends the environment, else ""


class Stopped(Exception):
    """The user asked the sandbox to stop (SIGINT or SIGTERM)."""


def exit_description(code: int | None) -> str:
    """How Lambda words a process's end: `exit status 1`, `signal: killed`."""
    if code is None:
        return "unknown"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            return f"signal: {-code}"
        words = {"SIGKILL": "killed", "SIGTERM": "terminated", "SIGSEGV": "segmentation fault"}
        return "signal: " + words.get(name, name.lower().removeprefix("sig"))
    return f"exit status {code}"


def error_body(error_type: str, message: str) -> bytes:
    return json.dumps({"errorType": error_type, "errorMessage": message}).encode()


class Environment:
    def __init__(
        self,
        config: FunctionConfig,
        output: Output,
        stop: threading.Event,
        factory: SandboxFactory,
    ) -> None:
        self.config = config
        self.output = output
        self.stop = stop
        self._factory = factory
        self._cond = threading.Condition()
        self.identity = environ.Identity(config.function_name, config.memory_mb, config.handler)
        self.runtime_api = RuntimeApi(self._cond)
        faults = config.faults
        next_faults = ("extensions-api-500-once", "extensions-api-close-once")
        self.ext_api = ExtensionsApi(
            self._cond,
            layout.extension_files(config.layers),
            FunctionInfo(config.function_name, "$LATEST", config.handler, environ.ACCOUNT_ID),
            next_fault=next((f for f in next_faults if f in faults), ""),
        )
        self.telemetry = TelemetryApi(
            self.ext_api.identify,
            self._subscribed,
            self._dropped,
            unsupported="telemetry-unsupported" in faults,
            late="telemetry-late" in faults,
        )
        self._lost = {kind for fault, kind in LOST_BY_FAULT.items() if fault in faults}
        self.sandbox: Sandbox | None = None
        self.server: ApiServer | None = None
        self.procs: dict[str, Proc] = {}
        self.exits: dict[str, int | None] = {}
        self.pumps: dict[str, LogPump] = {}
        self.shutting_down = False
        self.launch_failure: Failure | None = None
        self.frozen = False
        self.cold = True
        self.init_ms = 0.0

    # -- shared helpers --------------------------------------------------------------------

    def emit(
        self, event_type: str, record: Any, epoch_s: float | None = None, skip: str = ""
    ) -> None:
        event = records.event(event_type, record, time.time() if epoch_s is None else epoch_s)
        self.output.event(event)
        if event_type not in self._lost:
            self.telemetry.publish(event, skip)

    def _dropped(self, subscriber: str, count: int, size: int) -> None:
        # Not to the subscriber that refused: it would be one more batch it cannot take.
        self.emit(
            "platform.logsDropped", records.logs_dropped(subscriber, count, size), skip=subscriber
        )

    def _subscribed(self, sub: Subscription) -> None:
        self.emit(
            "platform.telemetrySubscription",
            records.telemetry_subscription(sub.extension, sub.types),
        )

    def _wait(self, ready: Callable[[], bool], deadline: float, interruptible: bool = True) -> bool:
        """Wait until `ready()` (True) or the monotonic deadline (False)."""
        with self._cond:
            while not ready():
                if interruptible and self.stop.is_set():
                    raise Stopped
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(min(remaining, 0.05))
            return True

    def _spawn(self, name: str, argv: Sequence[str], env: dict[str, str], cwd: str) -> None:
        assert self.sandbox is not None
        try:
            proc = self.sandbox.spawn(list(argv), env, cwd=cwd, name=name)
        except OSError as exc:
            kind = "Runtime.InvalidEntrypoint" if name == "runtime" else "Extension.LaunchError"
            with self._cond:
                self.launch_failure = Failure(kind, f"{argv[0]}: {exc.strerror or exc}")
                self._cond.notify_all()
            return
        self.procs[name] = proc
        kind = "function" if name == "runtime" else "extension"

        def on_line(text: str) -> None:
            self.output.line(text)
            self.emit(kind, text)

        self.pumps[name] = LogPump(name, (proc.stdout, proc.stderr), on_line, self.output)
        threading.Thread(target=self._watch, args=(name, proc), daemon=True).start()

    def _watch(self, name: str, proc: Proc) -> None:
        code = proc.wait(None)
        with self._cond:
            self.exits[name] = code
            self._cond.notify_all()

    def _drain(self) -> None:
        for pump in self.pumps.values():
            pump.drain()

    def failure(self) -> Failure | None:
        """What has gone wrong in this environment, if anything (call with the lock held)."""
        if self.launch_failure is not None:
            return self.launch_failure
        for ext in self.ext_api.all():
            if ext.error_type:
                kind = (
                    "Extension.InitError"
                    if ext.error_call == "init/error"
                    else "Extension.ExitError"
                )
                return Failure(kind, f"extension {ext.name} reported {ext.error_type}")
        if self.shutting_down:
            return None
        for name, code in self.exits.items():
            if name.startswith("extension-"):
                file = name.removeprefix("extension-")
                return Failure("Extension.Crash", f"extension {file}: {exit_description(code)}")
        if self.runtime_api.init_error is not None:
            err = self.runtime_api.init_error
            return Failure(err.error_type, _message_of(err.body), "error")
        if "runtime" in self.exits:
            code = self.exits["runtime"]
            if code == 0:
                return Failure("Runtime.ExitError", "Runtime exited without providing a reason")
            return Failure(
                "Runtime.ExitError", f"Runtime exited with error: {exit_description(code)}"
            )
        return None

    # -- Init -----------------------------------------------------------------------------

    def init(self) -> Failure | None:
        """Start the environment; None when Init succeeded, else why it failed."""
        # Making the environment (file system images, layer copies, cgroups) is not part of
        # Init, as downloading and unpacking code is not on Lambda: Init Duration and the Init
        # deadline start when the processes do.
        self.sandbox = self._factory(self.config)
        started = time.monotonic()
        started_epoch = time.time()
        runtime = self.config.runtime
        arn = f"arn:aws:lambda:{environ.REGION}::runtime:sandbox-{runtime.name}"
        self.output.line(init_start_line(runtime.version, arn))
        self.emit(
            "platform.initStart",
            records.init_start(self.config.function_name, runtime.version, arn),
            started_epoch,
        )
        self.server = ApiServer(
            [self.runtime_api.handle, self.ext_api.handle, self.telemetry.handle]
        )
        runtime_env = environ.function_env(
            self.identity,
            runtime,
            self.server.address,
            dict(self.config.user_env),
            environ.log_stream_name(started_epoch),
        )
        ext_env = environ.extension_env(runtime_env)
        deadline = started + INIT_TIMEOUT_S
        for name in self.ext_api.files:
            self._spawn(f"extension-{name}", [f"/opt/extensions/{name}"], ext_env, "/")

        def all_registered() -> bool:
            return all(self.ext_api.registered(n) is not None for n in self.ext_api.files)

        failure = self._init_step(all_registered, deadline)
        if failure is None:
            self._spawn("runtime", runtime.argv, runtime_env, "/var/task")
            failure = self._init_step(lambda: self.runtime_api.next_calls > 0, deadline)
        if failure is None:
            with self._cond:
                self.ext_api.registration_open = False
            self.emit("platform.initRuntimeDone", records.init_runtime_done("success"))
            failure = self._init_step(lambda: all(e.idle for e in self.ext_api.all()), deadline)
        self.init_ms = (time.monotonic() - started) * 1000
        self.telemetry.close_subscriptions()
        if failure is not None:
            if self.runtime_api.next_calls == 0:
                self.emit(
                    "platform.initRuntimeDone",
                    records.init_runtime_done(failure.status, failure.error_type),
                )
            self.emit(
                "platform.initReport",
                records.init_report(self.init_ms, failure.status, failure.error_type),
            )
            self._drain()
            self.output.line(init_report_line(self.init_ms, failure.status, failure.error_type))
            return failure
        self.emit("platform.initReport", records.init_report(self.init_ms, "success"))
        for ext in sorted(self.ext_api.all(), key=lambda e: (not e.external, e.name)):
            self.output.line(extension_line(ext.name, ext.events))
            self.emit("platform.extension", records.extension(ext.name, ext.events))
        return None

    def _init_step(self, done: Callable[[], bool], deadline: float) -> Failure | None:
        if self._wait(lambda: done() or self.failure() is not None, deadline):
            with self._cond:
                return self.failure()
        return Failure(
            "Sandbox.Timedout",
            f"Init phase timed out after {INIT_TIMEOUT_S:.2f} seconds",
            "timeout",
        )

    # -- Invoke ---------------------------------------------------------------------------

    def invoke(self, payload: bytes) -> InvokeResult:
        request_id = str(uuid.uuid4())
        timeout_s = self.config.timeout_s
        started = time.monotonic()
        started_epoch = time.time()
        deadline_ms = int(started_epoch * 1000 + timeout_s * 1000)
        deadline = started + timeout_s
        arn = self.identity.arn
        self.output.line(start_line(request_id))
        self.telemetry.invocation_started()
        trace = records.trace_id(started_epoch)
        self.emit("platform.start", records.start(request_id, trace), started_epoch)
        self.runtime_api.deliver(Invocation(request_id, payload, deadline_ms, arn, trace))
        self.ext_api.deliver(
            "INVOKE",
            {
                "eventType": "INVOKE",
                "deadlineMs": deadline_ms,
                "requestId": request_id,
                "invokedFunctionArn": arn,
                "tracing": {"type": "X-Amzn-Trace-Id", "value": trace},
            },
        )
        api = self.runtime_api

        def answered() -> bool:
            return api.outcome is not None or self.failure() is not None

        self._wait(answered, deadline)
        with self._cond:
            outcome = api.outcome
            failure = self.failure()
        status, error_type, reset = "success", "", ""
        responded_at = time.monotonic()
        spans: list[records.Record] = []
        if outcome is not None:
            responded_at = outcome.at
            status = "success" if outcome.ok else "error"
            error_type = outcome.error_type
            latency_ms = (outcome.at - started) * 1000
            spans.append(records.span("responseLatency", started_epoch, latency_ms))
            self.emit(
                "platform.runtimeDone",
                records.runtime_done(
                    request_id,
                    status,
                    latency_ms,
                    len(outcome.body),
                    [
                        *spans,
                        records.span("responseDuration", started_epoch + latency_ms / 1000, 0),
                    ],
                    error_type,
                ),
            )
            self.output.result(request_id, status, outcome.body)

            def finished() -> bool:
                return (api.waiting and all(e.idle for e in self.ext_api.subscribed("INVOKE"))) or (
                    self.failure() is not None
                )

            if not self._wait(finished, deadline):
                status, error_type, reset = "timeout", "Sandbox.Timedout", "timeout"
                self._drain()
                self.output.line(timeout_line(time.time(), request_id, timeout_s))
            else:
                with self._cond:
                    failure = self.failure()
                if failure is not None:
                    status, error_type, reset = failure.status, failure.error_type, "failure"
                    self._report_failure(request_id, failure, answer=False)
        elif failure is not None:
            status, error_type, reset = failure.status, failure.error_type, "failure"
            if self._oom_killed(failure):
                error_type = "Runtime.OutOfMemory"
            self._emit_runtime_done(request_id, failure.status, started, failure.error_type)
            self._report_failure(request_id, failure)
        else:
            status, error_type, reset = "timeout", "Sandbox.Timedout", "timeout"
            self._emit_runtime_done(request_id, "timeout", started, error_type)
            self._drain()
            message = f"Task timed out after {timeout_s:.2f} seconds"
            self.output.line(timeout_line(time.time(), request_id, timeout_s))
            self.output.result(
                request_id,
                "timeout",
                error_body("Sandbox.Timedout", f"RequestId: {request_id} Error: {message}"),
            )
        ended = time.monotonic()
        if outcome is not None:
            after = max(responded_at, api.last_next_at or responded_at)
            spans.append(
                records.span(
                    "extensionOverhead",
                    started_epoch + (after - started),
                    max(0.0, (ended - after) * 1000),
                )
            )
        self._drain()
        self.output.line(end_line(request_id))
        self._report(request_id, (ended - started) * 1000, status, error_type, spans)
        self.telemetry.invocation_ended(TELEMETRY_FLUSH_S)
        return InvokeResult(request_id, status, error_type, reset)

    def _oom_killed(self, failure: Failure) -> bool:
        return (
            failure.error_type == "Runtime.ExitError"
            and self.exits.get("runtime", 0) == -signal.SIGKILL
            and self.sandbox is not None
            and self.sandbox.oom_kills() > 0
        )

    def _emit_runtime_done(self, request_id: str, status: str, started: float, error: str) -> None:
        duration_ms = (time.monotonic() - started) * 1000
        self.emit(
            "platform.runtimeDone",
            records.runtime_done(request_id, status, duration_ms, 0, [], error),
        )

    def _report_failure(self, request_id: str, failure: Failure, answer: bool = True) -> None:
        message = f"RequestId: {request_id} Error: {failure.message}"
        self._drain()
        self.output.line(message)
        self.output.line(failure.error_type)
        if answer:  # the caller may already hold the runtime's response
            self.output.result(request_id, failure.status, error_body(failure.error_type, message))

    def _report(
        self,
        request_id: str,
        duration_ms: float,
        status: str,
        error_type: str,
        spans: list[records.Record],
    ) -> None:
        used = self.sandbox.max_memory_bytes() if self.sandbox is not None else 0
        report = Report(
            request_id=request_id,
            duration_ms=duration_ms,
            billed_ms=max(1, math.ceil(duration_ms)),
            memory_mb=self.config.memory_mb,
            max_memory_used_mb=math.ceil(used / MIB),
            init_duration_ms=self.init_ms if self.cold else None,
            status=status,
            error_type=error_type,
        )
        self.cold = False
        self.output.line(report_line(report))
        self.emit("platform.report", records.report(report, spans))

    def fail_init(self, payload: bytes, failure: Failure) -> InvokeResult:
        """The invocation that a failed Init was for: it fails with Init's error."""
        del payload  # never reaches a runtime
        request_id = str(uuid.uuid4())
        started = time.monotonic()
        self.output.line(start_line(request_id))
        self.emit("platform.start", records.start(request_id))
        self._report_failure(request_id, failure)
        self.output.line(end_line(request_id))
        self._report(
            request_id, (time.monotonic() - started) * 1000, failure.status, failure.error_type, []
        )
        return InvokeResult(request_id, failure.status, failure.error_type, "failure")

    # -- between invocations ----------------------------------------------------------------

    def freeze(self) -> None:
        assert self.sandbox is not None
        self.telemetry.hold()
        self.sandbox.freeze()
        self.frozen = True

    def thaw(self) -> None:
        if self.sandbox is not None and self.frozen:
            self.sandbox.thaw()
            self.frozen = False
        self.telemetry.release()

    # -- Shutdown --------------------------------------------------------------------------

    def shutdown(self, reason: str) -> None:
        """SIGTERM the runtime, SHUTDOWN to extensions, wait for their exit, kill the rest."""
        with self._cond:
            self.shutting_down = True
        try:
            if self.sandbox is not None:
                self.thaw()
                self._shutdown_processes(reason)
        finally:
            self.runtime_api.close()
            self.ext_api.close()
            self.telemetry.close(0.2)
            for pump in self.pumps.values():
                pump.join(1.0)
            if self.server is not None:
                self.server.close()
            if self.sandbox is not None:
                self.sandbox.close()

    def _shutdown_processes(self, reason: str) -> None:
        assert self.sandbox is not None
        self.telemetry.flush(TELEMETRY_FLUSH_S)
        exts = self.ext_api.all()
        if any(e.external for e in exts):
            budget = SHUTDOWN_EXTERNAL_S
        elif exts:
            budget = SHUTDOWN_INTERNAL_S
        else:
            budget = RUNTIME_TERM_S
        started = time.monotonic()
        deadline = started + budget
        runtime = self.procs.get("runtime")
        if runtime is not None and "runtime" not in self.exits:
            runtime.signal(signal.SIGTERM)
            if not self._wait(lambda: "runtime" in self.exits, started + RUNTIME_TERM_S, False):
                runtime.signal(signal.SIGKILL)
        gets_shutdown = {
            f"extension-{e.name}" for e in exts if e.external and "SHUTDOWN" in e.events
        }
        for name, proc in self.procs.items():
            if (
                name.startswith("extension-")
                and name not in gets_shutdown
                and name not in self.exits
            ):
                proc.signal(signal.SIGKILL)
        if "shutdown-short" in self.config.faults:
            deadline = time.monotonic() + SHUTDOWN_SHORT_S
        deadline_ms = int((time.time() + max(0.0, deadline - time.monotonic())) * 1000)
        self.ext_api.deliver(
            "SHUTDOWN",
            {"eventType": "SHUTDOWN", "shutdownReason": reason, "deadlineMs": deadline_ms},
        )
        self._wait(lambda: gets_shutdown <= set(self.exits), deadline, False)
        self._drain()
        self.sandbox.kill_all()
        self._wait(lambda: set(self.procs) <= set(self.exits), time.monotonic() + 1.0, False)


def _message_of(body: bytes) -> str:
    try:
        value = json.loads(body)
    except ValueError:
        return body.decode("utf-8", "replace")
    if isinstance(value, dict) and isinstance(value.get("errorMessage"), str):
        return str(value["errorMessage"])
    return body.decode("utf-8", "replace")


def run(
    config: FunctionConfig,
    payloads: Sequence[bytes],
    idle_ms: int,
    output: Output,
    stop: threading.Event,
    factory: SandboxFactory,
) -> list[InvokeResult]:
    """Run every invocation, starting environments as needed; shut the last one down."""
    results: list[InvokeResult] = []
    env: Environment | None = None
    try:
        for index, payload in enumerate(payloads):
            if stop.is_set():
                raise Stopped
            if env is None:
                env = Environment(config, output, stop, factory)
                failure = env.init()
                if failure is not None:
                    results.append(env.fail_init(payload, failure))
                    current, env = env, None
                    current.shutdown("failure")
                    continue
            result = env.invoke(payload)
            results.append(result)
            if result.reset:
                current, env = env, None
                current.shutdown(result.reset)
            elif idle_ms > 0 and index + 1 < len(payloads):
                env.freeze()
                stop.wait(idle_ms / 1000)
                env.thaw()
                if stop.is_set():
                    raise Stopped
    finally:
        if env is not None:
            env.shutdown("spindown")
    return results
