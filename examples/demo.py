"""`./build.sh demo`: the 10 MiB /tmp writer in lambda-sandbox with the layer, without and with
the purge; both report tables, one chart, and what they show.

Run after the layer is built (build.sh does it): python examples/demo.py [--invocations N]
"""

from __future__ import annotations

import argparse
import platform
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from tmp_monitor_tools import chart, report, sources

ROOT = Path(__file__).resolve().parent.parent
FUNCTION = ROOT / "examples" / "tmp-writer"
# The sandbox runs Node.js functions with the machine's Node.js 20.
RUNTIME = "nodejs20.x"
ARCH = {"x86_64": "x86_64", "aarch64": "arm64", "arm64": "arm64"}.get(platform.machine(), "x86_64")
RUNS = (("without purge", ()), ("with TMP_MONITOR_PURGE=always", ("TMP_MONITOR_PURGE=always",)))


@dataclass(frozen=True)
class Run:
    title: str
    rows: tuple[report.Row, ...]
    text: str


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="The 10 MiB /tmp writer in lambda-sandbox, without and with the purge."
    )
    parser.add_argument("--invocations", type=int, default=8, help="per run (default 8)")
    parser.add_argument("--memory", type=int, default=256, help="memory size in MB (default 256)")
    parser.add_argument("--out", type=Path, default=ROOT / "out", help="output folder (out/)")
    parser.add_argument(
        "--layer", type=Path, default=ROOT / "dist" / f"tmp-monitor-{ARCH}.zip", help="layer zip"
    )
    return parser.parse_args()


def _sandbox(args: argparse.Namespace, env: tuple[str, ...], telemetry: Path, log: Path) -> None:
    command = [
        str(Path(sys.executable).parent / "lambda-sandbox"),
        "run", str(FUNCTION),
        "--handler", "index.handler",
        "--runtime", RUNTIME,
        "--layer", str(args.layer),
        "--memory", str(args.memory),
        "--invocations", str(args.invocations),
        "--telemetry-out", str(telemetry),
    ]  # fmt: skip
    for item in env:
        command += ["--env", item]
    with log.open("w") as out:
        done = subprocess.run(command, stdout=out, stderr=subprocess.PIPE, text=True, check=False)
    if done.returncode != 0:
        sys.stderr.write(done.stderr)
        raise SystemExit(f"demo: lambda-sandbox failed (exit {done.returncode}); its log: {log}")


def _run(args: argparse.Namespace, index: int, title: str, env: tuple[str, ...]) -> Run:
    telemetry = args.out / f"demo-{index}.telemetry.jsonl"
    log = args.out / f"demo-{index}.log"
    telemetry.unlink(missing_ok=True)  # the sandbox appends to it
    _sandbox(args, env, telemetry, log)
    result = report.build(sources.read_file(telemetry))
    if not result.rows:
        raise SystemExit(f"demo: the monitor wrote no documents in {telemetry} (log: {log})")
    return Run(title, result.rows, report.table(result))


def _course(values: list[float]) -> str:
    first, last = values[0], values[-1]
    if round(first) == round(last):
        return f"stayed at {last:.0f} MB"
    return f"went from {first:.0f} MB to {last:.0f} MB"


def conclusion(kept: Run, purged: Run) -> str:
    """One sentence on what the two runs show, from their figures."""
    kept_used = [r.max_memory_used_mb for r in kept.rows if r.max_memory_used_mb is not None]
    purged_used = [r.max_memory_used_mb for r in purged.rows if r.max_memory_used_mb is not None]
    if not kept_used or not purged_used:
        return (
            "The platform's Max Memory Used is missing from a run, so the runs cannot be compared."
        )
    tmp_end = kept.rows[-1].tmp_used_bytes
    resident_end = kept.rows[-1].tmp_resident_bytes
    freed = sum(r.purged_bytes or 0 for r in purged.rows)
    rise_kept = kept_used[-1] - kept_used[0]
    rise_purged = purged_used[-1] - purged_used[0]
    effect = (
        "so the purge kept /tmp out of Max Memory Used"
        if rise_kept - rise_purged >= 5
        else "so the purge made no visible difference to Max Memory Used here"
    )
    return (
        f"Without purge /tmp grew to {report.human_bytes(tmp_end)} "
        f"({report.human_bytes(resident_end)} of it in memory) and Max Memory Used rose from "
        f"{kept_used[0]:.0f} MB to {kept_used[-1]:.0f} MB over {len(kept.rows)} invocations; "
        f"with TMP_MONITOR_PURGE=always the monitor freed {report.human_bytes(freed)} in all and "
        f"Max Memory Used {_course(purged_used)}, {effect}."
    )


def main() -> int:
    args = _arguments()
    if not args.layer.exists():
        raise SystemExit(f"demo: no layer at {args.layer}: build it with ./build.sh")
    args.out.mkdir(parents=True, exist_ok=True)
    runs = []
    for index, (title, env) in enumerate(RUNS, start=1):
        print(f"== {FUNCTION.name}, {args.invocations} invocations at {args.memory} MB, {title}")
        run = _run(args, index, title, env)
        print(run.text)
        print(f"(what CloudWatch Logs would hold: {args.out / f'demo-{index}.log'})\n")
        runs.append(run)
    png = args.out / "demo.png"
    chart.draw(png, [(run.title, chart.series(run.rows)) for run in runs])
    print(conclusion(*runs))
    print(f"Chart: {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
