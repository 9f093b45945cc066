"""Bad input (issue 9): every TMP_MONITOR_* variable fuzzed through the real layer in the
sandbox, and the function's own hostile variables.

The bad values come from hypothesis, per variable, from what SPEC section 5 (and the reading
rules in tmp_monitor.config's docstring) refuses. Each example is one sandbox run of three
invocations with several bad variables at once, the purge asked for (`always`) unless PURGE is
itself one of the bad ones, so that a fail-safe purge is visible: the function leaves a file in
/tmp every invocation and says which of its files are still there.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import emf_check
from sandbox_run import Run, run

FUNCTIONS = Path(__file__).parent / "functions"
KEEPER = FUNCTIONS / "reliability_keeper"
HOSTILE = FUNCTIONS / "reliability_hostile"
# A bad value of any of these turns the purge off (a misspelt name too: it may be a purge
# variable the user meant to set).
PURGE_VARIABLES = {
    "TMP_MONITOR_PURGE",
    "TMP_MONITOR_PURGE_THRESHOLD_MB",
    "TMP_MONITOR_KEEP",
    "TMP_MONITOR_DRY_RUN",
    "TMP_MONITOR_PURGE_TRESHOLD_MB",
}
INVOCATIONS = 3

# Text an environment variable can hold (no NUL), blanks included.
_any_text = st.text(st.characters(blacklist_characters="\x00", codec="utf-8"), max_size=40)


def _not(accepted: Callable[[str], bool]) -> st.SearchStrategy[str]:
    """Non-blank values the reading rules refuse (`accepted` says what they take, stripped)."""
    return _any_text.filter(lambda s: s.strip() != "" and not accepted(s.strip()))


def _word(*words: str) -> Callable[[str], bool]:
    return lambda s: s.lower() in words


def _digits(s: str) -> bool:
    return re.fullmatch(r"[0-9]+", s) is not None


def _dimensions(s: str) -> bool:
    items = sorted(i.strip().lower() for i in s.split(",") if i.strip())
    return items in (["functionname"], ["functionname", "functionversion"])


_NUMBER = re.compile(r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]{1,4})?")
_BOOL = _word("true", "false", "1", "0", "yes", "no")
BAD: dict[str, st.SearchStrategy[str]] = {
    "TMP_MONITOR_DISABLED": _not(_BOOL),
    "TMP_MONITOR_NAMESPACE": st.sampled_from(
        ["x" * 256, "AWS/Lambda", "ns!", "ns\u00e9", "ns;", "a\tb", "\u540d\u524d"]
    ),
    "TMP_MONITOR_DIMENSIONS": _not(_dimensions),
    "TMP_MONITOR_SAMPLE_MS": st.one_of(
        st.integers(-(10**12), 4).map(str),
        st.integers(10_001, 10**12).map(str),
        st.sampled_from(["5.5", "1e3", "\u0665\u0660", "+50", "50ms", "1_000"]),
        _not(_digits),
    ),
    "TMP_MONITOR_PURGE": _not(_word("off", "always", "threshold")),
    "TMP_MONITOR_PURGE_THRESHOLD_MB": st.one_of(
        st.sampled_from(["0", "-1", "inf", "nan", "1e999", "0.0", "1,5", "10MB", "0x10"]),
        _not(lambda s: _NUMBER.fullmatch(s) is not None),
    ),
    "TMP_MONITOR_KEEP": st.sampled_from(
        ["/etc/passwd", "../x", "a/../../b", "cache,/abs", "ok,../../up", "/"]
    ),
    "TMP_MONITOR_DRY_RUN": _not(_BOOL),
    "TMP_MONITOR_TOP_FILES": st.one_of(
        st.integers(51, 10**12).map(str),
        st.integers(-(10**6), -1).map(str),
        _not(_digits),
    ),
    "TMP_MONITOR_METRICS": _not(_word("core", "all")),
    "TMP_MONITOR_LOG_LEVEL": _not(_word("debug", "info", "warning", "warn", "error")),
    # A name that is no setting at all (a typo of one).
    "TMP_MONITOR_PURGE_TRESHOLD_MB": _any_text,
}


@st.composite
def bad_settings(draw: st.DrawFn) -> dict[str, str]:
    chosen = draw(st.sets(st.sampled_from(sorted(BAD)), min_size=2, max_size=5))
    return {name: draw(BAD[name]) for name in sorted(chosen)}


def keeper_run(env: dict[str, str], monitor_layer: Path) -> Run:
    r = run(
        KEEPER,
        "app.handler",
        "python3.11",
        layers=[monitor_layer],
        env=env,
        invocations=INVOCATIONS,
        event=[{"n": n} for n in range(1, INVOCATIONS + 1)],
        memory=512,
        timeout=10,
    )
    assert r.returncode == 0, r.explain()
    return r


def warnings_naming(stderr: str, name: str) -> list[str]:
    # A warning names the variable, then = and the value (or " is not a tmp-monitor setting").
    return [line for line in stderr.splitlines() if re.search(rf"{name}(=|' is not)", line)]


def check_survives(r: Run, bad: dict[str, str]) -> None:
    explain = r.explain()
    assert [res["status"] for res in r.results] == ["success"] * INVOCATIONS, explain
    for line in r.stdout:
        assert "Extension.Crash" not in line and "Extension.ExitError" not in line, explain
    stderr = r.output("extension-tmp-monitor.stderr")
    assert "Traceback" not in stderr, stderr
    docs = emf_check.parse_documents(r.output("extension-tmp-monitor.stdout"))
    kinds = [d["document"] for d in docs]
    assert kinds.count("invocation") == INVOCATIONS, explain
    assert kinds.count("summary") == 1, explain
    for name in bad:
        assert len(warnings_naming(stderr, name)) == 1, (name, bad[name], stderr)
    last = r.results[-1]["payload"]["files"]
    if PURGE_VARIABLES & set(bad):
        # Fail safe: the purge is off, every file the function left is still there.
        assert last == [f"keeper-{n}.bin" for n in range(1, INVOCATIONS + 1)], (bad, last)
    else:
        # The purge asked for does run: the earlier files are gone (the negative case).
        assert last == [f"keeper-{INVOCATIONS}.bin"], (bad, last)


@pytest.mark.slow
@settings(
    deadline=None,
    max_examples=10,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    derandomize=True,
)
@given(bad=bad_settings())
def test_bad_settings_never_crash_and_purge_fails_safe(
    bad: dict[str, str], monitor_layer: Path
) -> None:
    env = dict(bad)
    env.setdefault("TMP_MONITOR_PURGE", "always")
    check_survives(keeper_run(env, monitor_layer), bad)


def test_good_purge_settings_purge(monitor_layer: Path) -> None:
    """The control: with nothing bad, the purge asked for runs and nothing is warned about."""
    r = keeper_run({"TMP_MONITOR_PURGE": "always"}, monitor_layer)
    check_survives(r, {})
    assert r.output("extension-tmp-monitor.stderr") == ""


HOSTILE_ENV = {
    "POWERTOOLS_SERVICE_NAME": "evil-service",
    "POWERTOOLS_METRICS_NAMESPACE": "EvilNamespace",
    "POWERTOOLS_METRICS_DISABLED": "true",
    "POWERTOOLS_DEV": "true",
    "POWERTOOLS_DEBUG": "true",
    "POWERTOOLS_LOG_LEVEL": "DEBUG",
    "LD_PRELOAD": "/var/task/evil/missing.so",
    "LD_AUDIT": "/var/task/evil/missing-audit.so",
    "LD_LIBRARY_PATH": "/var/task/evil",
    "PYTHONPATH": "/var/task/evil",
    "PYTHONHOME": "/var/task/evil",
    "PYTHONSTARTUP": "/var/task/evil/startup.py",
    "PYTHONINSPECT": "1",
    "PYTHONWARNINGS": "error",
    "PYTHONOPTIMIZE": "2",
    "PYTHONDEVMODE": "1",
    "PYTHONMALLOC": "debug",
}


def shape(doc: dict[str, Any]) -> dict[str, Any]:
    """What a document says, without what differs between two runs (times, ids, figures)."""
    varying = {"_aws", "requestId", "environmentAgeMs"}
    return {
        "directives": doc["_aws"]["CloudWatchMetrics"],
        "keys": sorted(k for k in doc if k not in varying),
        "strings": {k: v for k, v in doc.items() if isinstance(v, str) and k not in varying},
    }


def test_hostile_function_variables_change_nothing(monitor_layer: Path) -> None:
    def node_run(env: dict[str, str]) -> Run:
        r = run(
            HOSTILE,
            "index.handler",
            "nodejs20.x",
            layers=[monitor_layer],
            env=env,
            invocations=2,
            event={"n": 1},
        )
        assert r.returncode == 0, r.explain()
        return r

    plain = node_run({})
    hostile = node_run(HOSTILE_ENV)
    assert [res["payload"] for res in hostile.results] == [{"echo": {"n": 1}}] * 2
    # The launcher is /bin/sh, which the platform starts with the function's LD_PRELOAD and
    # LD_AUDIT: its loader says once that it cannot load them, and nothing can prevent that.
    # A second complaint would be the monitor's Python loaded with them; any other line,
    # Python start-up noise or a warning.
    lines = hostile.output("extension-tmp-monitor.stderr").splitlines()
    assert sorted(lines) == [
        "ERROR: ld.so: object '/var/task/evil/missing-audit.so' cannot be loaded as audit "
        "interface: cannot open shared object file; ignored.",
        "ERROR: ld.so: object '/var/task/evil/missing.so' from LD_PRELOAD cannot be preloaded "
        "(cannot open shared object file): ignored.",
    ], lines
    assert "EVIL" not in hostile.output("extension-tmp-monitor.stdout")
    docs = emf_check.parse_documents(hostile.output("extension-tmp-monitor.stdout"))
    expected = emf_check.parse_documents(plain.output("extension-tmp-monitor.stdout"))
    assert [shape(d) for d in docs] == [shape(d) for d in expected]
