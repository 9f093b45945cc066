"""The layer zips as a user receives them: layout, size, modes, licences, reproducibility.

The suite runs `./build.sh layer` first, so the zips are in dist/.
"""

from __future__ import annotations

import hashlib
import stat
import subprocess
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DIST = ROOT / "dist"
ARCHES = ("x86_64", "arm64")
LAUNCHER = "extensions/tmp-monitor"
MAX_ZIP_BYTES = 25_000_000  # SPEC section 8


def layer_zip(arch: str) -> Path:
    path = DIST / f"tmp-monitor-{arch}.zip"
    if not path.is_file():
        pytest.fail(f"{path} is missing: build it with ./build.sh layer")
    return path


def entries(arch: str) -> dict[str, zipfile.ZipInfo]:
    with zipfile.ZipFile(layer_zip(arch)) as zf:
        return {info.filename: info for info in zf.infolist()}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("arch", ARCHES)
def test_zip_is_within_the_size_budget(arch: str) -> None:
    assert layer_zip(arch).stat().st_size <= MAX_ZIP_BYTES


@pytest.mark.parametrize("arch", ARCHES)
def test_only_the_launcher_lives_outside_its_own_folder(arch: str) -> None:
    names = entries(arch)
    outside = [n for n in names if not n.startswith("tmp-monitor/")]
    assert outside == [LAUNCHER]
    # /opt/lib is on the function's LD_LIBRARY_PATH, /opt/python on its sys.path, /opt/bin on
    # its PATH: anything there would change the function.
    assert not [n for n in names if n.split("/")[0] in ("lib", "python", "bin", "nodejs")]


@pytest.mark.parametrize("arch", ARCHES)
def test_modes_are_755_for_what_runs_and_644_for_the_rest(arch: str) -> None:
    names = entries(arch)
    loader = {"x86_64": "ld-linux-x86-64.so.2", "arm64": "ld-linux-aarch64.so.1"}[arch]
    runs = {LAUNCHER, "tmp-monitor/runtime/bin/python3.11", f"tmp-monitor/runtime/lib/{loader}"}
    for name, info in names.items():
        mode = info.external_attr >> 16
        assert stat.S_ISREG(mode), f"{name} is not a regular file (symlinks do not survive)"
        assert stat.S_IMODE(mode) == (0o755 if name in runs else 0o644), name


@pytest.mark.parametrize("arch", ARCHES)
def test_the_launcher_is_posix_sh(arch: str) -> None:
    with zipfile.ZipFile(layer_zip(arch)) as zf:
        text = zf.read(LAUNCHER).decode()
    assert text.startswith("#!/bin/sh\n")
    for shell in (["dash", "-n"], ["busybox", "sh", "-n"]):
        done = subprocess.run([*shell, "/dev/stdin"], input=text, text=True, capture_output=True)
        assert done.returncode == 0, (shell, done.stderr)
    # The usual bashisms; the launcher is also run for real by dash and busybox sh elsewhere.
    for bashism in ("[[", "function ", "local ", "source ", "$'", "<<<", "${BASH"):
        assert bashism not in text, bashism


@pytest.mark.parametrize("arch", ARCHES)
def test_what_it_ships_travels_with_its_licences(arch: str) -> None:
    names = entries(arch)
    licences = "tmp-monitor/LICENSES/"
    for part in ("libc6", "libpython3.11-minimal", "python3.11-minimal", "zlib1g", "libgcc-s1"):
        assert f"{licences}{part}.copyright" in names, part
    assert f"{licences}tmp-monitor.txt" in names
    with zipfile.ZipFile(layer_zip(arch)) as zf:
        sources = zf.read(f"{licences}SOURCES.txt").decode()
        glibc = " ".join(zf.read(f"{licences}libc6.copyright").decode().split())
    assert "GNU Lesser General Public License" in glibc
    for dist in ("psutil", "aws_lambda_powertools", "jmespath", "typing_extensions"):
        infos = [n for n in names if n.startswith(f"tmp-monitor/site/{dist}-")]
        assert any("LICENSE" in n.upper() for n in infos), (dist, infos)
        assert dist.replace("_", "-") in sources
    assert "libc6 2.36-" in sources


@pytest.mark.parametrize("arch", ARCHES)
def test_no_tls_and_no_databases_in_the_layer(arch: str) -> None:
    names = "\n".join(entries(arch))
    for absent in ("libssl", "libcrypto", "/_ssl.", "/_hashlib.", "/ssl.", "sqlite", "curses"):
        assert absent not in names, absent


def test_two_builds_give_the_same_bytes(tmp_path: Path) -> None:
    """A second build from the same inputs (downloads from the cache) matches dist/ exactly."""
    stamp = DIST / ".layer-inputs"
    current = subprocess.run(
        [str(ROOT / ".venv/bin/python"), "-c", "import build_layer as b; print(b.input_digest())"],
        cwd=ROOT / "layer",
        env={"PYTHONDONTWRITEBYTECODE": "1", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    if not stamp.is_file() or stamp.read_text() != current:
        pytest.fail("dist/ was built from other inputs than the tree's: run ./build.sh layer")
    done = subprocess.run(
        [str(ROOT / "layer" / "build-layer.sh"), "--out", str(tmp_path), "--force"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    for arch in ARCHES:
        name = f"tmp-monitor-{arch}.zip"
        assert sha256(tmp_path / name) == sha256(DIST / name), name
