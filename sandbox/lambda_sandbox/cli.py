"""`lambda-sandbox run FUNCTION_DIR ...`: arguments in, environments run, exit status out.

Exit status: 0 when every invocation ran (function errors, timeouts and out-of-memory kills are
results); 1 when the environment itself could not run (the message says what is missing);
2 for bad arguments; 128 + signal number when interrupted by SIGINT or SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import re
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from lambda_sandbox import lifecycle
from lambda_sandbox.lifecycle import FunctionConfig, Sandbox, Stopped
from lambda_sandbox.logs import Output
from lambda_sandbox.runtimes import NAMES, UnknownRuntime, resolve

FAULTS = {
    "telemetry-unsupported": "the Telemetry API answers every subscription 202 "
    "Telemetry.NotSupported, as the Runtime Interface Emulator does",
    "telemetry-late": "no telemetry goes out while an invocation runs: what it produced "
    "(platform.runtimeDone included) is delivered after its end",
    "no-runtime-done": "platform.runtimeDone is never delivered to subscribers",
    "no-report": "platform.report is never delivered to subscribers",
    "extensions-api-500-once": "each extension's first event/next is answered 500 when its "
    "event is due (the event stays queued)",
    "extensions-api-close-once": "each extension's first event/next has its connection closed, "
    "unanswered, when its event is due (the event stays queued)",
    "shutdown-short": f"SHUTDOWN comes with deadlineMs {int(lifecycle.SHUTDOWN_SHORT_S * 1000)} ms "
    "away, and the extensions are killed then",
}
_ENV_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_EFS_TARGET = re.compile(r"^/mnt/[A-Za-z0-9._-]+$")


class UsageError(Exception):
    pass


def _int_in(low: int, high: int) -> type[int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is not in {low}..{high}")
        return value

    return parse  # type: ignore[return-value]


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="lambda-sandbox", description="A local AWS Lambda execution environment."
    )
    commands = top.add_subparsers(dest="command", required=True)
    run = commands.add_parser(
        "run",
        help="run a function in a fresh execution environment",
        description="Run FUNCTION_DIR as Lambda would: Init, N invocations, Shutdown. stdout shows "
        "what CloudWatch Logs would; each invocation's result goes to stderr as a line "
        'RESULT {"time", "requestId", "status", "payload"}.',
    )
    run.add_argument("function_dir", type=Path, metavar="FUNCTION_DIR")
    run.add_argument("--handler", required=True)
    run.add_argument("--runtime", required=True, help=", ".join(NAMES))
    run.add_argument("--layer", action="append", type=Path, default=[], metavar="ZIP_OR_DIR")
    run.add_argument("--env", action="append", default=[], metavar="KEY=VALUE")
    run.add_argument("--memory", type=_int_in(128, 10240), default=128, metavar="MB")
    run.add_argument("--ephemeral-storage", type=_int_in(512, 10240), default=512, metavar="MB")
    run.add_argument("--timeout", type=_int_in(1, 900), default=3, metavar="SECONDS")
    run.add_argument("--invocations", type=_int_in(1, 1_000_000), default=None, metavar="N")
    run.add_argument(
        "--event",
        default=None,
        metavar="JSON_OR_@FILE",
        help="payload of every invocation; @FILE holding a JSON array gives one per invocation",
    )
    run.add_argument("--idle-ms", type=_int_in(0, 3_600_000), default=0, metavar="MS")
    run.add_argument("--efs", action="append", default=[], metavar="HOST_DIR:/mnt/NAME")
    run.add_argument("--telemetry-out", type=Path, default=None, metavar="FILE.jsonl")
    tests = run.add_argument_group("test-only options")
    tests.add_argument(
        "--capture-dir",
        type=Path,
        default=None,
        metavar="DIR",
        help="raw stdout/stderr of each process to DIR/<name>.stdout|.stderr "
        "(runtime, extension-<file name>), appended across environments",
    )
    tests.add_argument(
        "--fault",
        action="append",
        default=[],
        choices=sorted(FAULTS),
        help="; ".join(f"{k}: {v}" for k, v in FAULTS.items()),
    )
    return top


def payloads(event: str | None, invocations: int | None) -> list[bytes]:
    """One payload per invocation. A JSON array from @FILE is cycled through if N is larger."""
    if event is None:
        items = [b"{}"]
        per_invocation = False
    elif event.startswith("@"):
        path = Path(event[1:])
        try:
            text = path.read_text(encoding="utf-8")
            value = json.loads(text)
        except (OSError, ValueError) as exc:
            raise UsageError(f"--event {event}: {exc}") from None
        per_invocation = isinstance(value, list)
        if per_invocation:
            if not value:
                raise UsageError(f"--event {event}: the array holds no event")
            items = [json.dumps(v).encode() for v in value]
        else:
            items = [text.encode()]
    else:
        try:
            json.loads(event)
        except ValueError as exc:
            raise UsageError(f"--event is not JSON: {exc}") from None
        items = [event.encode()]
        per_invocation = False
    count = invocations if invocations is not None else (len(items) if per_invocation else 1)
    return [items[i % len(items)] for i in range(count)]


def config_of(args: argparse.Namespace) -> FunctionConfig:
    function_dir: Path = args.function_dir.resolve()
    try:
        if not function_dir.is_dir():
            raise UsageError(f"FUNCTION_DIR {args.function_dir} is not a folder")
    except OSError as exc:
        raise UsageError(f"FUNCTION_DIR {args.function_dir}: {exc.strerror}") from None
    for layer in args.layer:
        if not layer.exists():
            raise UsageError(f"--layer {layer}: no such file or folder")
    env: list[tuple[str, str]] = []
    for item in args.env:
        key, sep, value = item.partition("=")
        if not sep or not _ENV_KEY.match(key):
            raise UsageError(f"--env {item!r}: expected KEY=VALUE")
        env.append((key, value))
    efs: list[tuple[Path, str]] = []
    for item in args.efs:
        host_dir, sep, target = item.rpartition(":")
        if not sep or not _EFS_TARGET.match(target):
            raise UsageError(f"--efs {item!r}: expected HOST_DIR:/mnt/NAME")
        if not Path(host_dir).is_dir():
            raise UsageError(f"--efs {item!r}: {host_dir} is not a folder")
        efs.append((Path(host_dir).resolve(), target))
    try:
        runtime = resolve(args.runtime, args.handler, function_dir)
    except UnknownRuntime as exc:
        raise UsageError(str(exc)) from None
    return FunctionConfig(
        function_dir=function_dir,
        handler=args.handler,
        runtime=runtime,
        function_name=function_dir.name,
        layers=tuple(layer.resolve() for layer in args.layer),
        user_env=tuple(env),
        memory_mb=args.memory,
        ephemeral_mb=args.ephemeral_storage,
        timeout_s=float(args.timeout),
        efs=tuple(efs),
        faults=frozenset(args.fault),
    )


def host_sandbox(config: FunctionConfig) -> Sandbox:
    from lambda_sandbox import host

    spec = host.HostSpec(
        function_dir=config.function_dir,
        layers=config.layers,
        runtime_files=config.runtime.files,
        lang_files=config.runtime.lang_files,
        lang_name=config.runtime.name,
        memory_mb=config.memory_mb,
        ephemeral_mb=config.ephemeral_mb,
        efs=config.efs,
    )
    sandbox: Sandbox = host.Sandbox.create(spec)
    return sandbox


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    from lambda_sandbox import host, preflight

    try:
        preflight.check()
    except host.HostError as exc:
        print(f"lambda-sandbox: cannot run: {exc}", file=sys.stderr)
        return 1
    try:
        config = config_of(args)
        events = payloads(args.event, args.invocations)
    except UsageError as exc:
        print(f"lambda-sandbox: error: {exc}", file=sys.stderr)
        return 2
    stop = threading.Event()
    caught: list[int] = []

    def on_signal(signum: int, frame: FrameType | None) -> None:
        caught.append(signum)
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    # Every API call hops between threads; CPython's default 5 ms GIL switch interval would
    # show up as platform latency in each invocation's duration.
    sys.setswitchinterval(0.0002)
    output = Output(sys.stdout, sys.stderr, args.telemetry_out, args.capture_dir)
    try:
        lifecycle.run(config, events, args.idle_ms, output, stop, host_sandbox)
    except Stopped:
        pass
    except host.HostError as exc:
        print(f"lambda-sandbox: cannot run: {exc}", file=sys.stderr)
        return 1
    finally:
        output.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if caught:
        print(f"lambda-sandbox: interrupted by {signal.Signals(caught[0]).name}", file=sys.stderr)
        return 128 + caught[0]
    return 0
