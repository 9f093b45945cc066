"""Entry point of the extension (`python -m tmp_monitor`): wires the parts together.

Order matters for the user's cold start: register first (the runtime starts only once every
extension has registered), subscribe (allowed only during Init), ask for the first event, and
only then import and build the rest while that first next is pending. The first event waits in
the queue until the runner is ready; Powertools' import, the slowest, goes on in a thread.
"""

from __future__ import annotations

import os

# The function's POWERTOOLS_* variables are not ours (SPEC 5): drop them before Powertools is
# imported (POWERTOOLS_DEBUG, for one, would make it log to stdout). The launcher drops them
# too; this keeps `python -m tmp_monitor` just as safe.
for _name in [n for n in os.environ if n.startswith("POWERTOOLS_")]:
    del os.environ[_name]

import logging  # noqa: E402
import queue  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from typing import Any  # noqa: E402

from tmp_monitor import config, names, telemetry  # noqa: E402
from tmp_monitor.extensions_api import ApiError, Client, NextCaller, RegisterResponse  # noqa: E402

log = logging.getLogger("tmp_monitor")


def main() -> int:
    started_ms = time.time_ns() // 1_000_000
    logging.basicConfig(stream=sys.stderr, format="[tmp-monitor] %(levelname)s %(message)s")
    cfg = config.load(os.environ, warn=log.warning)
    log.setLevel(cfg.log_level)
    api = os.environ.get("AWS_LAMBDA_RUNTIME_API", "127.0.0.1:9001")
    multi = bool(os.environ.get("AWS_LAMBDA_MAX_CONCURRENCY"))
    client = Client(api)
    events = ["SHUTDOWN"] if cfg.disabled or multi else ["INVOKE", "SHUTDOWN"]
    try:
        registered = client.register(names.EXTENSION_NAME, events)
    except ApiError as exc:
        log.error("could not register: %s", exc)
        return 1
    if cfg.disabled:
        from tmp_monitor.runner import run_disabled

        return run_disabled(client)
    items: queue.SimpleQueue[Any] = queue.SimpleQueue()
    telemetry_ok = False if multi else _subscribe(api, client, items)
    next_caller = NextCaller(client, items.put)
    next_caller.request()  # Init ends for us here; what follows overlaps the wait
    try:
        return _run(cfg, registered, next_caller, items, telemetry_ok, multi, started_ms)
    except Exception as exc:
        # Set-up failed after registering: stay out of the way until SHUTDOWN.
        log.error("the monitor is off for this environment: %r", exc)
        return _drain(items, next_caller)


def _subscribe(api: str, client: Client, items: queue.SimpleQueue[Any]) -> bool:
    listener = telemetry.start_listener(items.put)
    if listener is None:
        detail = "no address to listen on"
    else:
        log.debug("telemetry listener on %s", listener.uri)
        subscription = telemetry.subscribe(api, client.extension_id, listener.uri)
        if subscription.ok:
            return True
        detail = subscription.detail
    log.warning(
        "the Telemetry API is not available (%s): each invocation's document closes at the "
        "next event, without the platform's report, and the purge is off",
        detail,
    )
    return False


def _run(
    cfg: config.Config,
    registered: RegisterResponse,
    next_caller: NextCaller,
    items: queue.SimpleQueue[Any],
    telemetry_ok: bool,
    multi: bool,
    started_ms: int,
) -> int:
    import dataclasses

    from tmp_monitor import __version__, emf, purge, runner, sampler
    from tmp_monitor.monitor import Monitor

    emf.preload()  # Powertools' import runs beside ours
    if multi:
        log.warning(
            "AWS_LAMBDA_MAX_CONCURRENCY is set (multi-concurrency): no per-invocation documents "
            "and no purge; environment-level documents every %d s instead",
            int(runner.WINDOW_S),
        )
    purge_on = telemetry_ok and not multi and cfg.purge is not config.PurgeMode.OFF
    if not purge_on:
        cfg = dataclasses.replace(cfg, purge=config.PurgeMode.OFF)
    sampler_ = sampler.Sampler(warn=log.warning)
    memory_mb = int(os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE") or 128)
    period_ms = cfg.sample_ms or sampler.adaptive_period_ms(memory_mb)
    context = emf.Context(
        namespace=cfg.namespace,
        dimension_sets=cfg.dimension_sets,
        function_name=registered.get("functionName")
        or os.environ.get("AWS_LAMBDA_FUNCTION_NAME", ""),
        function_version=registered.get("functionVersion")
        or os.environ.get("AWS_LAMBDA_FUNCTION_VERSION", ""),
        monitor_version=__version__,
        metrics_all=cfg.metrics_all,
        purge_on=purge_on,
        memory_source=sampler_.memory_source,
    )
    log.debug(
        "%s; sampling every %.1f ms; telemetry %s", config.describe(cfg), period_ms, telemetry_ok
    )
    return runner.Runner(
        next_caller=next_caller,
        items=items,
        monitor=Monitor(start_wall_ms=started_ms),
        sampler=sampler_,
        sink=emf.EmfSink(context),
        purger=purge.make_purger(cfg, warn=log.warning),
        period_s=period_ms / 1000,
        telemetry_ok=telemetry_ok,
        multi_concurrency=multi,
        top_files=cfg.top_files,
    ).run()


def _drain(items: queue.SimpleQueue[Any], next_caller: NextCaller) -> int:
    """The monitor is off: answer events with next until SHUTDOWN."""
    from tmp_monitor.extensions_api import NextResult

    while True:
        item = items.get()
        if not isinstance(item, NextResult):
            continue  # telemetry: nobody to read it
        if item.event is None:
            return 1
        if item.event["eventType"] == "SHUTDOWN":
            return 0
        next_caller.request()


if __name__ == "__main__":
    sys.exit(main())
