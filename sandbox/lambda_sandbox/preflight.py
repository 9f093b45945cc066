"""What the machine must have to run an execution environment, each missing piece named.

`check()` raises one HostError listing everything missing: root, the memory, cpu and freezer
cgroup controllers (v1 or v2), loop devices, mkfs.ext4, Linux 5.12+ (mount_setattr). Every
input is a parameter so tests can point it at a fake cgroup root, /dev or PATH.
"""

from __future__ import annotations

import os
import platform
import shutil
from pathlib import Path

from lambda_sandbox import cgroups

# Where Debian keeps mkfs.ext4; not on PATH for users who reach root through `su`.
SBIN = "/usr/local/sbin:/usr/sbin:/sbin"
MIN_KERNEL = (5, 12)


class HostError(Exception):
    """The environment cannot run; the message says exactly what is missing or wrong."""


def find_tool(name: str, path: str | None = None) -> str | None:
    search = path if path is not None else f"{os.environ.get('PATH', '')}:{SBIN}"
    return shutil.which(name, path=search)


def kernel_version(release: str) -> tuple[int, int]:
    parts = release.split(".")
    try:
        return int(parts[0]), int("".join(c for c in parts[1] if c.isdigit()) or 0)
    except (IndexError, ValueError):
        return (0, 0)


def problems(
    *,
    euid: int | None = None,
    cgroup_root: Path = Path("/sys/fs/cgroup"),
    dev: Path = Path("/dev"),
    path: str | None = None,
    kernel_release: str | None = None,
) -> list[str]:
    """Everything missing, one phrase each; empty when the machine can run environments."""
    found = []
    if (os.geteuid() if euid is None else euid) != 0:
        found.append("not running as root (namespaces, mounts and cgroups need it)")
    missing = cgroups.missing_controllers(cgroup_root)
    if missing:
        found.append(f"no {', '.join(missing)} cgroup controller under {cgroup_root} (v1 or v2)")
    if not (dev / "loop-control").exists():
        found.append(f"no loop devices ({dev}/loop-control missing: modprobe loop)")
    if find_tool("mkfs.ext4", path) is None:
        found.append("no mkfs.ext4 on PATH (Debian package e2fsprogs)")
    release = platform.release() if kernel_release is None else kernel_release
    if kernel_version(release) < MIN_KERNEL:
        found.append(f"Linux {release} is older than 5.12 (mount_setattr)")
    return found


def check(
    *,
    euid: int | None = None,
    cgroup_root: Path = Path("/sys/fs/cgroup"),
    dev: Path = Path("/dev"),
    path: str | None = None,
    kernel_release: str | None = None,
) -> None:
    """Raise HostError naming every missing thing, or return if nothing is missing."""
    found = problems(
        euid=euid, cgroup_root=cgroup_root, dev=dev, path=path, kernel_release=kernel_release
    )
    if found:
        raise HostError("lambda-sandbox cannot run here: " + "; ".join(found))
