"""`./build.sh demo` (examples/demo.py): both runs in lambda-sandbox with the layer, two report
tables, one chart, and a sentence computed from the figures."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

from matplotlib import image

from tmp_monitor_tools import report, sources

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "examples" / "demo.py"
DATA = Path(__file__).parent / "data" / "tools"


def load_demo() -> ModuleType:
    spec = importlib.util.spec_from_file_location("tmp_monitor_demo", DEMO)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_demo_runs_both_and_writes_the_tables_and_the_chart(
    tmp_path: Path, monitor_layer: Path
) -> None:
    done = subprocess.run(
        [sys.executable, str(DEMO), "--invocations", "3", "--out", str(tmp_path),
         "--layer", str(monitor_layer)],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert out.count("== tmp-writer, 3 invocations at 256 MB") == 2
    assert "without purge" in out and "with TMP_MONITOR_PURGE=always" in out
    tables = [t for t in out.split("== ")[1:]]
    for table in tables:
        header = next(line for line in table.splitlines() if line.lstrip().startswith("invocation"))
        for column in report.COLUMNS:
            assert column in header
        numbers = [line.split()[0] for line in table.splitlines()[2:5]]
        assert numbers == ["1", "2", "3"]
    # The tables hold what the telemetry of each run says: per invocation 10 MiB more in /tmp
    # without purge, 10 MiB purged with it.
    kept = report.build(sources.read_file(tmp_path / "demo-1.telemetry.jsonl")).rows
    purged = report.build(sources.read_file(tmp_path / "demo-2.telemetry.jsonl")).rows
    mib = 1 << 20
    assert [round((r.tmp_used_bytes or 0) / mib) for r in kept] == [10, 20, 30]
    assert [round((r.purged_bytes or 0) / mib) for r in purged] == [10, 10, 10]
    assert all(r.max_memory_used_mb for r in kept + purged)
    assert "Without purge /tmp grew to 30.0 MiB" in out
    png = tmp_path / "demo.png"
    assert image.imread(png).shape[1] > 1000  # two panels side by side
    assert f"Chart: {png}" in out


def rows(name: str) -> tuple[report.Row, ...]:
    return report.build(sources.read_file(DATA / name)).rows


def test_the_sentence_is_computed_from_the_runs() -> None:
    demo = load_demo()
    kept = demo.Run("without purge", rows("sandbox-no-purge.jsonl"), "")
    purged = demo.Run("with", rows("cloudwatch-purge.json")[:2], "")
    sentence = demo.conclusion(kept, purged)
    assert sentence == (
        "Without purge /tmp grew to 30.0 MiB (30.0 MiB of it in memory) and Max Memory Used rose "
        "from 72 MB to 93 MB over 3 invocations; with TMP_MONITOR_PURGE=always the monitor freed "
        "20.0 MiB in all and Max Memory Used went from 70 MB to 72 MB, so the purge kept /tmp "
        "out of Max Memory Used."
    )
    # Runs that do not differ are not described as if they did.
    same = demo.conclusion(kept, kept)
    assert "no visible difference" in same
