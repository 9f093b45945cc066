"""Entry point of the extension (`python -m tmp_monitor`): wires the parts together."""

from __future__ import annotations

import os

# The function's POWERTOOLS_* variables are not ours (SPEC 5): drop them before Powertools is
# imported (POWERTOOLS_DEBUG, for one, would make it log to stdout).
for _name in [n for n in os.environ if n.startswith("POWERTOOLS_")]:
    del os.environ[_name]

import dataclasses  # noqa: E402
import logging  # noqa: E402
import queue  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

from tmp_monitor import __version__, config, emf, names, purge, runner, sampler, telemetry  # noqa: E402
from tmp_monitor.extensions_api import ApiError, Client, RegisterResponse  # noqa: E402
from tmp_monitor.monitor import Monitor  # noqa: E402

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
        return runner.run_disabled(client)
    try:
        return _run(cfg, api, client, registered, multi, started_ms)
    except Exception as exc:
        # Set-up failed after registering: stay out of the way until SHUTDOWN.
        log.error("the monitor is off for this environment: %r", exc)
        return runner.run_disabled(client)


def _run(
    cfg: config.Config,
    api: str,
    client: Client,
    registered: RegisterResponse,
    multi: bool,
    started_ms: int,
) -> int:
    items: queue.SimpleQueue[runner.Item] = queue.SimpleQueue()
    telemetry_ok = False
    if multi:
        log.warning(
            "AWS_LAMBDA_MAX_CONCURRENCY is set (multi-concurrency): no per-invocation documents "
            "and no purge; environment-level documents every %d s instead",
            int(runner.WINDOW_S),
        )
    else:
        listener = telemetry.start_listener(items.put)
        if listener is None:
            detail = "no address to listen on"
        else:
            log.debug("telemetry listener on %s", listener.uri)
            subscription = telemetry.subscribe(api, client.extension_id, listener.uri)
            telemetry_ok, detail = subscription.ok, subscription.detail
        if not telemetry_ok:
            log.warning(
                "the Telemetry API is not available (%s): each invocation's document closes at "
                "the next event, without the platform's report, and the purge is off",
                detail,
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
    loop = runner.Runner(
        client=client,
        items=items,
        monitor=Monitor(start_wall_ms=started_ms),
        sampler=sampler_,
        sink=emf.EmfSink(context),
        purger=purge.make_purger(cfg, warn=log.warning),
        period_s=period_ms / 1000,
        telemetry_ok=telemetry_ok,
        multi_concurrency=multi,
        top_files=cfg.top_files,
    )
    emf.preload()  # Powertools' import overlaps the wait for the first event
    return loop.run()


if __name__ == "__main__":
    sys.exit(main())
