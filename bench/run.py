"""`./build.sh bench`: measure every budget of SPEC section 8 in lambda-sandbox, with the built
layer, against baselines run in the same invocation, and print one table.

    python bench/run.py [--quick] [--json] [--save FILE] [--runs N] [--environments N]
                        [--invocations N] [--repeats N] [--only SUITE,...] [--layer ZIP]

Rows whose figure could not be measured say why, and make the exit status 1; a missed budget is a
result (MISS in the table), not a failure of the benchmark.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import shlex
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import post_runtime, purge_cost, ready, sampling, startup, transient, zip_size  # noqa: E402
from bench.common import DEFAULT, QUICK, Context, Settings  # noqa: E402
from bench.table import Row, as_json, failed, render  # noqa: E402

SUITES = ("zip", "ready", "startup", "post_runtime", "purge", "sampling", "transient")


def load_average() -> str:
    """Other work on the machine shares the CPUs the sandbox's quotas divide: say how much."""
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def machine() -> dict[str, str]:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "nproc": str(os.cpu_count()),
        "cpu": model,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "load_at_start": load_average(),
    }


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    top = argparse.ArgumentParser(prog="bench/run.py", description=__doc__.split("\n\n")[0])
    top.add_argument("--quick", action="store_true", help="one smoke iteration of every suite")
    top.add_argument("--json", action="store_true", help="JSON on stdout instead of the table")
    top.add_argument("--save", type=Path, metavar="FILE", help="also write the JSON to FILE")
    top.add_argument("--runs", type=int, help=f"fresh environments per variant ({DEFAULT.runs})")
    top.add_argument(
        "--environments",
        type=int,
        help=f"environments per steady-state series ({DEFAULT.environments})",
    )
    top.add_argument(
        "--invocations",
        type=int,
        help=f"invocations per steady-state environment ({DEFAULT.invocations})",
    )
    top.add_argument(
        "--repeats", type=int, help=f"invocations per transient lifetime ({DEFAULT.repeats})"
    )
    top.add_argument("--only", help=f"comma-separated suites of {','.join(SUITES)}")
    top.add_argument("--layer", type=Path, default=ROOT / "dist" / "tmp-monitor-x86_64.zip")
    return top.parse_args(argv)


def settings_of(args: argparse.Namespace) -> Settings:
    base = QUICK if args.quick else DEFAULT
    given = {
        name: getattr(args, name)
        for name in ("runs", "environments", "invocations", "repeats")
        if getattr(args, name) is not None
    }
    for name, value in given.items():
        if value < 1:
            raise SystemExit(f"bench/run.py: --{name} must be at least 1")
    return dataclasses.replace(base, **given)


def say(text: str) -> None:
    print(f"bench: {text}", file=sys.stderr, flush=True)


def _guarded(name: str, rows: list[Row], measure: Callable[[], list[Row]]) -> None:
    started = time.monotonic()
    say(f"{name} ...")
    try:
        got = measure()
    except Exception as exc:  # one suite's failure must not hide the others' figures
        got = [failed(name, f"suite {name}", "", f"{type(exc).__name__}: {exc}")]
    rows += got
    say(f"{name} done in {time.monotonic() - started:.0f} s")


def measure_all(ctx: Context, suites: Sequence[str]) -> list[Row]:
    rows: list[Row] = []
    subscription: dict[str, object] | None = None
    if "zip" in suites:
        _guarded("zip", rows, lambda: zip_size.measure(ctx))
    if "ready" in suites:

        def run_ready() -> list[Row]:
            nonlocal subscription
            found = ready.measure(ctx)
            subscription = found.subscription
            return found.rows

        _guarded("ready", rows, run_ready)
    if "startup" in suites:
        timeout = ready.timeout_ms(subscription)
        _guarded("startup", rows, lambda: startup.measure(ctx, timeout))
    if "post_runtime" in suites:
        _guarded("post_runtime", rows, lambda: post_runtime.measure(ctx))
    if "purge" in suites:
        _guarded("purge", rows, lambda: purge_cost.measure(ctx))
    if "sampling" in suites:
        _guarded("sampling", rows, lambda: sampling.measure(ctx))
    if "transient" in suites:
        _guarded("transient", rows, lambda: transient.measure(ctx))
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    settings = settings_of(args)
    suites = SUITES if not args.only else tuple(s.strip() for s in args.only.split(","))
    unknown = [s for s in suites if s not in SUITES]
    if unknown:
        raise SystemExit(f"bench/run.py: unknown suite {', '.join(unknown)}")
    if not args.layer.is_file():
        raise SystemExit(f"bench/run.py: no layer at {args.layer}: run ./build.sh layer first")
    command = "./build.sh bench" + "".join(f" {shlex.quote(a)}" for a in (argv or sys.argv[1:]))
    started = datetime.now(UTC)
    host = machine()
    with tempfile.TemporaryDirectory(prefix="tmp-monitor-bench-") as work:
        # A snapshot: a rebuild of dist/ during the benchmark must not mix two builds.
        layer = Path(work) / args.layer.name
        shutil.copyfile(args.layer, layer)
        ctx = Context(settings, layer, args.layer.resolve().parent, Path(work))
        rows = measure_all(ctx, suites)
    head = {
        "date": started.strftime("%Y-%m-%d %H:%M UTC"),
        "machine": {**host, "load_at_end": load_average()},
        "command": command,
        "settings": dataclasses.asdict(settings),
        "minutes": round((datetime.now(UTC) - started).total_seconds() / 60, 1),
    }
    document = json.dumps({**head, "rows": as_json(rows)}, indent=2)
    if args.save is not None:
        args.save.write_text(document + "\n")
    if args.json:
        print(document)
    else:
        m = head["machine"]
        print(
            f"{head['date']}, {m['nproc']} x {m['cpu']}, Linux {m['kernel']}: `{command}` "
            f"({head['minutes']} min; load average {m['load_at_start']} at start, "
            f"{m['load_at_end']} at the end)\n"
        )
        print(render(rows))
    return 1 if any(r.status == "ERROR" for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
