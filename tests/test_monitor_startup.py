"""When the monitor sets itself up: before Init ends, or at the first event (SPEC 8: cold start
against transient files of the first invocation), and what it imports before its first next."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tmp_monitor import __main__ as entry
from tmp_monitor import sampler

ROOT = Path(__file__).resolve().parent.parent


def test_entry_point_constants_are_the_samplers() -> None:
    # The entry point keeps copies so that deciding imports nothing of the sampler.
    assert entry.CPU_SHARE_MB == sampler.CPU_SHARE_MB
    assert entry.TRANSIENT_MS == sampler.TRANSIENT_MS


def test_set_up_waits_for_init_only_where_the_first_invocation_is_still_caught() -> None:
    # At one vCPU the set-up takes about half the 100 ms transient lifetime: after Init.
    assert entry.set_up_after_init(1769)
    assert entry.set_up_after_init(10240)
    # At 128 MB (7 % of a CPU) it would take ~700 ms of the first invocation: before.
    assert not entry.set_up_after_init(128)
    assert not entry.set_up_after_init(512)
    assert not entry.set_up_after_init(0)


def test_path_to_the_first_next_imports_only_built_ins() -> None:
    # What the entry point imports before its first next: register, the Extensions API client
    # and the Telemetry listener. None of it may pull in typing, json, socket, threading,
    # dataclasses or logging (each costs milliseconds of the user's cold start).
    code = (
        "import sys\n"
        "before = set(sys.modules)\n"
        "from tmp_monitor import register, extensions_api, telemetry\n"
        "print(' '.join(sorted(set(sys.modules) - before)))\n"
    )
    done = subprocess.run(
        [
            sys.executable,
            "-I",
            "-S",
            "-c",
            f"import sys; sys.path.insert(0, {str(ROOT / 'extension')!r})\n" + code,
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    loaded = set(done.stdout.split())
    assert loaded, done.stderr
    heavy = {"typing", "json", "socket", "threading", "dataclasses", "logging", "re", "enum"}
    assert not loaded & heavy, sorted(loaded & heavy)
