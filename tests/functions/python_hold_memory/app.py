"""Holds MiB of anonymous memory, every page touched, for the invocation, then frees it.

Event (all optional): mib (default 10), hold_ms (default 0).
"""

import os
import time

MIB = 1024 * 1024


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def handler(event, context):
    options = event or {}
    mib = int(options.get("mib", 10))
    # Filled, not just allocated: untouched pages would not be resident.
    block = b"\x01" * (mib * MIB)
    time.sleep(int(options.get("hold_ms", 0)) / 1000)
    held_rss = rss_bytes()
    del block
    return {"held": mib * MIB, "rss_while_held": held_rss, "rss_after": rss_bytes()}
