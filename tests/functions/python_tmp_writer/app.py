"""Appends MiB to a file in /tmp on every invocation; the Python twin of node_tmp_writer.

Event (all optional): mib (default WRITE_MIB or 10), path (default WRITE_PATH or
/tmp/python_tmp_writer.bin), delete (remove the file before returning), drop_cache (flush the file
and drop its pages from the page cache with posix_fadvise before returning).
"""

import os

MIB = 1024 * 1024
# Allocated once, so that the writes themselves add nothing to RSS.
CHUNK = b"\x5a" * MIB


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def handler(event, context):
    options = event or {}
    mib = int(options.get("mib", os.environ.get("WRITE_MIB", 10)))
    path = options.get("path", os.environ.get("WRITE_PATH", "/tmp/python_tmp_writer.bin"))
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        for _ in range(mib):
            os.write(fd, CHUNK)
        if options.get("drop_cache"):
            # Dirty pages cannot be dropped: write them out first.
            os.fdatasync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        size = os.fstat(fd).st_size
    finally:
        os.close(fd)
    if options.get("delete"):
        os.unlink(path)
    return {
        "size": size,
        "rss": rss_bytes(),
        "deleted": bool(options.get("delete")),
        "droppedCache": bool(options.get("drop_cache")),
    }
