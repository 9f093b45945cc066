"""Writes MiB to a file in /tmp, holds it for some milliseconds, then deletes it.

Event (all optional): mib (default 10), hold_ms (default 100), path (default
/tmp/transient-<request id>.bin).
"""

import os
import time

MIB = 1024 * 1024
CHUNK = b"\x5a" * MIB


def handler(event, context):
    options = event or {}
    mib = int(options.get("mib", 10))
    hold_ms = int(options.get("hold_ms", 100))
    path = options.get("path", f"/tmp/transient-{context.aws_request_id}.bin")
    with open(path, "wb") as out:
        for _ in range(mib):
            out.write(CHUNK)
    time.sleep(hold_ms / 1000)
    os.unlink(path)
    return {"written": mib * MIB, "held_ms": hold_ms, "path": path}
