"""Reports what the function can see of its environment: variables, identity, processes, loaded
libraries, and which places it can write to.

Event (all optional): paths (more directories or files to test for writing).
"""

import os
import socket

# Directories to try creating a file in, and files to try opening for writing (never written).
PROBE_DIRS = [
    "/",
    "/tmp",
    "/var/task",
    "/opt",
    "/var/runtime",
    "/var/lang",
    "/etc",
    "/root",
    "/home",
    "/usr",
    "/usr/lib",
    "/var",
    "/var/tmp",
    "/dev/shm",
    "/mnt",
    "/run",
    "/srv",
    "/proc/sys",
]
PROBE_FILES = ["/var/task/app.py", "/etc/hosts", "/etc/passwd", "/proc/sys/vm/drop_caches"]


def can_create_in(directory: str) -> bool:
    probe = os.path.join(directory, f".write-probe-{os.getpid()}")
    try:
        with open(probe, "x"):
            pass
    except OSError:
        return False
    os.unlink(probe)
    return True


def can_open_for_writing(path: str) -> bool:
    try:
        fd = os.open(path, os.O_WRONLY)
    except OSError:
        return False
    os.close(fd)
    return True


def processes() -> dict[str, str]:
    found = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                    found[entry] = cmdline.read().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue  # ended while we looked
    return found


def mapped_files() -> list[str]:
    with open("/proc/self/maps") as maps:
        paths = {line.split(maxsplit=5)[5].strip() for line in maps if len(line.split()) == 6}
    return sorted(path for path in paths if path.startswith("/"))


def resolve(name: str) -> str | None:
    try:
        return socket.gethostbyname(name)
    except OSError:
        return None


def handler(event, context):
    options = event or {}
    mounts = [os.path.join("/mnt", name) for name in sorted(os.listdir("/mnt"))]
    dirs = [*PROBE_DIRS, *mounts, *options.get("paths", [])]
    return {
        "env": dict(os.environ),
        "uid": os.getuid(),
        "gid": os.getgid(),
        "euid": os.geteuid(),
        "groups": os.getgroups(),
        "pid": os.getpid(),
        "processes": processes(),
        "maps": mapped_files(),
        "cwd": os.getcwd(),
        "writable_dirs": [d for d in dirs if os.path.isdir(d) and can_create_in(d)],
        "writable_files": [f for f in PROBE_FILES if can_open_for_writing(f)],
        "sandbox_localdomain": resolve("sandbox.localdomain"),
        "mnt": mounts,
    }
