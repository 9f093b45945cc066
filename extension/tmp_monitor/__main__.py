"""Entry point of the extension (`python -m tmp_monitor`): wires the parts together.

Order matters for the user's cold start: register first, before any other import (the runtime
starts only once every extension has registered: tmp_monitor.register); then subscribe (allowed
only during Init) and ask for the first event, through modules that import only built-ins (Init
ends only when every extension has asked); then load the configuration, build the sampler and
the loop, and import Powertools (the slowest, needed only for the first document) in a thread.
That set-up waits for the first event where the CPU share allows (set_up_after_init): the
runtime's Init and ours share it, so any CPU we use before Init ends is added to the cold start.
"""

from __future__ import annotations

import os

# The function's POWERTOOLS_* variables are not ours (SPEC 5): drop them before Powertools is
# imported (POWERTOOLS_DEBUG, for one, would make it log to stdout). The launcher drops them
# too; this keeps `python -m tmp_monitor` just as safe.
for _name in [n for n in os.environ if n.startswith("POWERTOOLS_")]:
    del os.environ[_name]

from tmp_monitor import register  # noqa: E402

# typing's TYPE_CHECKING, without importing typing (10 ms) before registering: mypy reads any
# constant of that name as true.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import logging
    import queue
    from typing import Any

    from tmp_monitor import config
    from tmp_monitor.emf import Context, EmfSink
    from tmp_monitor.extensions_api import Client, NextCaller, RegisterResponse
    from tmp_monitor.purge import Purger
    from tmp_monitor.telemetry import Listener


# How long an import waits for a next to be sent before it goes ahead (the next thread retries a
# refused one: that must not hold the set-up back).
SENT_WAIT_S = 0.5


# CPU time of the set-up after the first next (config, logging, sampler, loop; not Powertools):
# 48 ms measured in lambda-sandbox at 1,769 MB (median of 6, 2-core x86_64 VM under load).
SET_UP_CPU_MS = 50.0
# Must equal sampler.CPU_SHARE_MB and sampler.TRANSIENT_MS (tests/test_monitor_startup.py checks):
# sampler's imports are what this decides the timing of.
CPU_SHARE_MB = 1769
TRANSIENT_MS = ((128, 250.0), (1769, 100.0))


def set_up_after_init(memory_mb: int) -> bool:
    """Whether to set up only once Init is over (at the first event), off the cold start.

    Yes when the set-up, at the environment's CPU share, takes at most half the lifetime of
    the shortest transient /tmp file the first invocation must still catch (SPEC 8): at
    1,769 MB 50 ms of 100. At 128 MB it would take 700 ms, and the set-up goes before the
    first event instead, at the cost of the cold start.
    """
    share = min(max(memory_mb, 1), CPU_SHARE_MB) / CPU_SHARE_MB
    (low_mb, low_ms), (high_mb, high_ms) = TRANSIENT_MS
    fraction = min(max((memory_mb - low_mb) / (high_mb - low_mb), 0.0), 1.0)
    lifetime_ms = low_ms + (high_ms - low_ms) * fraction
    return SET_UP_CPU_MS / share <= lifetime_ms / 2


def _memory_mb() -> int:
    try:
        return int(os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE") or 128)
    except ValueError:
        return 128


def main() -> int:
    api = os.environ.get("AWS_LAMBDA_RUNTIME_API", "127.0.0.1:9001")
    multi = bool(os.environ.get("AWS_LAMBDA_MAX_CONCURRENCY"))
    shutdown_only = register.disabled() or multi
    try:
        extension_id, body = register.register(
            api, ["SHUTDOWN"] if shutdown_only else ["INVOKE", "SHUTDOWN"]
        )
    except register.RegisterError as exc:
        os.write(2, f"[tmp-monitor] ERROR could not register: {exc}\n".encode())
        return 1
    return _after_register(api, extension_id, body, shutdown_only, multi)


def _after_register(
    api: str, extension_id: str, body: bytes, shutdown_only: bool, multi: bool
) -> int:
    import _queue
    import time

    from tmp_monitor.extensions_api import Client, NextCaller

    started_ms = time.time_ns() // 1_000_000
    client = Client(api)
    client.extension_id = extension_id
    items: queue.SimpleQueue[Any] = _queue.SimpleQueue()
    if shutdown_only and not multi:
        return _disabled(client)
    # Only the subscription (allowed only during Init) comes before the first next, through
    # modules that import nothing but built-ins: Init ends only when every extension has asked
    # for its first event, so whatever we do before it is the user's cold start.
    after_init = not multi and set_up_after_init(_memory_mb())
    listener, failure = (None, None) if multi else _subscribe(api, client, items, after_init)
    telemetry_ok = listener is not None and failure is None
    next_caller = NextCaller(client, items.put)
    next_caller.request()  # Init ends for us here
    next_caller.wait_sent(1, SENT_WAIT_S)
    if after_init:
        # The runtime and we share the environment's CPU share: what we do before Init ends
        # slows the runtime's own Init, whenever we ask next. (In multi-concurrency mode the
        # first event is SHUTDOWN: the environment is sampled from the start instead.)
        next_caller.wait_first_answer()
        if listener is not None:
            listener.release()
    import logging
    import sys

    from tmp_monitor import config

    log = logging.getLogger("tmp_monitor")
    logging.basicConfig(stream=sys.stderr, format="[tmp-monitor] %(levelname)s %(message)s")
    try:
        cfg = config.load(os.environ, warn=log.warning)
        log.setLevel(cfg.log_level)
        if failure is not None:
            log.warning(
                "the Telemetry API is not available (%s): each invocation's document closes at "
                "the next event, without the platform's report, and the purge is off",
                failure,
            )
        if cfg.disabled:
            # (register.disabled read the variable apart from config.load: they agree.)
            return _drain(items, next_caller)
        registered = _registered(body)
        return _run(cfg, registered, next_caller, items, telemetry_ok, multi, started_ms, log)
    except Exception as exc:
        # Set-up failed after registering: stay out of the way until SHUTDOWN.
        log.error("the monitor is off for this environment: %r", exc)
        return _drain(items, next_caller)


def _disabled(client: Client) -> int:
    """TMP_MONITOR_DISABLED: registered for SHUTDOWN only; Init is not ours to make longer."""
    import logging
    import sys

    from tmp_monitor import config
    from tmp_monitor.runner import run_disabled

    log = logging.getLogger("tmp_monitor")
    logging.basicConfig(stream=sys.stderr, format="[tmp-monitor] %(levelname)s %(message)s")
    log.setLevel(config.load(os.environ, warn=log.warning).log_level)
    return run_disabled(client)


def _registered(body: bytes) -> RegisterResponse:
    import json

    try:
        registered: RegisterResponse = json.loads(body or b"{}")
    except ValueError:
        return {}  # type: ignore[typeddict-item]
    return registered


def _subscribe(
    api: str, client: Client, items: queue.SimpleQueue[Any], hold: bool
) -> tuple[Listener | None, str | None]:
    """(the listener, why the subscription failed). Logging is not imported yet: the caller
    says why. hold: the listener holds batches unparsed until released."""
    from tmp_monitor import telemetry

    listener = telemetry.start_listener(items.put, hold)
    if listener is None:
        return None, "no address to listen on"
    subscription = telemetry.subscribe(api, client.extension_id, listener.uri)
    if subscription.ok:
        return listener, None
    listener.release()  # nothing will come: nothing to hold
    return listener, subscription.detail


def _run(
    cfg: config.Config,
    registered: RegisterResponse,
    next_caller: NextCaller,
    items: queue.SimpleQueue[Any],
    telemetry_ok: bool,
    multi: bool,
    started_ms: int,
    log: logging.Logger,
) -> int:
    from tmp_monitor import __version__, config, emf, runner, sampler
    from tmp_monitor.monitor import Monitor

    if multi:
        log.warning(
            "AWS_LAMBDA_MAX_CONCURRENCY is set (multi-concurrency): no per-invocation documents "
            "and no purge; environment-level documents every %d s instead",
            int(runner.WINDOW_S),
        )
    purge_on = telemetry_ok and not multi and cfg.purge is not config.PurgeMode.OFF
    sampler_ = sampler.Sampler(warn=log.warning)
    memory_mb = _memory_mb()
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
        next_caller=next_caller,
        items=items,
        monitor=Monitor(start_wall_ms=started_ms),
        sampler=sampler_,
        sink=_sink(context),
        purger=_purger(cfg, log) if purge_on else None,
        period_s=period_ms / 1000,
        telemetry_ok=telemetry_ok,
        multi_concurrency=multi,
        top_files=cfg.top_files,
    )
    return loop.run()


def _sink(context: Context) -> EmfSink:
    """The sink, with Powertools imported in a thread from now on (the first emit waits)."""
    from tmp_monitor import emf

    return emf.EmfSink(context, preload=emf.preload())


def _purger(cfg: config.Config, log: logging.Logger) -> Purger:
    from tmp_monitor import purge

    return purge.make_purger(cfg, root="/tmp", warn=log.warning)


def _drain(items: queue.SimpleQueue[Any], next_caller: NextCaller) -> int:
    """The monitor is off: answer events with next until SHUTDOWN."""
    from tmp_monitor.extensions_api import NextResult

    if not next_caller.pending:
        next_caller.request()
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
    raise SystemExit(main())
