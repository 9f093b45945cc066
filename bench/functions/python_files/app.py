"""Keeps FILES small files in /tmp: created on the first invocation, then left alone.

Event: files (count), size (bytes each, default 4096). Files sit 100 to a folder, as in a cache,
so that the monitor's walk of /tmp meets folders as well as files.
"""

import os

ROOT = "/tmp/bench-files"
PER_DIR = 100
_made: set[int] = set()


def handler(event, context):
    files = int(event.get("files", 1000))
    size = int(event.get("size", 4096))
    if files in _made:
        return {"created": 0}
    payload = b"\x5a" * size
    for i in range(files):
        folder = os.path.join(ROOT, f"d{i // PER_DIR:04d}")
        if i % PER_DIR == 0:
            os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, f"f{i:06d}"), "wb") as out:
            out.write(payload)
    _made.add(files)
    return {"created": files}
