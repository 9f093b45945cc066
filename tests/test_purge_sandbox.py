"""The purge inside lambda-sandbox, with the monitor layer a user attaches (issue 5).

These need the whole chain: lambda-sandbox, the monitor registering and receiving runtimeDone,
and the purge. A run that fails says why (the sandbox's own output is in the message).
"""

from __future__ import annotations

import hashlib
import itertools
import os
import stat
import subprocess
import threading
import uuid
from pathlib import Path
from typing import Any

import pytest

from sandbox_run import Run, run

FUNCTIONS = Path(__file__).resolve().parent / "functions"
MIB = 1 << 20


def checked(result: Run, invocations: int) -> Run:
    assert result.returncode == 0, result.explain()
    assert len(result.results) == invocations, result.explain()
    assert all(r["status"] == "success" for r in result.results), result.explain()
    return result


def invocation_docs(result: Run) -> list[dict[str, Any]]:
    docs = [d for d in result.emf_documents() if d.get("document") == "invocation"]
    assert docs, "the monitor wrote no invocation document:\n" + result.output(
        "extension-tmp-monitor.stderr"
    )
    return sorted(docs, key=lambda d: int(d["invocation"]))


def value(doc: dict[str, Any], name: str) -> float | None:
    """A metric (EMF writes [v]) or a property of a document; None when absent."""
    raw = doc.get(name)
    if isinstance(raw, list):
        raw = raw[0] if raw else None
    return None if raw is None else float(raw)


def purged(result: Run) -> list[float]:
    """PurgedBytes of each invocation, 0 where the purge did not run."""
    return [value(d, "PurgedBytes") or 0.0 for d in invocation_docs(result)]


def writer(monitor_layer: Path, env: dict[str, str], invocations: int, **kw: Any) -> Run:
    """node_tmp_writer: appends 10 MiB to /tmp/node_tmp_writer.bin per invocation."""
    return checked(
        run(
            FUNCTIONS / "node_tmp_writer",
            "index.handler",
            "nodejs20.x",
            layers=[monitor_layer],
            env=env,
            memory=512,
            invocations=invocations,
            timeout=10,
            **kw,
        ),
        invocations,
    )


def sizes(result: Run) -> list[int]:
    return [r["payload"]["size"] // MIB for r in result.results]


def test_side_by_side_max_memory_climbs_without_purge_and_stays_flat_with_it(
    monitor_layer: Path,
) -> None:
    off = writer(monitor_layer, {"TMP_MONITOR_PURGE": "off"}, 6)
    always = writer(monitor_layer, {"TMP_MONITOR_PURGE": "always"}, 6)

    assert sizes(off) == [10, 20, 30, 40, 50, 60]
    assert sizes(always) == [10] * 6  # each invocation found /tmp emptied
    off_mb = [r.max_memory_used_mb for r in off.reports]
    always_mb = [r.max_memory_used_mb for r in always.reports]
    steps = [b - a for a, b in itertools.pairwise(off_mb)]
    assert all(9 <= s <= 11 for s in steps), f"Max Memory Used without purge: {off_mb}"
    assert all(abs(m - always_mb[1]) <= 2 for m in always_mb[2:]), (
        f"Max Memory Used with purge: {always_mb}"
    )
    docs = invocation_docs(always)
    for doc in docs:
        assert value(doc, "PurgedBytes") == pytest.approx(10 * MIB, abs=64 * 1024)
        assert value(doc, "PurgedBytes") == value(doc, "TmpUsedBytes")
        assert value(doc, "PurgedFiles") == 1
    assert all(value(d, "PurgedBytes") in (None, 0.0) for d in invocation_docs(off))


def test_threshold_purges_only_above_it(monitor_layer: Path) -> None:
    env = {"TMP_MONITOR_PURGE": "threshold", "TMP_MONITOR_PURGE_THRESHOLD_MB": "25"}
    result = writer(monitor_layer, env, 6)

    assert sizes(result) == [10, 20, 30, 10, 20, 30]
    assert [round(b / MIB) for b in purged(result)] == [0, 0, 30, 0, 0, 30]


def test_dry_run_deletes_nothing_and_reports_what_a_purge_would_free(
    monitor_layer: Path,
) -> None:
    env = {"TMP_MONITOR_PURGE": "always", "TMP_MONITOR_DRY_RUN": "true"}
    result = writer(monitor_layer, env, 3)

    assert sizes(result) == [10, 20, 30]
    docs = invocation_docs(result)
    assert [value(d, "PurgedBytes") for d in docs] == [value(d, "TmpUsedBytes") for d in docs]
    assert [round((value(d, "PurgedBytes") or 0) / MIB) for d in docs] == [10, 20, 30]
    # statvfs: the free space shrinks by what each invocation writes, nothing comes back.
    free = [value(d, "TmpFreeBytes") or 0 for d in docs]
    assert [round((a - b) / MIB) for a, b in itertools.pairwise(free)] == [10, 10]


@pytest.mark.parametrize(
    ("name", "bad"),
    [
        ("TMP_MONITOR_PURGE", "bogus"),
        ("TMP_MONITOR_PURGE_THRESHOLD_MB", "-1"),
        ("TMP_MONITOR_KEEP", "/abs"),
        ("TMP_MONITOR_KEEP", "../x"),
        ("TMP_MONITOR_DRY_RUN", "maybe"),
    ],
)
def test_each_bad_purge_setting_leaves_tmp_untouched(
    monitor_layer: Path, name: str, bad: str
) -> None:
    env = {"TMP_MONITOR_PURGE": "always", name: bad}
    result = writer(monitor_layer, env, 2)

    assert sizes(result) == [10, 20]
    assert purged(result) == [0.0, 0.0]
    assert name in result.output("extension-tmp-monitor.stderr")


def test_a_file_and_a_database_held_open_across_invocations_survive(
    monitor_layer: Path,
) -> None:
    result = checked(
        run(
            FUNCTIONS / "purge_keeper",
            "app.handler",
            "python3.11",
            layers=[monitor_layer],
            env={"TMP_MONITOR_PURGE": "always"},
            memory=512,
            invocations=4,
            timeout=10,
        ),
        4,
    )

    for n, payload in enumerate((r["payload"] for r in result.results), start=1):
        assert payload["lines"] == [f"invocation {k}" for k in range(1, n + 1)]
        assert payload["rows"] == list(range(1, n + 1))
        assert payload["junkLeft"] == []  # the previous invocation's junk was purged
    assert all((value(d, "PurgedFiles") or 0) >= 1 for d in invocation_docs(result))


def tree_hash(top: Path) -> dict[str, tuple[int, int, str]]:
    out: dict[str, tuple[int, int, str]] = {}
    for dirpath, _dirs, files in os.walk(top):
        for name in [".", *files]:
            path = Path(dirpath, name)
            st = path.lstat()
            digest = hashlib.sha256(path.read_bytes()).hexdigest() if name != "." else ""
            out[str(path.relative_to(top))] = (stat.S_IFMT(st.st_mode), st.st_size, digest)
    return out


def bind_mount_when_asked(token: str, source: str, target: str, stop: threading.Event) -> None:
    """Waits for an environment whose /tmp holds the file token, then mounts source on target
    inside its mount namespace (as nothing in the environment may)."""
    while not stop.is_set():
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            try:
                found = (proc / "root" / "tmp" / token).exists()
            except OSError:
                continue
            if found:
                subprocess.run(
                    ["nsenter", "-t", proc.name, "-m", "mount", "--bind", source, target],
                    check=True,
                )
                return
        stop.wait(0.05)


def test_an_adversarial_layout(monitor_layer: Path, tmp_path: Path) -> None:
    efs = tmp_path / "efs"
    (efs / "data" / "nested").mkdir(parents=True)
    (efs / "data" / "precious").write_bytes(b"p" * 10_000)
    (efs / "data" / "nested" / "more").write_bytes(b"m" * 1000)
    (efs / "bound").mkdir()
    (efs / "bound" / "bound-marker").write_bytes(b"b" * 100)
    for path in [efs, *efs.rglob("*")]:
        path.chmod(0o777)  # the function's user may write there: only the purge's care saves it
    before = tree_hash(efs)
    token = f"ready-{uuid.uuid4().hex}"
    actions = ["build", "list", "list", "list", "list", "unlock"]
    stop = threading.Event()
    mounter = threading.Thread(
        target=bind_mount_when_asked, args=(token, "/mnt/efs/bound", "/tmp/bind", stop)
    )
    mounter.start()
    try:
        result = checked(
            run(
                FUNCTIONS / "purge_layout",
                "app.handler",
                "python3.11",
                layers=[monitor_layer],
                env={"TMP_MONITOR_PURGE": "always", "TMP_MONITOR_KEEP": "keep, *.db"},
                memory=1769,
                invocations=len(actions),
                event=[{"action": a, "token": token} for a in actions],
                timeout=90,
                efs=[(efs, "/mnt/efs")],
            ),
            len(actions),
        )
    finally:
        stop.set()
        mounter.join()

    assert tree_hash(efs) == before
    built = result.results[0]["payload"]["count"]
    assert built > 50_000
    final = result.results[-1]["payload"]["entries"]
    assert final == sorted(
        repr(e)
        for e in [
            b"bind",  # the mount point, and what the mount holds
            b"bind/bound-marker",
            b"keep",
            b"keep/k.db",
            b"state.db",
            b"_MEI4242",
            b"_MEI4242/libpython.so",
            b"locked",
            b"locked/inside",
            b"fifo",
            b"sock",
        ]
    ), result.output("extension-tmp-monitor.stderr")
    docs = invocation_docs(result)
    assert sum(value(d, "PurgedFiles") or 0 for d in docs) >= 50_000


@pytest.mark.parametrize(
    ("env", "extra"),
    [
        ({}, ["--fault", "telemetry-unsupported"]),  # no runtimeDone ever comes
        ({"AWS_LAMBDA_MAX_CONCURRENCY": "4"}, []),  # the runtime may be busy at any time
    ],
    ids=["without-runtimeDone", "multi-concurrency"],
)
def test_no_purge_when_the_monitor_cannot_know_the_runtime_is_done(
    monitor_layer: Path, env: dict[str, str], extra: list[str]
) -> None:
    result = writer(monitor_layer, {"TMP_MONITOR_PURGE": "always", **env}, 2, extra_args=extra)

    assert sizes(result) == [10, 20]
    assert "purge" in result.output("extension-tmp-monitor.stderr")  # and it says why


def test_the_purge_frees_in_the_environment_what_it_reports(monitor_layer: Path) -> None:
    # The layer's purge run by the function itself on /tmp/fill (1,000 files, 100 MiB): the
    # bytes it reports are what statvfs sees come back. (Its durationMs is what bench/ and the
    # purge's budget are about; no test asserts a time.)
    result = checked(
        run(
            FUNCTIONS / "purge_timing",
            "app.handler",
            "python3.11",
            layers=[monitor_layer],
            memory=1769,
            invocations=3,
            timeout=30,
        ),
        3,
    )

    for payload in (r["payload"] for r in result.results):
        assert payload["files"] == 1000 and payload["left"] == [] and payload["errors"] == 0
        assert payload["bytes"] == payload["freedStatvfs"] >= 100 * MIB
