"""The function's own files are charged to the environment that reads them, as on Lambda.

A Python function reads a 50 MiB file shipped in its code folder, 1 MiB at a time (so its RSS
does not grow). Max Memory Used must include those 50 MiB of page cache, also when the host has
just read the same file (its pages cached on the host's account): /var/task is the environment's
own image, so nothing it holds is found already cached.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from sandbox_run import run

FUNCTIONS = Path(__file__).resolve().parent / "functions"
MIB = 1024 * 1024
FILE_MIB = 50


@pytest.fixture
def code_dir(tmp_path: Path) -> Path:
    """python_read_code_file with its 50 MiB data.bin, generated rather than committed."""
    dest = tmp_path / "python_read_code_file"
    shutil.copytree(FUNCTIONS / "python_read_code_file", dest)
    with (dest / "data.bin").open("wb") as out:
        for n in range(FILE_MIB):
            out.write(bytes([n]) * MIB)
    return dest


@pytest.mark.parametrize("host_read_first", [False, True], ids=["cold", "host-read-first"])
def test_max_memory_used_includes_a_50_mib_code_file_the_function_reads(
    code_dir: Path, host_read_first: bool
) -> None:
    data = code_dir / "data.bin"
    if host_read_first:
        with data.open("rb") as source:
            while source.read(MIB):
                pass
    # Invocation 1 reads nothing (the baseline), invocation 2 reads the file.
    result = run(
        code_dir,
        "app.handler",
        "python3.11",
        memory=256,
        invocations=2,
        event=[{"read": False}, {"read": True}],
    )
    baseline, reading = result.results
    assert (baseline["payload"]["bytes_read"], reading["payload"]["bytes_read"]) == (
        0,
        FILE_MIB * MIB,
    )
    assert reading["payload"]["path"] == "/var/task/data.bin"
    before, after = (report.max_memory_used_mb for report in result.reports)
    assert FILE_MIB * 0.95 <= after - before <= FILE_MIB * 1.15, (before, after)
    # The increase is page cache, not the process's memory.
    assert reading["payload"]["rss"] - baseline["payload"]["rss"] < 5 * MIB
