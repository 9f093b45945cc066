"""The layers the benchmark attaches: the built zip, and two variants unpacked from it.

- probe: the monitor unchanged, with the launch-time and first-next probes around it;
- floor: the same launcher, loader and interpreter running a minimal extension instead.
Both keep the layer's own launcher, moved out of extensions/ behind a wrapper that logs the
process start, so that the two are timed in the same way.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

PROBES = Path(__file__).resolve().parent / "probes"
NAME = "tmp-monitor"


def unpack(zip_path: Path, dest: Path) -> Path:
    """The zip as Lambda extracts it to /opt (unzip keeps modes and symbolic links)."""
    dest.mkdir(parents=True)
    subprocess.run(["unzip", "-q", str(zip_path), "-d", str(dest)], check=True)
    return dest


def _timed_launcher(root: Path) -> None:
    launcher = root / "extensions" / NAME
    moved = root / "bench-launch" / NAME
    moved.parent.mkdir()
    launcher.rename(moved)
    shutil.copyfile(PROBES / "launch.sh", launcher)
    launcher.chmod(0o755)


def probe_layer(zip_path: Path, dest: Path) -> Path:
    root = unpack(zip_path, dest)
    _timed_launcher(root)
    home = root / NAME
    (home / "bootstrap.py").rename(home / "bootstrap_monitor.py")
    shutil.copyfile(PROBES / "monitor_probe.py", home / "bootstrap.py")
    return root


def floor_layer(zip_path: Path, dest: Path) -> Path:
    root = unpack(zip_path, dest)
    _timed_launcher(root)
    shutil.copyfile(PROBES / "floor_extension.py", root / NAME / "bootstrap.py")
    return root
