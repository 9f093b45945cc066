"""Writes FILES files totalling BYTES to /tmp/bench-fill on every invocation (what the purge frees).

Event: files (default 1000), bytes (total, default 100 MiB). Existing files are overwritten in
place, so that without a purge /tmp holds the same amount after every invocation.
"""

import os

ROOT = "/tmp/bench-fill"


def handler(event, context):
    files = int(event.get("files", 1000))
    total = int(event.get("bytes", 100 * 1024 * 1024))
    payload = b"\x5a" * (total // files)
    os.makedirs(ROOT, exist_ok=True)
    for i in range(files):
        with open(os.path.join(ROOT, f"f{i:05d}.bin"), "wb") as out:
            out.write(payload)
    return {"files": files, "bytes": len(payload) * files}
