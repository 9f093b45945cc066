"""PID 1 of one execution environment: builds its file systems, then forks what the host asks.

Started by `host.Sandbox.create` as ``python -I -S nsinit.py FD`` (standard library only, so it
runs without the venv's site-packages). FD is one end of a SOCK_SEQPACKET socket pair; every
message is one JSON object, file descriptors ride along with SCM_RIGHTS.

Process layout::

    host process (Sandbox)
      └─ nsinit "outer": unshare(CLONE_NEWNS | CLONE_NEWPID), fork, wait, exit with the child
           └─ nsinit "init" = PID 1 of the new PID namespace: mounts, pivot_root, fork + exec
                ├─ runtime      (memory/cpu/freezer cgroup, uid 993, gid 990)
                └─ extensions   (same)

The outer exists because unshare(CLONE_NEWPID) only applies to the caller's children; it stays a
plain waiter so the host reaps one ordinary child. Neither nsinit process joins the
environment's cgroups: each forked child writes "0" (itself) into the cgroup.procs files, opened
by init before pivot_root, and only then drops privileges and execs.

Why ctypes rather than unshare(1)/mount(8): the whole root is built by one process in a handful of
syscalls (fast, no fork/exec per mount), errno reaches the error message unchanged, and the only
external tool left is mkfs.ext4.

Protocol (host -> init):
    {"op": "setup", ...}               first message: the plan (see `Plan`)
    {"op": "spawn", "id", "argv", "env", "cwd"}
    {"op": "signal", "pid", "sig"}     pid = host pid of a spawned process not yet reaped
    {"op": "exit"}                     kill everything, remove the cgroups, exit
(init -> host):
    {"op": "ready", "pid", "loops"}    pid = host pid of init; loops = loop device names
    {"op": "error", "message"}         setup failed; init exits
    {"op": "spawned", "id", "pid"}     + fds [stdout read end, stderr read end]
    {"op": "spawn_failed", "id", "errno", "strerror", "filename"}   exec (or chdir) failed
    {"op": "exited", "pid", "status"}  status as subprocess reports it (negative = signal)
    {"op": "closed"}                   teardown done
End of file on the socket (host died) means "exit", so a kill -9 of the host leaves nothing:
the namespace's mounts die with its last process, the loop devices clear themselves
(LO_FLAGS_AUTOCLEAR), the image files were unlinked right after attaching, and init removes
the cgroups.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import json
import os
import selectors
import signal
import socket
import stat
import sys
import time
import warnings  # noqa: F401 - os.execvpe imports it; in the child, as uid 993, it no longer can

# Startup time counts in every environment's creation: nothing heavy at import (no typing,
# dataclasses, subprocess, shutil or zipfile, which together double it); see `extract_zip`.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

SANDBOX_UID = 993
SANDBOX_GID = 990
MAX_MESSAGE = 1 << 20

CLONE_NEWNS = 0x00020000
CLONE_NEWPID = 0x20000000
MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
MNT_DETACH = 2
AT_FDCWD = -100
AT_RECURSIVE = 0x8000
MOUNT_ATTR_RDONLY = 0x1
SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41}
SYS_MOUNT_SETATTR = 442  # same number on every architecture (new unified syscall table)

LOOP_CTL_GET_FREE = 0x4C82
LOOP_CONFIGURE = 0x4C0A
LO_FLAGS_READ_ONLY = 1
LO_FLAGS_AUTOCLEAR = 4
LO_FLAGS_DIRECT_IO = 16

# Signals nsinit changes for itself; a child restores them before exec, because an ignored
# signal stays ignored across exec (Python ignores SIGPIPE and SIGXFSZ at startup).
CHANGED_SIGNALS = (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGINT, signal.SIGTERM, signal.SIGCHLD)


def send_msg(sock: socket.socket, msg: dict[str, Any], fds: list[int] | None = None) -> None:
    data = json.dumps(msg).encode()
    if fds:
        socket.send_fds(sock, [data], fds)
    else:
        sock.sendall(data)


def recv_msg(sock: socket.socket) -> tuple[dict[str, Any] | None, list[int]]:
    """One message and the descriptors sent with it; (None, []) at end of file."""
    data, fds, _flags, _addr = socket.recv_fds(sock, MAX_MESSAGE, 4)
    if not data:
        for fd in fds:
            os.close(fd)
        return None, []
    for fd in fds:  # recvmsg leaves received descriptors inheritable
        os.set_inheritable(fd, False)
    msg: dict[str, Any] = json.loads(data)
    return msg, fds


# --- libc ---------------------------------------------------------------------------------

_libc = ctypes.CDLL(None, use_errno=True)


class SetupError(Exception):
    """Setup of the environment failed; the message goes to the host as is."""


def _check(ret: int, what: str) -> int:
    if ret < 0:
        err = ctypes.get_errno()
        raise SetupError(f"{what}: {os.strerror(err)} (errno {errno.errorcode.get(err, err)})")
    return ret


def unshare(flags: int) -> None:
    _check(_libc.unshare(ctypes.c_int(flags)), "unshare")


def mount(source: str, target: str, fstype: str | None, flags: int, data: str = "") -> None:
    _check(
        _libc.mount(
            source.encode(),
            target.encode(),
            fstype.encode() if fstype else None,
            ctypes.c_ulong(flags),
            data.encode() if data else None,
        ),
        f"mount {source} on {target}" + (f" ({fstype})" if fstype else ""),
    )


def umount(target: str, flags: int = MNT_DETACH) -> None:
    _check(_libc.umount2(target.encode(), ctypes.c_int(flags)), f"umount {target}")


def pivot_root(new_root: str, put_old: str) -> None:
    nr = SYS_PIVOT_ROOT.get(os.uname().machine)
    if nr is None:
        raise SetupError(f"pivot_root: unsupported architecture {os.uname().machine}")
    _check(_libc.syscall(nr, new_root.encode(), put_old.encode()), "pivot_root")


class _MountAttr(ctypes.Structure):
    _fields_ = (
        ("attr_set", ctypes.c_uint64),
        ("attr_clr", ctypes.c_uint64),
        ("propagation", ctypes.c_uint64),
        ("userns_fd", ctypes.c_uint64),
    )


def make_tree_read_only(path: str) -> None:
    """Every mount at and below path read-only, in one call (Linux 5.12 or later)."""
    attr = _MountAttr(MOUNT_ATTR_RDONLY, 0, 0, 0)
    _check(
        _libc.syscall(
            SYS_MOUNT_SETATTR,
            ctypes.c_int(AT_FDCWD),
            path.encode(),
            ctypes.c_uint(AT_RECURSIVE),
            ctypes.byref(attr),
            ctypes.c_size_t(ctypes.sizeof(attr)),
        ),
        f"mount_setattr(read-only, recursive) {path}",
    )


class _LoopInfo64(ctypes.Structure):
    _fields_ = (
        ("lo_device", ctypes.c_uint64),
        ("lo_inode", ctypes.c_uint64),
        ("lo_rdevice", ctypes.c_uint64),
        ("lo_offset", ctypes.c_uint64),
        ("lo_sizelimit", ctypes.c_uint64),
        ("lo_number", ctypes.c_uint32),
        ("lo_encrypt_type", ctypes.c_uint32),
        ("lo_encrypt_key_size", ctypes.c_uint32),
        ("lo_flags", ctypes.c_uint32),
        ("lo_file_name", ctypes.c_uint8 * 64),
        ("lo_crypt_name", ctypes.c_uint8 * 64),
        ("lo_encrypt_key", ctypes.c_uint8 * 32),
        ("lo_init", ctypes.c_uint64 * 2),
    )


class _LoopConfig(ctypes.Structure):
    _fields_ = (
        ("fd", ctypes.c_uint32),
        ("block_size", ctypes.c_uint32),
        ("info", _LoopInfo64),
        ("reserved", ctypes.c_uint64 * 8),
    )


class Loop:
    """An attached loop device; fd keeps it alive until the file system on it is mounted."""

    __slots__ = ("fd", "name")

    def __init__(self, name: str, fd: int) -> None:
        self.name = name
        self.fd = fd


def attach_loop(image: str, read_only: bool) -> Loop:
    """Attach image to a free loop device with autoclear and direct I/O.

    Autoclear detaches the device when its last user (the mount) goes, however the environment
    ends. Direct I/O keeps the image file's own pages out of the page cache: with buffered
    loop I/O the kernel charges the backing file's cache to the cgroup that caused the I/O
    (per-memcg loop workers, Linux 5.14+), so every /tmp byte would be counted twice.
    """
    backing = os.open(image, (os.O_RDONLY if read_only else os.O_RDWR) | os.O_CLOEXEC)
    try:
        ctl = os.open("/dev/loop-control", os.O_RDWR | os.O_CLOEXEC)
        try:
            for _attempt in range(20):
                num = fcntl.ioctl(ctl, LOOP_CTL_GET_FREE)
                name = f"/dev/loop{num}"
                dev = os.open(name, (os.O_RDONLY if read_only else os.O_RDWR) | os.O_CLOEXEC)
                flags = LO_FLAGS_AUTOCLEAR | (LO_FLAGS_READ_ONLY if read_only else 0)
                for dio in (LO_FLAGS_DIRECT_IO, 0):
                    cfg = _LoopConfig()
                    cfg.fd = backing
                    cfg.block_size = 4096
                    cfg.info.lo_flags = flags | dio
                    name_bytes = os.path.basename(image).encode()[:63]
                    cfg.info.lo_file_name[: len(name_bytes)] = name_bytes
                    try:
                        fcntl.ioctl(dev, LOOP_CONFIGURE, cfg)
                        return Loop(name, dev)
                    except OSError as exc:
                        if exc.errno == errno.EBUSY:  # another process took it first
                            break
                        if exc.errno != errno.EINVAL or not dio:
                            os.close(dev)
                            raise SetupError(f"loop device {name} for {image}: {exc}") from exc
                os.close(dev)
            raise SetupError("no free loop device (20 attempts, all taken by others)")
        finally:
            os.close(ctl)
    finally:
        os.close(backing)


# --- the plan -----------------------------------------------------------------------------


class Plan:
    """What the host asks for, from the setup message."""

    def __init__(self, msg: dict[str, Any]) -> None:
        self.workdir: str = msg["workdir"]  # private folder: images, staging, mount points
        self.function_dir: str = msg["function_dir"]
        self.layers: list[str] = list(msg["layers"])
        self.runtime_files: list[tuple[str, str]] = [(a, b) for a, b in msg["runtime_files"]]
        self.lang_image: str = msg["lang_image"]  # cached image of /var/lang, or ""
        self.ephemeral_mb = int(msg["ephemeral_mb"])
        self.efs: list[tuple[str, str]] = [(a, b) for a, b in msg["efs"]]
        self.cgroup_procs: list[str] = list(msg["cgroup_procs"])  # a child joins these
        self.cgroup_dirs: list[str] = list(msg["cgroup_dirs"])  # removed at teardown
        self.thaw_file: str = msg["thaw_file"]  # freezer.state (v1) or cgroup.freeze (v2)
        self.thaw_value: str = msg["thaw_value"]
        self.mkfs: str = msg["mkfs"]  # path of mkfs.ext4


# --- file systems -------------------------------------------------------------------------

MIB = 1 << 20
# Lambda's 512 MB /tmp shows 525.8 MiB total in statvfs: the device is a bit larger than asked.
LAMBDA_TMP_TOTAL_RATIO = 525.8 / 512
INODE_SIZE = 256


def journal_mib(fs_bytes: int) -> int:
    """The journal mkfs.ext4 (e2fsprogs 1.47) gives a file system of that size by default,
    stated explicitly so that the image's geometry below is exact."""
    blocks = fs_bytes // 4096
    for limit, journal in ((32768, 4), (256 << 10, 16), (512 << 10, 32), (4096 << 10, 64)):
        if blocks < limit:
            return journal
    return 128 if blocks < 8192 << 10 else 256


def tmp_image_geometry(ephemeral_mb: int) -> tuple[int, int, int]:
    """(image bytes, inode count, journal MiB) so that statvfs f_blocks is about Lambda's for
    that size.

    ext4's statvfs total leaves out the inode tables and the journal (overhead, not "used"), so
    both are added on top: for 512 MB, 525.8 MiB wanted + 32 MiB of inode tables (131,072 x
    256 B) + 16 MiB of journal + bitmaps and descriptors = a 574 MiB image (146,944 blocks),
    whose statvfs shows 525.9 MiB total, 0 used and 11.5 MiB not available: ext4's own reserve,
    2 % of all blocks (2,939) up to 4,096, since -m 0 adds none. Lambda: 525.8 MiB and
    11.5-12.4 MiB. 131,072 inodes (at least 100,000 files) up to 2 GiB, then one per 16 KiB as
    mkfs would.
    """
    total = int(ephemeral_mb * MIB * LAMBDA_TMP_TOTAL_RATIO)
    inodes = max(131072, total // 16384)
    groups = -(-total // (32768 * 4096))
    journal = journal_mib(total)
    overhead = inodes * INODE_SIZE + groups * 2 * 4096 + 64 * 1024 + journal * MIB
    size = -(-(total + overhead) // MIB) * MIB
    return size, inodes, journal


class Mkfs:
    """A running mkfs.ext4 whose stderr is kept for the error message."""

    def __init__(self, argv: list[str]) -> None:
        err_r, err_w = os.pipe()
        self.pid = os.posix_spawn(
            argv[0],
            argv,
            os.environ,
            file_actions=[
                (os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
                (os.POSIX_SPAWN_OPEN, 1, "/dev/null", os.O_WRONLY, 0),
                (os.POSIX_SPAWN_DUP2, err_w, 2),
            ],
        )
        os.close(err_w)
        self.err = err_r

    def finish(self, what: str) -> None:
        with os.fdopen(self.err, "rb") as f:
            err = f.read()
        _, status = os.waitpid(self.pid, 0)
        if status != 0:
            raise SetupError(f"mkfs.ext4 of {what} failed: {err.decode(errors='replace').strip()}")


def mkfs_tmp(plan: Plan, image: str) -> Mkfs:
    """Start mkfs of /tmp: with ext4's default journal, as Lambda's /tmp almost certainly has
    (without one, ext4 avoids reusing recently freed inodes: recreating 50,000 files after
    deleting them took 99 s of system time instead of 1 s; lazy_journal_init: the sparse image
    reads as zeros already), no reserved blocks (Lambda's reserve is ext4's own 2 % for delayed
    allocation, which the kernel adds anyway), root directory owned by the sandbox user."""
    size, inodes, journal = tmp_image_geometry(plan.ephemeral_mb)
    with open(image, "wb") as f:
        f.truncate(size)
    return Mkfs(
        [
            plan.mkfs,
            "-q",
            "-F",
            "-t",
            "ext4",
            "-b",
            "4096",
            "-m",
            "0",
            "-N",
            str(inodes),
            "-I",
            str(INODE_SIZE),
            "-O",
            "^resize_inode",
            "-J",
            f"size={journal}",
            "-E",
            f"lazy_itable_init=1,lazy_journal_init=1,root_owner={SANDBOX_UID}:{SANDBOX_GID}",
            image,
        ]
    )


def extract_zip(path: str, dest: str) -> None:
    """Unzip path into dest, later files overriding earlier ones, keeping Unix modes and
    symlinks (zipfile.extractall drops both)."""
    import shutil  # here, not at the top: only environments with layers pay for it
    import zipfile

    with zipfile.ZipFile(path) as zf:
        for info in zf.infolist():
            target = os.path.realpath(os.path.join(dest, info.filename))
            if not target.startswith(os.path.realpath(dest) + os.sep):
                continue  # absolute or ../ entry: Lambda's unzip refuses those too
            mode = info.external_attr >> 16
            if info.is_dir():
                os.makedirs(target, exist_ok=True)
                if mode:
                    os.chmod(target, stat.S_IMODE(mode) | 0o700)
                continue
            os.makedirs(os.path.dirname(target), exist_ok=True)
            if os.path.lexists(target) and not os.path.isdir(target):
                os.unlink(target)
            if stat.S_ISLNK(mode):
                os.symlink(zf.read(info).decode(), target)
                continue
            with zf.open(info) as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
            os.chmod(target, stat.S_IMODE(mode) if mode else 0o644)


def tree_size(root: str) -> tuple[int, int]:
    """(bytes rounded up to 4 KiB blocks, entries) of a directory tree."""
    total, count = 0, 1
    for dirpath, dirnames, filenames in os.walk(root):
        count += len(dirnames) + len(filenames)
        total += 4096 * (len(dirnames) + 1)
        for name in filenames:
            with contextlib.suppress(OSError):
                st = os.lstat(os.path.join(dirpath, name))
                total += -(-st.st_size // 4096) * 4096
    return total, count


def bind(source: str, target: str, flags: int = 0) -> None:
    mount(source, target, None, MS_BIND | MS_REC | flags)


def stage_code(plan: Plan, stage: str) -> None:
    """/opt, /var/task, /var/runtime and /etc/hosts as one directory tree for mkfs -d.

    The function folder and runtime files are bind-mounted (this namespace only), not copied:
    mkfs reads them once, straight into the image."""
    for sub in ("opt", "task", "runtime"):
        os.makedirs(os.path.join(stage, sub), mode=0o755)
    for layer in plan.layers:
        if os.path.isdir(layer):
            import shutil  # see extract_zip

            shutil.copytree(layer, os.path.join(stage, "opt"), symlinks=True, dirs_exist_ok=True)
        else:
            extract_zip(layer, os.path.join(stage, "opt"))
    bind(plan.function_dir, os.path.join(stage, "task"))
    for source, rel in plan.runtime_files:
        target = os.path.join(stage, "runtime", rel)
        os.makedirs(os.path.dirname(target), mode=0o755, exist_ok=True)
        if os.path.isdir(source):
            os.makedirs(target, mode=0o755, exist_ok=True)
        else:
            open(target, "w").close()
        bind(source, target)
    with open(os.path.join(stage, "hosts"), "w") as f:
        f.write("127.0.0.1\tlocalhost sandbox.localdomain\n::1\tlocalhost ip6-localhost\n")
    os.chmod(os.path.join(stage, "hosts"), 0o644)


def mkfs_code(plan: Plan, stage: str, image: str) -> Mkfs:
    used, entries = tree_size(stage)
    size = -(-(used + used // 4 + 16 * MIB) // MIB) * MIB
    with open(image, "wb") as f:
        f.truncate(size)
    return Mkfs(
        [
            plan.mkfs,
            "-q",
            "-F",
            "-t",
            "ext4",
            "-b",
            "4096",
            "-m",
            "0",
            "-N",
            str(entries + 64),
            "-O",
            "^has_journal,^resize_inode",
            "-E",
            "lazy_itable_init=1,root_owner=0:0",
            "-d",
            stage,
            image,
        ]
    )


def unmount_below(path: str) -> None:
    """Detach every mount under path (deepest first), in this namespace."""
    prefix = path.rstrip("/") + "/"
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f]
    for point in sorted((p for p in points if p.startswith(prefix)), key=len, reverse=True):
        with contextlib.suppress(SetupError):
            umount(point)


def make_dev(root: str) -> None:
    """A minimal /dev as on Lambda: null, zero, full, random, urandom and the fd links; no
    /dev/shm (Lambda has none, which is why multiprocessing.Queue fails there)."""
    dev = os.path.join(root, "dev")
    umount(dev)  # the host's /dev, its pts, shm and mqueue
    mount("tmpfs", dev, "tmpfs", MS_NOSUID | MS_NOEXEC, "mode=755,size=64k")
    for name, minor in (("null", 3), ("zero", 5), ("full", 7), ("random", 8), ("urandom", 9)):
        node = os.path.join(dev, name)
        os.mknod(node, 0o666 | stat.S_IFCHR, os.makedev(1, minor))
        os.chmod(node, 0o666)
    os.symlink("/proc/self/fd", os.path.join(dev, "fd"))
    for num, name in enumerate(("stdin", "stdout", "stderr")):
        os.symlink(f"/proc/self/fd/{num}", os.path.join(dev, name))


def make_var(root: str, code: str, lang: str) -> None:
    """/var: the host's entries (read-only, except its tmp, which stays empty), plus Lambda's
    task, runtime and, if the runtime has one, lang (mounted at the path lang)."""
    var = os.path.join(root, "var")
    entries = sorted(os.listdir("/var"))
    mount("tmpfs", var, "tmpfs", MS_NOSUID | MS_NODEV, "mode=755,size=64k")
    for name in entries:
        host = os.path.join("/var", name)
        target = os.path.join(var, name)
        if os.path.islink(host):
            os.symlink(os.readlink(host), target)
        elif os.path.isdir(host):
            os.mkdir(target, stat.S_IMODE(os.stat(host).st_mode))
            if name != "tmp":
                bind(host, target)
    for name in ("task", "runtime"):
        os.mkdir(os.path.join(var, name), 0o755)
        bind(os.path.join(code, name), os.path.join(var, name))
    if lang:
        os.mkdir(os.path.join(var, "lang"), 0o755)
        bind(lang, os.path.join(var, "lang"))


def build_root(plan: Plan, tmp_loop: Loop, code_loop: Loop, lang_loop: Loop | None) -> None:
    """Mount the environment's tree at workdir/root and pivot into it."""
    root = os.path.join(plan.workdir, "root")
    code = os.path.join(plan.workdir, "code")
    lang = os.path.join(plan.workdir, "lang") if lang_loop else ""
    os.mkdir(root, 0o755)
    os.mkdir(code, 0o755)
    mount(code_loop.name, code, "ext4", MS_RDONLY | MS_NOSUID | MS_NODEV)
    if lang_loop:
        os.mkdir(lang, 0o755)
        mount(lang_loop.name, lang, "ext4", MS_RDONLY | MS_NODEV)
    bind("/", root)
    umount(os.path.join(root, "proc"))
    mount("proc", os.path.join(root, "proc"), "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    make_dev(root)
    make_var(root, code, lang)
    bind(os.path.join(code, "opt"), os.path.join(root, "opt"))
    bind(os.path.join(code, "hosts"), os.path.join(root, "etc", "hosts"))
    unmount_below(os.path.join(root, "mnt"))  # the host's own mounts there are not Lambda's
    mount("tmpfs", os.path.join(root, "mnt"), "tmpfs", MS_NOSUID | MS_NODEV, "mode=755,size=64k")
    for _host, point in plan.efs:
        os.makedirs(os.path.join(root, point.lstrip("/")), 0o755, exist_ok=True)
    make_tree_read_only(root)
    # Writable mounts only now, on top of the read-only tree.
    tmp = os.path.join(root, "tmp")
    mount(tmp_loop.name, tmp, "ext4", MS_NOSUID | MS_NODEV, "noinit_itable")
    os.rmdir(os.path.join(tmp, "lost+found"))  # Lambda's /tmp starts empty
    for host, point in plan.efs:
        bind(host, os.path.join(root, point.lstrip("/")))
    os.chdir(root)
    pivot_root(".", ".")
    umount(".")  # the old root, stacked on top of the new one by pivot_root(".", ".")
    os.chdir("/")


def setup(plan: Plan) -> list[str]:
    """Build the environment's file systems; returns the loop device names."""
    mount("none", "/", None, MS_REC | MS_PRIVATE)  # nothing we mount may reach the host
    tmp_img = os.path.join(plan.workdir, "tmp.img")
    code_img = os.path.join(plan.workdir, "code.img")
    stage = os.path.join(plan.workdir, "stage")
    tmp_mkfs = mkfs_tmp(plan, tmp_img)
    stage_code(plan, stage)
    code_mkfs = mkfs_code(plan, stage, code_img)
    tmp_mkfs.finish("/tmp")
    code_mkfs.finish("the code image (/opt, /var/task, /var/runtime)")
    unmount_below(stage)
    tmp_loop = attach_loop(tmp_img, read_only=False)
    code_loop = attach_loop(code_img, read_only=True)
    loops = [tmp_loop, code_loop]
    try:
        if plan.lang_image:
            # Through a link of its own, the shared image's loop device names this environment
            # (its backing file is workdir/lang.img), so a leftover one is found like the others.
            lang_img = os.path.join(plan.workdir, "lang.img")
            os.link(plan.lang_image, lang_img)
            try:
                loops.append(attach_loop(lang_img, read_only=True))
            finally:
                os.unlink(lang_img)
        os.unlink(tmp_img)
        os.unlink(code_img)
        build_root(plan, tmp_loop, code_loop, loops[2] if len(loops) > 2 else None)
    finally:
        for loop in loops:
            os.close(loop.fd)
    return [loop.name for loop in loops]


# --- init ---------------------------------------------------------------------------------


class Init:
    """The init loop: spawn on request, reap everything, report exits, tear down."""

    def __init__(
        self,
        sock: socket.socket,
        plan: Plan,
        procs_fds: list[int],
        host_proc: int,
        dir_fds: list[tuple[int, str]],
        thaw_fd: int,
    ) -> None:
        self.sock = sock
        self.plan = plan
        self.procs_fds = procs_fds
        self.host_proc = host_proc
        self.dir_fds = dir_fds
        self.thaw_fd = thaw_fd
        self.children: dict[int, int] = {}  # namespace pid -> host pid
        self.by_host: dict[int, int] = {}  # host pid -> namespace pid

    def spawn(self, msg: dict[str, Any]) -> None:
        try:
            self._spawn(msg)
        except OSError as exc:  # fork or pipe failed: the environment is out of something
            send_msg(
                self.sock,
                {
                    "op": "spawn_failed",
                    "id": msg["id"],
                    "errno": exc.errno or 0,
                    "strerror": exc.strerror or str(exc),
                    "filename": None,
                },
            )

    def _spawn(self, msg: dict[str, Any]) -> None:
        argv: list[str] = msg["argv"]
        env: dict[str, str] = msg["env"]
        cwd: str = msg.get("cwd", "/")
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        status_r, status_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            self._child(argv, env, cwd, out_w, err_w, status_w)
        os.close(out_w)
        os.close(err_w)
        os.close(status_w)
        with os.fdopen(status_r, "rb") as f:
            lines = f.read().decode().splitlines()
        host_pid = int(lines[0]) if lines and lines[0].isdigit() else 0
        failure = next((json.loads(line) for line in lines if line.startswith("{")), None)
        if failure is not None or not host_pid:
            os.waitpid(pid, 0)
            os.close(out_r)
            os.close(err_r)
            failure = failure or {
                "errno": 0,
                "strerror": "child died before exec",
                "filename": None,
            }
            send_msg(self.sock, {"op": "spawn_failed", "id": msg["id"], **failure})
            return
        self.children[pid] = host_pid
        self.by_host[host_pid] = pid
        send_msg(self.sock, {"op": "spawned", "id": msg["id"], "pid": host_pid}, [out_r, err_r])
        os.close(out_r)
        os.close(err_r)

    def _child(
        self, argv: list[str], env: dict[str, str], cwd: str, out_w: int, err_w: int, status_w: int
    ) -> None:
        """In the forked child: join the cgroups, become the sandbox user, exec. Never returns.

        Reports on status_w (close-on-exec, so exec success is end of file): a line with the
        host pid, or a JSON line saying why it could not exec."""
        try:
            for sig in CHANGED_SIGNALS:
                signal.signal(sig, signal.SIG_DFL)
            signal.set_wakeup_fd(-1)
            # readlink of "self" in the host's procfs names this process as the host sees it
            os.write(status_w, os.readlink("self", dir_fd=self.host_proc).encode() + b"\n")
            for fd in self.procs_fds:
                os.write(fd, b"0")
            null = os.open("/dev/null", os.O_RDONLY)
            os.dup2(null, 0)
            os.dup2(out_w, 1)
            os.dup2(err_w, 2)
            os.setgroups([])
            os.setgid(SANDBOX_GID)
            os.setuid(SANDBOX_UID)
            os.chdir(cwd)
            os.execvpe(argv[0], argv, env)
        except OSError as exc:
            failure = {
                "errno": exc.errno or 0,
                "strerror": exc.strerror or str(exc),
                "filename": exc.filename,
            }
            os.write(status_w, json.dumps(failure).encode() + b"\n")
        except BaseException as exc:
            os.write(
                status_w,
                json.dumps({"errno": 0, "strerror": repr(exc), "filename": None}).encode() + b"\n",
            )
        os._exit(127)

    def reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            host_pid = self.children.pop(pid, None)
            if host_pid is not None:
                self.by_host.pop(host_pid, None)
                with contextlib.suppress(OSError):
                    send_msg(
                        self.sock,
                        {
                            "op": "exited",
                            "pid": host_pid,
                            "status": os.waitstatus_to_exitcode(status),
                        },
                    )

    def signal(self, msg: dict[str, Any]) -> None:
        pid = self.by_host.get(int(msg["pid"]))
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, int(msg["sig"]))

    def teardown(self) -> None:
        """Kill every process of the namespace, reap them, remove the cgroups."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(-1, signal.SIGKILL)  # from PID 1: everyone in the namespace but init
        with contextlib.suppress(OSError):
            os.write(self.thaw_fd, self.plan.thaw_value.encode())  # frozen tasks die on thaw
        while True:
            try:
                pid, status = os.waitpid(-1, 0)
            except ChildProcessError:
                break
            host_pid = self.children.pop(pid, None)
            if host_pid is not None:
                with contextlib.suppress(OSError):
                    send_msg(
                        self.sock,
                        {
                            "op": "exited",
                            "pid": host_pid,
                            "status": os.waitstatus_to_exitcode(status),
                        },
                    )
        deadline = time.monotonic() + 2.0
        for dir_fd, name in self.dir_fds:
            while True:
                try:
                    os.rmdir(name, dir_fd=dir_fd)
                    break
                except FileNotFoundError:
                    break
                except OSError as exc:  # EBUSY: exiting tasks not yet unlinked from the cgroup
                    if exc.errno != errno.EBUSY or time.monotonic() > deadline:
                        break
                    time.sleep(0.005)

    def run(self) -> None:
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_w, False)
        signal.set_wakeup_fd(wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        stop = False

        def on_term(*_: object) -> None:
            nonlocal stop
            stop = True

        signal.signal(signal.SIGTERM, on_term)
        sel = selectors.DefaultSelector()
        sel.register(self.sock, selectors.EVENT_READ, "sock")
        sel.register(wake_r, selectors.EVENT_READ, "wake")
        while not stop:
            for key, _ in sel.select():
                if key.data == "wake":
                    with contextlib.suppress(BlockingIOError):
                        os.read(wake_r, 4096)
                    self.reap()
                    continue
                try:
                    msg, fds = recv_msg(self.sock)
                except OSError:
                    msg, fds = None, []
                for fd in fds:
                    os.close(fd)
                if msg is None or msg["op"] == "exit":
                    stop = True
                elif msg["op"] == "spawn":
                    self.spawn(msg)
                elif msg["op"] == "signal":
                    self.signal(msg)
            self.reap()
        self.teardown()
        with contextlib.suppress(OSError):
            send_msg(self.sock, {"op": "closed"})


def init_main(sock: socket.socket) -> int:
    """PID 1: receive the plan, build the environment, run the init loop."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.umask(0o022)  # staged code must stay readable by the sandbox user whatever the host's umask
    msg, _ = recv_msg(sock)
    if msg is None:
        return 0
    plan = Plan(msg)
    try:
        procs_fds = [os.open(p, os.O_WRONLY | os.O_CLOEXEC) for p in plan.cgroup_procs]
        dir_fds = [
            (
                os.open(os.path.dirname(d), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC),
                os.path.basename(d),
            )
            for d in plan.cgroup_dirs
        ]
        thaw_fd = os.open(plan.thaw_file, os.O_WRONLY | os.O_CLOEXEC)
        host_proc = os.open("/proc", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        host_pid = int(os.readlink("self", dir_fd=host_proc))
        loops = setup(plan)
    except (SetupError, OSError) as exc:
        send_msg(sock, {"op": "error", "message": str(exc)})
        return 1
    except Exception as exc:  # e.g. a corrupt layer zip: still one message, not a traceback
        send_msg(sock, {"op": "error", "message": f"{type(exc).__name__}: {exc}"})
        return 1
    send_msg(sock, {"op": "ready", "pid": host_pid, "loops": loops})
    Init(sock, plan, procs_fds, host_proc, dir_fds, thaw_fd).run()
    return 0


def main() -> int:
    sock = socket.socket(fileno=int(sys.argv[1]))
    os.set_inheritable(sock.fileno(), False)
    try:
        unshare(CLONE_NEWNS | CLONE_NEWPID)
    except SetupError as exc:
        send_msg(sock, {"op": "error", "message": str(exc)})
        return 1
    pid = os.fork()
    if pid == 0:
        os._exit(init_main(sock))
    sock.close()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


if __name__ == "__main__":
    sys.exit(main())
