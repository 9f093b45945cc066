"""Returns the number of open file descriptors of the monitor's process, as seen from outside.

The function runs as the same user as the extensions, so it may list /proc/<pid>/fd of the
process whose command line names tmp-monitor. Fast on purpose: it is invoked thousands of times.
"""

import os

_monitor_pid = 0


def _find_monitor() -> int:
    me = os.getpid()
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == me:
            continue
        try:
            with open(f"/proc/{name}/cmdline", "rb") as f:
                cmdline = f.read()
        except OSError:
            continue
        if b"tmp-monitor" in cmdline:
            return int(name)
    return 0


def handler(event, context):
    global _monitor_pid
    if not _monitor_pid or not os.path.exists(f"/proc/{_monitor_pid}"):
        _monitor_pid = _find_monitor()
    if not _monitor_pid:
        return {"fds": -1}
    try:
        return {"fds": len(os.listdir(f"/proc/{_monitor_pid}/fd"))}
    except OSError as exc:
        return {"fds": -1, "error": str(exc)}
