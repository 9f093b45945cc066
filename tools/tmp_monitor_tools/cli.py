"""`tmp-monitor report` and `tmp-monitor dashboard`."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from tmp_monitor import names

from . import chart, dashboard, report, sources

EXIT_BAD_INPUT = 2
EXIT_NOTHING = 1
EXIT_AWS = 3


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tmp-monitor", description="Read and chart what the tmp-monitor Lambda layer measured."
    )
    commands = parser.add_subparsers(dest="command", required=True)

    rep = commands.add_parser(
        "report",
        help="per-invocation table of /tmp, memory and Max Memory Used",
        description="Join the monitor's invocation and report documents by request id and print "
        "one line per invocation. SOURCE is a lambda-sandbox --telemetry-out file, the JSON of "
        "`aws logs filter-log-events`, or a log export (<ISO timestamp> <message> lines, gzip "
        "or not); or read a log group with --log-group.",
    )
    rep.add_argument("source", nargs="*", type=Path, metavar="SOURCE")
    rep.add_argument("--log-group", metavar="NAME", help="read this CloudWatch Logs group")
    rep.add_argument(
        "--since", default="1h", help="with --log-group: 30m, 1h, 2d or an ISO time (default 1h)"
    )
    rep.add_argument("--region", help="AWS region (default: the AWS configuration's)")
    rep.add_argument("--png", type=Path, metavar="FILE", help="also draw the chart to FILE")
    out = rep.add_mutually_exclusive_group()
    out.add_argument("--csv", action="store_true", help="CSV instead of the table (raw bytes)")
    out.add_argument("--json", action="store_true", help="JSON instead of the table")

    dash = commands.add_parser(
        "dashboard",
        help="create or update the CloudWatch dashboard of a function",
        description="Build the CloudWatch dashboard of one function for the namespace and "
        "dimensions its monitor is configured with, and save it with put_dashboard.",
    )
    dash.add_argument("--function-name", required=True, metavar="NAME")
    dash.add_argument("--region", help="AWS region (default: the AWS configuration's)")
    dash.add_argument(
        "--namespace",
        default=names.DEFAULT_NAMESPACE,
        help=f"TMP_MONITOR_NAMESPACE (default {names.DEFAULT_NAMESPACE})",
    )
    dash.add_argument(
        "--dimensions",
        default=names.DIM_FUNCTION_NAME,
        choices=[",".join(c) for c in dashboard.DIMENSION_CHOICES],
        metavar="DIMS",
        help="TMP_MONITOR_DIMENSIONS: FunctionName (default) or FunctionName,FunctionVersion",
    )
    dash.add_argument(
        "--function-version",
        metavar="V",
        help="chart this version only (needs --dimensions FunctionName,FunctionVersion)",
    )
    dash.add_argument(
        "--metrics",
        choices=["core", "all"],
        default="core",
        help="TMP_MONITOR_METRICS (default core): with core, the monitor's own time is read "
        "from the log group; all charts it and the other all-set metrics as metrics",
    )
    dash.add_argument("--memory-size", type=int, metavar="MB", help="draw the memory size line")
    dash.add_argument("--log-group", metavar="NAME", help="default /aws/lambda/FUNCTION")
    dash.add_argument("--dashboard-name", metavar="N", help="default tmp-monitor-FUNCTION")
    dash.add_argument("--print", action="store_true", help="print the body, do not call AWS")
    return parser


def _region(given: str | None) -> str:
    if given:
        return given
    import boto3

    region = boto3.session.Session().region_name
    if not region:
        raise SystemExit("tmp-monitor: no AWS region configured: give --region")
    return str(region)


class _ProgressBar:
    """A one-line progress bar on a terminal; silent when stderr is not one."""

    def __init__(self, stream: TextIO, label: str) -> None:
        self._stream = stream
        self._label = label
        self._drawn = False

    def __call__(self, progress: sources.Progress) -> None:
        if progress.pages < 2 or not self._stream.isatty():
            return
        filled = int(progress.fraction * 30)
        self._stream.write(
            f"\r{self._label} [{'#' * filled}{'.' * (30 - filled)}] "
            f"{progress.fraction:4.0%} {progress.pages} pages, {progress.events} events"
        )
        self._stream.flush()
        self._drawn = True

    def done(self) -> None:
        if self._drawn:
            self._stream.write("\n")


def _read(args: argparse.Namespace) -> sources.Logs:
    if args.log_group:
        import boto3

        now = datetime.now(UTC)
        start = sources.parse_since(args.since, now)
        client = boto3.client("logs", region_name=_region(args.region))
        bar = _ProgressBar(sys.stderr, f"reading {args.log_group}")
        try:
            return sources.read_log_group(
                client,
                args.log_group,
                int(start.timestamp() * 1000),
                int(now.timestamp() * 1000),
                on_page=bar,
            )
        finally:
            bar.done()
    return sources.merge([sources.read_file(path) for path in args.source])


def _report(args: argparse.Namespace, out: TextIO) -> int:
    if bool(args.source) == bool(args.log_group):
        print("tmp-monitor report: give SOURCE files or --log-group, not both", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        logs = _read(args)
    except (sources.InputError, ValueError) as exc:
        print(f"tmp-monitor report: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except Exception as exc:
        # boto3 is imported only for --log-group; its errors are the only others expected here.
        if type(exc).__module__.startswith("botocore"):
            print(f"tmp-monitor report: {args.log_group}: {exc}", file=sys.stderr)
            return EXIT_AWS
        raise
    result = report.build(logs)
    if not result.rows:
        where = args.log_group or ", ".join(map(str, args.source))
        why = (
            f"only {result.environment_samples} environment-level samples (multi-concurrency "
            "mode measures no single invocation)"
            if result.environment_samples
            else "no tmp-monitor documents (is the layer attached, and TMP_MONITOR_DISABLED unset?)"
        )
        print(f"tmp-monitor report: {where}: {why}", file=sys.stderr)
        return EXIT_NOTHING
    if args.csv:
        out.write(report.to_csv(result))
    elif args.json:
        out.write(report.to_json(result))
    else:
        out.write(report.table(result))
    if args.png:
        chart.draw(args.png, [("tmp-monitor report", chart.series(result.rows))])
        print(f"chart written to {args.png}", file=sys.stderr)
    return 0


def _dashboard(args: argparse.Namespace, out: TextIO) -> int:
    try:
        config = dashboard.Config(
            function_name=args.function_name,
            region=_region(args.region),
            namespace=args.namespace,
            dimensions=tuple(args.dimensions.split(",")),
            function_version=args.function_version,
            metrics=args.metrics,
            memory_size_mb=args.memory_size,
            log_group=args.log_group,
        )
    except ValueError as exc:
        print(f"tmp-monitor dashboard: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    body: dict[str, Any] = dashboard.build_body(config)
    if args.print:
        out.write(json.dumps(body, indent=2) + "\n")
        return 0
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    name = args.dashboard_name or dashboard.default_name(config)
    client = boto3.client("cloudwatch", region_name=config.region)
    try:
        messages = dashboard.put(client, name, json.dumps(body))
    except (BotoCoreError, ClientError) as exc:
        print(f"tmp-monitor dashboard: put_dashboard {name}: {exc}", file=sys.stderr)
        return EXIT_AWS
    for message in messages:
        print(f"tmp-monitor dashboard: CloudWatch says {message}", file=sys.stderr)
    print(f"dashboard {name} saved: {dashboard.console_url(config.region, name)}", file=out)
    return 0


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    args = _parser().parse_args(argv)
    stream = out if out is not None else sys.stdout
    if args.command == "report":
        return _report(args, stream)
    return _dashboard(args, stream)


if __name__ == "__main__":
    sys.exit(main())
