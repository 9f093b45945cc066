"""After delay_ms, writes mib MiB to a file in /tmp, holds it hold_ms, deletes it.

The delay moves the file's life against the monitor's sampling clock, which starts at INVOKE, so
that repeated invocations see the file at every phase of the sampling period.
"""

import os
import time

MIB = 1024 * 1024
CHUNK = b"\x5a" * MIB


def handler(event, context):
    mib = int(event.get("mib", 8))
    hold_ms = float(event.get("hold_ms", 100))
    time.sleep(float(event.get("delay_ms", 0)) / 1000)
    path = f"/tmp/transient-{context.aws_request_id}.bin"
    with open(path, "wb") as out:
        for _ in range(mib):
            out.write(CHUNK)
    # The file lives hold_ms once it holds all its bytes.
    written = time.monotonic()
    time.sleep(hold_ms / 1000)
    os.unlink(path)
    held = time.monotonic() - written
    return {"mib": mib, "hold_ms": hold_ms, "held_ms": held * 1000}
