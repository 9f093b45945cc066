"""Holds MiB of anonymous memory, every page touched, for the invocation, then frees it.

Event (all optional): mib (default 10), hold_ms (default 0). The memory is its own mapping, so
freeing it always returns it to the system (a malloc'd block may stay in the heap, glibc having
raised its mmap threshold after the first free).
"""

import mmap
import os
import time

MIB = 1024 * 1024
PAGE = mmap.PAGESIZE


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def handler(event, context):
    options = event or {}
    size = int(options.get("mib", 10)) * MIB
    block = mmap.mmap(-1, size)
    # Touched, not just mapped: untouched pages would not be resident.
    for offset in range(0, size, PAGE):
        block[offset] = 1
    time.sleep(int(options.get("hold_ms", 0)) / 1000)
    held_rss = rss_bytes()
    block.close()
    return {"held": size, "rss_while_held": held_rss, "rss_after": rss_bytes()}
