"""Writes /tmp/keeper-<n>.bin (4 KiB, n from the event) and returns which keeper files /tmp
holds afterwards: a test reads from it whether the purge ran between invocations."""

import os


def handler(event, context):
    n = int((event or {}).get("n", 0))
    with open(f"/tmp/keeper-{n}.bin", "wb") as f:
        f.write(b"k" * 4096)
    return {"files": sorted(name for name in os.listdir("/tmp") if name.startswith("keeper-"))}
