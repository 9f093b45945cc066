"""The monitor's configuration: the `TMP_MONITOR_*` variables of SPEC section 5.

`load` reads only the mapping it is given, and of it only `TMP_MONITOR_*` names: the function's
own settings (`POWERTOOLS_*` and the rest) never change the monitor. It never raises. A value
it cannot use gives exactly one line through `warn`, naming the variable, the bad value and what
is done instead; a bad value of a purge variable (`PURGE`, `PURGE_THRESHOLD_MB`, `KEEP`,
`DRY_RUN`) turns the purge off, any other falls back to its default. A `TMP_MONITOR_*` name that
is not a setting (a typo, most likely) is warned about, ignored, and turns the purge off too: a
misspelt `KEEP` or `DRY_RUN` would otherwise purge more than the user asked.

How values are read:

- blanks around a value are ignored, and an empty value is the same as no variable;
- booleans: `true`/`false`, `1`/`0`, `yes`/`no`, in any case;
- words (`off`, `core`, `debug`, `FunctionName`...) in any case;
- integers: ASCII digits only (no sign, no `_`, no other scripts' digits);
- `PURGE_THRESHOLD_MB`: a decimal number of MiB above 0, fraction and exponent allowed
  (`0.5`, `1e3`), not `inf` or `nan`; rounded up to whole bytes;
- `NAMESPACE`: 1 to 255 of the characters CloudWatch allows in a namespace (ASCII letters,
  digits, space and `. - _ / # :`), not starting with the reserved `AWS/`;
- `DIMENSIONS`: `FunctionName`, or `FunctionName` and `FunctionVersion` separated by a comma;
- `KEEP`: comma-separated patterns, see `tmp_monitor.keep`.
"""

from __future__ import annotations

import enum
import logging
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final

from tmp_monitor import keep as keep_patterns
from tmp_monitor import names

__all__ = ["MIB", "Config", "PurgeMode", "describe", "load"]

MIB: Final = 1 << 20
SAMPLE_MS_RANGE: Final = (5, 10_000)
TOP_FILES_MAX: Final = 50
DEFAULT_THRESHOLD_MB: Final = 100

_ONE_SET: Final = ((names.DIM_FUNCTION_NAME,),)
_TWO_SETS: Final = (
    (names.DIM_FUNCTION_NAME,),
    (names.DIM_FUNCTION_NAME, names.DIM_FUNCTION_VERSION),
)
_NAMESPACE: Final = re.compile(r"[0-9A-Za-z .\-_/#:]{1,255}")
_INTEGER: Final = re.compile(r"[0-9]{1,9}")  # short enough that int() never refuses it
_NUMBER: Final = re.compile(r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]{1,4})?")
_TRUE: Final = frozenset({"true", "1", "yes"})
_FALSE: Final = frozenset({"false", "0", "no"})
_LOG_LEVELS: Final = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "warn": logging.WARNING,
    "error": logging.ERROR,
}
_SHOWN_CHARS: Final = 60
_PURGE_OFF: Final = "the purge is off"


class PurgeMode(enum.Enum):
    OFF = "off"
    ALWAYS = "always"
    THRESHOLD = "threshold"


@dataclass(frozen=True, slots=True)
class Config:
    disabled: bool = False
    namespace: str = names.DEFAULT_NAMESPACE
    dimension_sets: tuple[tuple[str, ...], ...] = _ONE_SET
    sample_ms: int | None = None  # None: the adaptive period
    purge: PurgeMode = PurgeMode.OFF
    purge_threshold_bytes: int = DEFAULT_THRESHOLD_MB * MIB  # with PurgeMode.THRESHOLD
    keep: keep_patterns.KeepList = keep_patterns.DEFAULT_KEEP_LIST
    dry_run: bool = False
    top_files: int = 0
    metrics_all: bool = False  # TMP_MONITOR_METRICS=all
    log_level: int = logging.WARNING  # a `logging` level


def _shown(raw: str) -> str:
    if len(raw) > _SHOWN_CHARS:
        return f"{raw[:_SHOWN_CHARS]!r}... ({len(raw)} characters)"
    return repr(raw)


def _bool(text: str) -> bool | None:
    word = text.lower()
    return True if word in _TRUE else False if word in _FALSE else None


def _integer(text: str, low: int, high: int) -> int | None:
    if _INTEGER.fullmatch(text) is None:
        return None
    number = int(text)
    return number if low <= number <= high else None


def _threshold_bytes(text: str) -> int | None:
    if _NUMBER.fullmatch(text) is None:
        return None
    size = float(text) * MIB
    return math.ceil(size) if 0 < size < math.inf else None


def _namespace(text: str) -> str | None:
    ok = _NAMESPACE.fullmatch(text) is not None and not text.startswith("AWS/")
    return text if ok else None


def _dimension_sets(text: str) -> tuple[tuple[str, ...], ...] | None:
    items = sorted(item.strip().lower() for item in text.split(",") if item.strip())
    if items == [names.DIM_FUNCTION_NAME.lower()]:
        return _ONE_SET
    if items == sorted(n.lower() for n in _TWO_SETS[1]):
        return _TWO_SETS
    return None


def _purge_mode(text: str) -> PurgeMode | None:
    word = text.lower()
    return next((mode for mode in PurgeMode if mode.value == word), None)


_KNOWN: Final = frozenset(
    {
        names.ENV_DISABLED,
        names.ENV_NAMESPACE,
        names.ENV_DIMENSIONS,
        names.ENV_SAMPLE_MS,
        names.ENV_PURGE,
        names.ENV_PURGE_THRESHOLD_MB,
        names.ENV_KEEP,
        names.ENV_DRY_RUN,
        names.ENV_TOP_FILES,
        names.ENV_METRICS,
        names.ENV_LOG_LEVEL,
    }
)


def load(env: Mapping[str, str], warn: Callable[[str], None]) -> Config:
    """The configuration that env's TMP_MONITOR_* variables ask for; warns once per bad one."""

    def value(name: str) -> str | None:
        text = env.get(name, "").strip()
        return text or None

    def bad(name: str, expected: str, instead: str) -> None:
        warn(f"{name}={_shown(env[name])} is not {expected}; {instead}")

    defaults = Config()
    purge_ok = True
    # A misspelt KEEP or DRY_RUN would purge more than the user asked: fail safe.
    for name in sorted(n for n in env if n.startswith("TMP_MONITOR_") and n not in _KNOWN):
        warn(f"{_shown(name)} is not a tmp-monitor setting; ignored, and {_PURGE_OFF}")
        purge_ok = False

    disabled = defaults.disabled
    if (text := value(names.ENV_DISABLED)) is not None:
        parsed_bool = _bool(text)
        if parsed_bool is None:
            bad(names.ENV_DISABLED, "true or false", "the monitor runs")
        else:
            disabled = parsed_bool

    namespace = defaults.namespace
    if (text := value(names.ENV_NAMESPACE)) is not None:
        parsed_ns = _namespace(text)
        if parsed_ns is None:
            bad(
                names.ENV_NAMESPACE,
                "1 to 255 letters, digits, spaces or . - _ / # : (not starting with AWS/)",
                f"using {names.DEFAULT_NAMESPACE!r}",
            )
        else:
            namespace = parsed_ns

    dimension_sets = defaults.dimension_sets
    if (text := value(names.ENV_DIMENSIONS)) is not None:
        parsed_dims = _dimension_sets(text)
        if parsed_dims is None:
            bad(
                names.ENV_DIMENSIONS,
                f"{names.DIM_FUNCTION_NAME} or {names.DIM_FUNCTION_NAME},"
                f"{names.DIM_FUNCTION_VERSION}",
                f"using {names.DIM_FUNCTION_NAME}",
            )
        else:
            dimension_sets = parsed_dims

    sample_ms = defaults.sample_ms
    if (text := value(names.ENV_SAMPLE_MS)) is not None:
        low, high = SAMPLE_MS_RANGE
        sample_ms = _integer(text, low, high)
        if sample_ms is None:
            bad(
                names.ENV_SAMPLE_MS, f"an integer from {low} to {high}", "using the adaptive period"
            )

    purge = defaults.purge
    if (text := value(names.ENV_PURGE)) is not None:
        parsed_mode = _purge_mode(text)
        if parsed_mode is None:
            bad(names.ENV_PURGE, "off, always or threshold", _PURGE_OFF)
            purge_ok = False
        else:
            purge = parsed_mode

    threshold = defaults.purge_threshold_bytes
    if (text := value(names.ENV_PURGE_THRESHOLD_MB)) is not None:
        parsed_threshold = _threshold_bytes(text)
        if parsed_threshold is None:
            bad(names.ENV_PURGE_THRESHOLD_MB, "a number of MiB above 0", _PURGE_OFF)
            purge_ok = False
        else:
            threshold = parsed_threshold

    keep = defaults.keep
    if (text := value(names.ENV_KEEP)) is not None:
        try:
            keep = keep_patterns.parse(text)
        except ValueError as error:
            bad(names.ENV_KEEP, f"a list of keep patterns ({error})", _PURGE_OFF)
            purge_ok = False

    dry_run = defaults.dry_run
    if (text := value(names.ENV_DRY_RUN)) is not None:
        parsed_bool = _bool(text)
        if parsed_bool is None:
            bad(names.ENV_DRY_RUN, "true or false", _PURGE_OFF)
            purge_ok = False
        else:
            dry_run = parsed_bool

    top_files = defaults.top_files
    if (text := value(names.ENV_TOP_FILES)) is not None:
        parsed_top = _integer(text, 0, TOP_FILES_MAX)
        if parsed_top is None:
            bad(names.ENV_TOP_FILES, f"an integer from 0 to {TOP_FILES_MAX}", "naming no files")
        else:
            top_files = parsed_top

    metrics_all = defaults.metrics_all
    if (text := value(names.ENV_METRICS)) is not None:
        if text.lower() not in ("core", "all"):
            bad(names.ENV_METRICS, "core or all", "using core")
        else:
            metrics_all = text.lower() == "all"

    log_level = defaults.log_level
    if (text := value(names.ENV_LOG_LEVEL)) is not None:
        if text.lower() not in _LOG_LEVELS:
            bad(names.ENV_LOG_LEVEL, "debug, info, warning or error", "using warning")
        else:
            log_level = _LOG_LEVELS[text.lower()]

    return Config(
        disabled=disabled,
        namespace=namespace,
        dimension_sets=dimension_sets,
        sample_ms=sample_ms,
        purge=purge if purge_ok else PurgeMode.OFF,
        purge_threshold_bytes=threshold,
        keep=keep,
        dry_run=dry_run,
        top_files=top_files,
        metrics_all=metrics_all,
        log_level=log_level,
    )


def describe(config: Config) -> str:
    """The configuration on one line, for the debug log."""
    dimensions = ";".join(",".join(s) for s in config.dimension_sets)
    sample = "adaptive" if config.sample_ms is None else f"{config.sample_ms}ms"
    threshold = f"{config.purge_threshold_bytes / MIB:g}MiB"
    return (
        f"config: disabled={config.disabled} namespace={config.namespace!r}"
        f" dimensions={dimensions} sample={sample} purge={config.purge.value}"
        f" threshold={threshold} dry_run={config.dry_run} keep={list(config.keep.patterns)!r}"
        f" top_files={config.top_files} metrics={'all' if config.metrics_all else 'core'}"
        f" log_level={logging.getLevelName(config.log_level).lower()}"
    )
