"""Hostile /tmp (issue 9): what a function can do to /tmp, with the layer measuring it.

One environment, one invocation per hostility, in this order (each leaves its files, so the
later walks cross all of them): 100,000 files; a chain of 1,000 folders (deeper than one path
can name); unreadable files and folders (mode 000, read-only, search-only), symlinks and hard
links; a thread creating and deleting files while the monitor walks; /tmp full to its last
block while the monitor samples; and a last, quiet invocation.

The function computes what a walk must find (its own walk, as the same user, so "readable"
means the same to both; no path length limit, as it changes into each folder). The monitor's
TmpFiles and TmpUsedBytes must equal it where nothing moves, and stay within the churn's
bounds where files come and go. No invocation is held to its timeout, the monitor never
crashes, and every invocation has its document.
"""

from __future__ import annotations

import os
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

import emf_check
from sandbox_run import run
from tmp_monitor import tmpfs

FUNCTION = Path(__file__).parent / "functions" / "reliability_tmp"
OPS = ["many", "deep", "unreadable", "churn", "fill", "after"]
TIMEOUT_S = 60
CHURN_STABLE = 1000  # files the churn op adds for good
CHURN_MAX = 200  # files its thread holds at most at once


def test_walk_reaches_below_path_max(tmp_path: Path) -> None:
    """The walk of a chain of folders deeper than one path can name (the sandbox test's deep
    op, on the host): every folder and the file at the bottom counted."""
    here = os.getcwd()
    os.chdir(tmp_path)
    try:
        for _ in range(1000):
            os.mkdir("level")
            os.chdir("level")
        with open("bottom.bin", "wb") as f:
            f.write(b"b" * 10_000)
        depth_bytes = os.lstat(".").st_blocks * 512
    finally:
        os.chdir(here)
    try:
        assert len(str(tmp_path)) + 1000 * len("/level") > 4096
        found = tmpfs.walk(str(tmp_path))
        assert found.files == 1
        assert found.errors == 0
        assert found.allocated_bytes >= 1000 * depth_bytes
    finally:
        # pytest's own clean-up of old tmp_path folders recurses and fails at this depth.
        subprocess.run(["rm", "-rf", str(tmp_path / "level")], check=True)


@pytest.mark.slow
def test_hostile_tmp(monitor_layer: Path) -> None:
    r = run(
        FUNCTION,
        "app.handler",
        "python3.11",
        layers=[monitor_layer],
        memory=1024,
        ephemeral=512,
        timeout=TIMEOUT_S,
        event=[{"op": op} for op in OPS],
        invocations=len(OPS),
    )
    explain = r.explain()
    assert r.returncode == 0, explain
    assert [res["status"] for res in r.results] == ["success"] * len(OPS), explain
    for line in r.stdout:
        assert "Extension.Crash" not in line, explain
    for report in r.reports:
        assert report.status == "success" and report.duration_ms < TIMEOUT_S * 1000 / 2, explain
    assert "Traceback" not in r.output("extension-tmp-monitor.stderr")

    docs = emf_check.parse_documents(r.output("extension-tmp-monitor.stdout"))
    inv = [d for d in docs if d["document"] == "invocation"]
    assert Counter(d["requestId"] for d in inv) == Counter(res["requestId"] for res in r.results)
    assert all("fallback" not in d for d in inv), explain
    got: dict[str, dict[str, Any]] = {}
    for op, doc, res in zip(OPS, inv, r.results, strict=True):
        got[op] = {
            "files": emf_check.value(doc, "TmpFiles"),
            "bytes": emf_check.value(doc, "TmpUsedBytes"),
            "peak": emf_check.value(doc, "TmpPeakBytes"),
            "free": emf_check.value(doc, "TmpFreeBytes"),
            "expected": res["payload"].get("expected"),
        }

    for op in ("many", "deep", "unreadable", "fill", "after"):
        expected = got[op]["expected"]
        assert (got[op]["files"], got[op]["bytes"]) == (expected["files"], expected["bytes"]), (
            op,
            got[op],
        )
    assert got["many"]["files"] == 100_000
    assert got["deep"]["files"] == 100_001  # the file at the bottom of the chain

    # The churn: the stable files are all there, and at most what the thread holds on top.
    before = got["unreadable"]["expected"]["files"]
    assert before + CHURN_STABLE <= got["churn"]["files"] <= before + CHURN_STABLE + CHURN_MAX

    # Full: nothing left for the function, and the peak saw all of it.
    assert r.results[OPS.index("fill")]["payload"]["free_blocks"] == 0
    assert got["fill"]["free"] == 0
    assert got["fill"]["peak"] >= got["fill"]["bytes"] >= 500 * 2**20
