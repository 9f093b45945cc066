"""Configuration over arbitrary values: load never raises, warns at most once per variable and
never for a good value, and any bad purge variable leaves the purge off."""

from __future__ import annotations

import os

from hypothesis import given, settings
from hypothesis import strategies as st

from tmp_monitor import config, names
from tmp_monitor.config import PurgeMode

VARIABLES = [
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
]
PURGE_VARIABLES = {
    names.ENV_PURGE,
    names.ENV_PURGE_THRESHOLD_MB,
    names.ENV_KEEP,
    names.ENV_DRY_RUN,
}
# Values that look like good ones, so that good and bad both come up often.
NEAR = st.sampled_from(
    [
        "true",
        "FALSE",
        "1",
        "0",
        "off",
        "always",
        "threshold",
        "core",
        "all",
        "debug",
        "5",
        "50",
        "100",
        "0.5",
        "1e3",
        "-1",
        "inf",
        "*.db",
        "/abs",
        "a/../b",
        "FunctionName",
        "FunctionName,FunctionVersion",
        " ",
        "",
        "TmpMonitor",
        "AWS/x",
    ]
)
values = st.one_of(NEAR, st.text(max_size=40), st.binary(max_size=40).map(os.fsdecode))
environments = st.dictionaries(st.sampled_from(VARIABLES), values)


def bad_variables(env: dict[str, str]) -> set[str]:
    """The variables whose value, alone, draws a warning."""
    bad = set()
    for name, value in env.items():
        warnings: list[str] = []
        config.load({name: value}, warnings.append)
        if warnings:
            bad.add(name)
    return bad


@settings(max_examples=300, deadline=None)
@given(environments)
def test_load_never_raises_and_warns_once_per_bad_variable(env: dict[str, str]) -> None:
    warnings: list[str] = []
    loaded = config.load(env, warnings.append)
    named = [w.split("=", 1)[0] for w in warnings]
    assert sorted(named) == sorted(bad_variables(env))
    assert len(named) == len(set(named))
    assert all("\n" not in w for w in warnings)
    assert isinstance(loaded, config.Config)


@settings(max_examples=300, deadline=None)
@given(environments)
def test_any_bad_purge_variable_leaves_the_purge_off(env: dict[str, str]) -> None:
    env = {names.ENV_PURGE: "always", **env}
    loaded = config.load(env, lambda _: None)
    if bad_variables(env) & PURGE_VARIABLES:
        assert loaded.purge is PurgeMode.OFF


@settings(deadline=None)
@given(st.sampled_from(VARIABLES), values)
def test_one_variable_alone_gives_its_value_or_one_warning(name: str, value: str) -> None:
    warnings: list[str] = []
    loaded = config.load({name: value}, warnings.append)
    assert len(warnings) <= 1
    if warnings:
        assert warnings[0].startswith(f"{name}=")
        if name in PURGE_VARIABLES:
            assert warnings[0].endswith("; the purge is off")
            assert loaded.purge is PurgeMode.OFF
        else:
            assert loaded == config.Config()  # the default, and nothing else changed
    elif not value.strip():
        assert loaded == config.Config()  # empty means unset


@settings(deadline=None)
@given(values)
def test_values_that_parse_are_within_their_ranges(value: str) -> None:
    env = {name: value for name in VARIABLES}
    loaded = config.load(env, lambda _: None)
    assert loaded.sample_ms is None or 5 <= loaded.sample_ms <= 10_000
    assert 0 <= loaded.top_files <= 50
    assert loaded.purge_threshold_bytes > 0
    assert 1 <= len(loaded.namespace) <= 255
    assert loaded.dimension_sets in (
        (("FunctionName",),),
        (("FunctionName",), ("FunctionName", "FunctionVersion")),
    )
