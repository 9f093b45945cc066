"""Where the tests find the layer: the built zip, or (until it is built) a source-tree layer."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DIST = ROOT / "dist"

_DEV_LAUNCHER = """#!/bin/sh
# Development launcher: Debian's python3.11 inside the sandbox runs the source tree's package.
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
unset LD_PRELOAD LD_AUDIT LD_LIBRARY_PATH PYTHONSTARTUP PYTHONHOME PYTHONINSPECT
export PYTHONPATH="$here/tmp-monitor/site" PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
exec /var/lang/bin/python3.11 -s -m tmp_monitor
"""


def built_layer_zip(arch: str = "x86_64") -> Path | None:
    path = DIST / f"tmp-monitor-{arch}.zip"
    return path if path.is_file() else None


def dev_layer_dir(dest: Path) -> Path:
    """A layer folder holding the source package and the pinned dependencies from the venv."""
    site = dest / "tmp-monitor" / "site"
    site.mkdir(parents=True)
    shutil.copytree(ROOT / "extension" / "tmp_monitor", site / "tmp_monitor")
    venv_site = Path(sys.prefix) / "lib" / "python3.11" / "site-packages"
    for name in ("psutil", "aws_lambda_powertools", "jmespath", "typing_extensions.py"):
        src = venv_site / name
        if src.is_dir():
            shutil.copytree(src, site / name)
        elif src.exists():
            shutil.copy2(src, site / name)
    launcher = dest / "extensions" / "tmp-monitor"
    launcher.parent.mkdir()
    launcher.write_text(_DEV_LAUNCHER)
    launcher.chmod(0o755)
    return dest
