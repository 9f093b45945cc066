"""Runs the monitor's purge (from the layer) on /tmp/fill, inside the environment, as the
function's own user: what it frees and how long it takes there.

Event (all optional): files (1000), mib (100, in total), budget_s (600: the whole tree).
Returns the purge's figures and what statvfs saw freed. For measuring, e.g.:
  lambda-sandbox run tests/functions/purge_timing --handler app.handler --runtime python3.11 \
    --layer dist/tmp-monitor-x86_64.zip --memory 1769 --invocations 7
"""

import ctypes
import os
import sys

sys.path.insert(0, "/opt/tmp-monitor/site")  # the layer's own package

from tmp_monitor import keep
from tmp_monitor.purge import purge_tree

ROOT = "/tmp/fill"


def free_bytes() -> int:
    # syncfs(2) of /tmp alone, so that ext4 has committed what it frees (os.sync would wait for
    # every file system of the machine).
    fd = os.open("/tmp", os.O_RDONLY | os.O_DIRECTORY)
    try:
        if ctypes.CDLL(None, use_errno=True).syncfs(fd) != 0:
            raise OSError(ctypes.get_errno(), "syncfs /tmp")
        st = os.fstatvfs(fd)
    finally:
        os.close(fd)
    return st.f_bfree * st.f_frsize


def handler(event, context):
    options = event or {}
    files = int(options.get("files", 1000))
    total = int(options.get("mib", 100)) * 1024 * 1024
    payload = b"\x5a" * (total // files)
    os.makedirs(ROOT, exist_ok=True)
    for i in range(files):
        with open(f"{ROOT}/f{i:05d}.bin", "wb") as out:
            out.write(payload)
    before = free_bytes()
    result = purge_tree(ROOT, keep.parse(""), budget_s=float(options.get("budget_s", 600)))
    return {
        "durationMs": result.duration_ms,
        "files": result.files,
        "bytes": result.bytes,
        "freedStatvfs": free_bytes() - before,
        "truncated": result.truncated,
        "errors": result.errors,
        "left": os.listdir(ROOT),
    }
