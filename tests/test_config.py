"""Configuration (SPEC 5): every TMP_MONITOR_* variable, its default, its bad values, and the
fail-safe purge."""

from __future__ import annotations

import dataclasses
import logging

import pytest

from tmp_monitor import config, keep
from tmp_monitor.config import MIB, Config, PurgeMode

ONE_SET = (("FunctionName",),)
TWO_SETS = (("FunctionName",), ("FunctionName", "FunctionVersion"))
PURGE_ON = {"TMP_MONITOR_PURGE": "always"}


def load(env: dict[str, str]) -> tuple[Config, list[str]]:
    warnings: list[str] = []
    return config.load(env, warnings.append), warnings


def test_defaults_without_any_variable() -> None:
    loaded, warnings = load({})
    assert warnings == []
    assert loaded == Config(
        disabled=False,
        namespace="TmpMonitor",
        dimension_sets=ONE_SET,
        sample_ms=None,
        purge=PurgeMode.OFF,
        purge_threshold_bytes=100 * MIB,
        keep=keep.DEFAULT_KEEP_LIST,
        dry_run=False,
        top_files=0,
        metrics_all=False,
        log_level=logging.WARNING,
    )


def test_config_is_frozen() -> None:
    loaded, _ = load({})
    with pytest.raises(dataclasses.FrozenInstanceError):
        loaded.purge = PurgeMode.ALWAYS  # type: ignore[misc]


# (variable, value, field, parsed value)
GOOD: list[tuple[str, str, str, object]] = [
    ("TMP_MONITOR_DISABLED", "true", "disabled", True),
    ("TMP_MONITOR_DISABLED", "TRUE", "disabled", True),
    ("TMP_MONITOR_DISABLED", " True\n", "disabled", True),
    ("TMP_MONITOR_DISABLED", "1", "disabled", True),
    ("TMP_MONITOR_DISABLED", "yes", "disabled", True),
    ("TMP_MONITOR_DISABLED", "false", "disabled", False),
    ("TMP_MONITOR_DISABLED", "0", "disabled", False),
    ("TMP_MONITOR_DISABLED", "No", "disabled", False),
    ("TMP_MONITOR_DISABLED", "", "disabled", False),
    ("TMP_MONITOR_DISABLED", "   ", "disabled", False),
    ("TMP_MONITOR_NAMESPACE", "MyApp/Tmp", "namespace", "MyApp/Tmp"),
    ("TMP_MONITOR_NAMESPACE", " Team #1: tmp.usage_v-2 ", "namespace", "Team #1: tmp.usage_v-2"),
    ("TMP_MONITOR_NAMESPACE", "x", "namespace", "x"),
    ("TMP_MONITOR_NAMESPACE", "N" * 255, "namespace", "N" * 255),
    ("TMP_MONITOR_NAMESPACE", "aws/mine", "namespace", "aws/mine"),
    ("TMP_MONITOR_NAMESPACE", "", "namespace", "TmpMonitor"),
    ("TMP_MONITOR_DIMENSIONS", "FunctionName", "dimension_sets", ONE_SET),
    ("TMP_MONITOR_DIMENSIONS", "functionname", "dimension_sets", ONE_SET),
    ("TMP_MONITOR_DIMENSIONS", "FunctionName,FunctionVersion", "dimension_sets", TWO_SETS),
    ("TMP_MONITOR_DIMENSIONS", " FunctionName , FunctionVersion ", "dimension_sets", TWO_SETS),
    ("TMP_MONITOR_DIMENSIONS", "FunctionVersion,FunctionName", "dimension_sets", TWO_SETS),
    ("TMP_MONITOR_DIMENSIONS", "", "dimension_sets", ONE_SET),
    ("TMP_MONITOR_SAMPLE_MS", "5", "sample_ms", 5),
    ("TMP_MONITOR_SAMPLE_MS", "250", "sample_ms", 250),
    ("TMP_MONITOR_SAMPLE_MS", "010", "sample_ms", 10),
    ("TMP_MONITOR_SAMPLE_MS", "10000", "sample_ms", 10_000),
    ("TMP_MONITOR_SAMPLE_MS", "", "sample_ms", None),
    ("TMP_MONITOR_PURGE", "off", "purge", PurgeMode.OFF),
    ("TMP_MONITOR_PURGE", "always", "purge", PurgeMode.ALWAYS),
    ("TMP_MONITOR_PURGE", "THRESHOLD", "purge", PurgeMode.THRESHOLD),
    ("TMP_MONITOR_PURGE", " Always ", "purge", PurgeMode.ALWAYS),
    ("TMP_MONITOR_PURGE", "", "purge", PurgeMode.OFF),
    ("TMP_MONITOR_PURGE_THRESHOLD_MB", "100", "purge_threshold_bytes", 100 * MIB),
    ("TMP_MONITOR_PURGE_THRESHOLD_MB", "1", "purge_threshold_bytes", MIB),
    ("TMP_MONITOR_PURGE_THRESHOLD_MB", "0.5", "purge_threshold_bytes", MIB // 2),
    ("TMP_MONITOR_PURGE_THRESHOLD_MB", ".25", "purge_threshold_bytes", MIB // 4),
    ("TMP_MONITOR_PURGE_THRESHOLD_MB", "2.", "purge_threshold_bytes", 2 * MIB),
    ("TMP_MONITOR_PURGE_THRESHOLD_MB", "1e3", "purge_threshold_bytes", 1000 * MIB),
    ("TMP_MONITOR_PURGE_THRESHOLD_MB", "10240", "purge_threshold_bytes", 10240 * MIB),
    ("TMP_MONITOR_PURGE_THRESHOLD_MB", "1e-9", "purge_threshold_bytes", 1),  # rounded up, > 0
    ("TMP_MONITOR_PURGE_THRESHOLD_MB", "", "purge_threshold_bytes", 100 * MIB),
    ("TMP_MONITOR_DRY_RUN", "true", "dry_run", True),
    ("TMP_MONITOR_DRY_RUN", "FALSE", "dry_run", False),
    ("TMP_MONITOR_DRY_RUN", "", "dry_run", False),
    ("TMP_MONITOR_TOP_FILES", "0", "top_files", 0),
    ("TMP_MONITOR_TOP_FILES", "10", "top_files", 10),
    ("TMP_MONITOR_TOP_FILES", "50", "top_files", 50),
    ("TMP_MONITOR_TOP_FILES", "", "top_files", 0),
    ("TMP_MONITOR_METRICS", "core", "metrics_all", False),
    ("TMP_MONITOR_METRICS", "all", "metrics_all", True),
    ("TMP_MONITOR_METRICS", "ALL", "metrics_all", True),
    ("TMP_MONITOR_METRICS", "", "metrics_all", False),
    ("TMP_MONITOR_LOG_LEVEL", "debug", "log_level", logging.DEBUG),
    ("TMP_MONITOR_LOG_LEVEL", "INFO", "log_level", logging.INFO),
    ("TMP_MONITOR_LOG_LEVEL", "warning", "log_level", logging.WARNING),
    ("TMP_MONITOR_LOG_LEVEL", "warn", "log_level", logging.WARNING),
    ("TMP_MONITOR_LOG_LEVEL", "Error", "log_level", logging.ERROR),
    ("TMP_MONITOR_LOG_LEVEL", "", "log_level", logging.WARNING),
]


@pytest.mark.parametrize(("variable", "value", "field", "parsed"), GOOD)
def test_good_value_is_used_without_warning(
    variable: str, value: str, field: str, parsed: object
) -> None:
    loaded, warnings = load({variable: value})
    assert warnings == []
    assert getattr(loaded, field) == parsed


def test_keep_patterns_are_used_with_the_defaults() -> None:
    loaded, warnings = load({**PURGE_ON, "TMP_MONITOR_KEEP": "*.db, cache/models"})
    assert warnings == []
    assert loaded.purge is PurgeMode.ALWAYS
    assert loaded.keep.patterns == ("*.db", "cache/models", *keep.DEFAULT_KEEP)
    assert loaded.keep.keeps("x/a.db")
    assert loaded.keep.keeps("_MEI1234")
    assert not loaded.keep.keeps("x/a.txt")


# (variable, bad value, field, what is used instead, words of the warning about it)
BAD: list[tuple[str, str, str, object, str]] = [
    ("TMP_MONITOR_DISABLED", "maybe", "disabled", False, "the monitor runs"),
    ("TMP_MONITOR_DISABLED", "t", "disabled", False, "the monitor runs"),
    ("TMP_MONITOR_DISABLED", "on", "disabled", False, "the monitor runs"),
    ("TMP_MONITOR_NAMESPACE", "N" * 256, "namespace", "TmpMonitor", "using 'TmpMonitor'"),
    ("TMP_MONITOR_NAMESPACE", "AWS/Lambda", "namespace", "TmpMonitor", "using 'TmpMonitor'"),
    ("TMP_MONITOR_NAMESPACE", "tmp;drop", "namespace", "TmpMonitor", "using 'TmpMonitor'"),
    ("TMP_MONITOR_NAMESPACE", "naïve", "namespace", "TmpMonitor", "using 'TmpMonitor'"),
    ("TMP_MONITOR_NAMESPACE", "a\nb", "namespace", "TmpMonitor", "using 'TmpMonitor'"),
    ("TMP_MONITOR_DIMENSIONS", "FunctionVersion", "dimension_sets", ONE_SET, "using Function"),
    ("TMP_MONITOR_DIMENSIONS", "FunctionName,Region", "dimension_sets", ONE_SET, "using"),
    ("TMP_MONITOR_DIMENSIONS", "FunctionName,FunctionName", "dimension_sets", ONE_SET, "using"),
    ("TMP_MONITOR_DIMENSIONS", "FunctionName;FunctionVersion", "dimension_sets", ONE_SET, "u"),
    ("TMP_MONITOR_SAMPLE_MS", "abc", "sample_ms", None, "using the adaptive period"),
    ("TMP_MONITOR_SAMPLE_MS", "4", "sample_ms", None, "using the adaptive period"),
    ("TMP_MONITOR_SAMPLE_MS", "10001", "sample_ms", None, "using the adaptive period"),
    ("TMP_MONITOR_SAMPLE_MS", "-10", "sample_ms", None, "using the adaptive period"),
    ("TMP_MONITOR_SAMPLE_MS", "+10", "sample_ms", None, "using the adaptive period"),
    ("TMP_MONITOR_SAMPLE_MS", "1_000", "sample_ms", None, "using the adaptive period"),
    ("TMP_MONITOR_SAMPLE_MS", "10.5", "sample_ms", None, "using the adaptive period"),
    ("TMP_MONITOR_SAMPLE_MS", "\u0661\u0660\u0660", "sample_ms", None, "using the adaptive period"),
    ("TMP_MONITOR_SAMPLE_MS", "9" * 5000, "sample_ms", None, "using the adaptive period"),
    ("TMP_MONITOR_TOP_FILES", "51", "top_files", 0, "naming no files"),
    ("TMP_MONITOR_TOP_FILES", "-1", "top_files", 0, "naming no files"),
    ("TMP_MONITOR_TOP_FILES", "ten", "top_files", 0, "naming no files"),
    ("TMP_MONITOR_METRICS", "some", "metrics_all", False, "using core"),
    ("TMP_MONITOR_METRICS", "true", "metrics_all", False, "using core"),
    ("TMP_MONITOR_LOG_LEVEL", "trace", "log_level", logging.WARNING, "using warning"),
    ("TMP_MONITOR_LOG_LEVEL", "10", "log_level", logging.WARNING, "using warning"),
]


@pytest.mark.parametrize(("variable", "value", "field", "instead", "says"), BAD)
def test_bad_value_warns_once_and_falls_back_to_the_default(
    variable: str, value: str, field: str, instead: object, says: str
) -> None:
    loaded, warnings = load({**PURGE_ON, variable: value})
    assert len(warnings) == 1
    assert warnings[0].startswith(f"{variable}=")
    assert repr(value)[:40] in warnings[0]
    assert says in warnings[0]
    assert "\n" not in warnings[0]
    assert getattr(loaded, field) == instead
    # Not a purge variable: the purge the user asked for stays on.
    assert loaded.purge is PurgeMode.ALWAYS


PURGE_BAD: list[tuple[str, str]] = [
    ("TMP_MONITOR_PURGE", "on"),
    ("TMP_MONITOR_PURGE", "yes"),
    ("TMP_MONITOR_PURGE", "always!"),
    ("TMP_MONITOR_PURGE_THRESHOLD_MB", "0"),
    ("TMP_MONITOR_PURGE_THRESHOLD_MB", "-5"),
    ("TMP_MONITOR_PURGE_THRESHOLD_MB", "abc"),
    ("TMP_MONITOR_PURGE_THRESHOLD_MB", "inf"),
    ("TMP_MONITOR_PURGE_THRESHOLD_MB", "nan"),
    ("TMP_MONITOR_PURGE_THRESHOLD_MB", "1e999"),
    ("TMP_MONITOR_PURGE_THRESHOLD_MB", "100MB"),
    ("TMP_MONITOR_PURGE_THRESHOLD_MB", "1,5"),
    ("TMP_MONITOR_KEEP", "/tmp/cache"),
    ("TMP_MONITOR_KEEP", "*.db, ../etc"),
    ("TMP_MONITOR_KEEP", "!*.db"),
    ("TMP_MONITOR_KEEP", "log[0-9"),
    ("TMP_MONITOR_DRY_RUN", "maybe"),
    ("TMP_MONITOR_DRY_RUN", "dry"),
]


@pytest.mark.parametrize("mode", ["always", "threshold"])
@pytest.mark.parametrize(("variable", "value"), PURGE_BAD)
def test_bad_purge_variable_turns_the_purge_off(variable: str, value: str, mode: str) -> None:
    env = {
        "TMP_MONITOR_PURGE": mode,
        "TMP_MONITOR_PURGE_THRESHOLD_MB": "10",
        "TMP_MONITOR_KEEP": "*.db",
        "TMP_MONITOR_DRY_RUN": "false",
        variable: value,
    }
    loaded, warnings = load(env)
    assert loaded.purge is PurgeMode.OFF
    assert len(warnings) == 1
    assert warnings[0].startswith(f"{variable}={value!r} is not ")
    assert warnings[0].endswith("; the purge is off")


def test_bad_keep_pattern_warning_says_which_pattern_and_why() -> None:
    _, warnings = load({**PURGE_ON, "TMP_MONITOR_KEEP": "*.db, /tmp/models"})
    assert warnings == [
        "TMP_MONITOR_KEEP='*.db, /tmp/models' is not a list of keep patterns (bad keep pattern"
        " '/tmp/models': absolute; patterns are relative to /tmp ('cache', not '/tmp/cache'));"
        " the purge is off"
    ]


def test_bad_purge_variable_with_purge_unset_still_warns() -> None:
    loaded, warnings = load({"TMP_MONITOR_DRY_RUN": "perhaps"})
    assert loaded.purge is PurgeMode.OFF
    assert warnings == ["TMP_MONITOR_DRY_RUN='perhaps' is not true or false; the purge is off"]


def test_every_bad_variable_warns_once_each() -> None:
    env = {
        "TMP_MONITOR_DISABLED": "x",
        "TMP_MONITOR_NAMESPACE": "AWS/x",
        "TMP_MONITOR_DIMENSIONS": "x",
        "TMP_MONITOR_SAMPLE_MS": "x",
        "TMP_MONITOR_PURGE": "x",
        "TMP_MONITOR_PURGE_THRESHOLD_MB": "x",
        "TMP_MONITOR_KEEP": "/x",
        "TMP_MONITOR_DRY_RUN": "x",
        "TMP_MONITOR_TOP_FILES": "x",
        "TMP_MONITOR_METRICS": "x",
        "TMP_MONITOR_LOG_LEVEL": "x",
    }
    loaded, warnings = load(env)
    assert sorted(w.split("=", 1)[0] for w in warnings) == sorted(env)
    assert loaded == Config()


def test_the_documented_example_warning() -> None:
    _, warnings = load({"TMP_MONITOR_SAMPLE_MS": "abc"})
    assert warnings == [
        "TMP_MONITOR_SAMPLE_MS='abc' is not an integer from 5 to 10000; using the adaptive period"
    ]


def test_a_long_bad_value_is_shown_cut_short() -> None:
    _, warnings = load({"TMP_MONITOR_METRICS": "x" * 10_000})
    assert len(warnings) == 1
    assert len(warnings[0]) < 200
    assert "(10000 characters)" in warnings[0]


@pytest.mark.parametrize(
    "misspelt", ["TMP_MONITOR_PURGE_THRESHOLD", "TMP_MONITOR_KEPE", "TMP_MONITOR_DRYRUN"]
)
def test_unknown_tmp_monitor_variable_is_named_ignored_and_turns_the_purge_off(
    misspelt: str,
) -> None:
    # A misspelt KEEP or DRY_RUN would purge what the user meant to keep.
    loaded, warnings = load({**PURGE_ON, misspelt: "5"})
    assert warnings == [f"'{misspelt}' is not a tmp-monitor setting; ignored, and the purge is off"]
    assert loaded.purge is PurgeMode.OFF
    assert loaded.purge_threshold_bytes == 100 * MIB


def test_the_functions_other_variables_change_nothing() -> None:
    env = {
        "POWERTOOLS_METRICS_NAMESPACE": "Other",
        "POWERTOOLS_METRICS_DISABLED": "true",
        "POWERTOOLS_SERVICE_NAME": "svc",
        "POWERTOOLS_DEV": "true",
        "AWS_LAMBDA_FUNCTION_NAME": "f",
        "tmp_monitor_purge": "always",
        "LOG_LEVEL": "debug",
    }
    loaded, warnings = load(env)
    assert warnings == []
    assert loaded == Config()


def test_load_reads_only_the_mapping_it_is_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TMP_MONITOR_PURGE", "always")
    monkeypatch.setenv("TMP_MONITOR_NAMESPACE", "FromProcess")
    loaded, _ = load({})
    assert loaded == Config()


def test_describe_is_one_line_naming_every_setting() -> None:
    loaded, _ = load(
        {
            "TMP_MONITOR_PURGE": "threshold",
            "TMP_MONITOR_PURGE_THRESHOLD_MB": "0.5",
            "TMP_MONITOR_KEEP": "a\nb",
            "TMP_MONITOR_SAMPLE_MS": "20",
            "TMP_MONITOR_DIMENSIONS": "FunctionName,FunctionVersion",
        }
    )
    line = config.describe(loaded)
    assert "\n" not in line
    for words in (
        "purge=threshold",
        "threshold=0.5MiB",
        "sample=20ms",
        "dimensions=FunctionName;FunctionName,FunctionVersion",
        "'a\\nb'",
        "log_level=warning",
        "namespace='TmpMonitor'",
    ):
        assert words in line
