"""Reads a file shipped in the function's folder, 1 MiB at a time, so that its page cache (not
the process's RSS) is what the read adds to Max Memory Used.

The tests generate the file (data.bin, 50 MiB) into a copy of this folder rather than committing
it. Event (all optional): file (default data.bin), read (default true; false for a baseline).
"""

import os

MIB = 1024 * 1024


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def handler(event, context):
    options = event or {}
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), options.get("file", "data.bin"))
    total = 0
    if options.get("read", True):
        with open(path, "rb", buffering=0) as source:
            while chunk := source.read(MIB):
                total += len(chunk)
    return {"path": path, "bytes_read": total, "rss": rss_bytes()}
