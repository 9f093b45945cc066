"""Isolation of one execution environment: cgroups, namespaces, file systems, processes.

Interface (used by lifecycle.py)::

    spec = HostSpec(function_dir, layers, runtime_files, memory_mb=128, ephemeral_mb=512,
                    efs=((host_dir, "/mnt/NAME"),), cpus=None)
    with Sandbox.create(spec) as sb:                # HostError if the machine or spec is wrong
        proc = sb.spawn(argv, env, cwd="/var/task", name="runtime")
        proc.stdout.readline(); proc.wait(timeout)  # -9 after SIGKILL, incl. an OOM kill
        sb.freeze(); sb.thaw()
        sb.max_memory_bytes(); sb.memory_limit_bytes(); sb.oom_kills()
        sb.kill_all()
        sb.id, sb.cgroup, sb.init_pid   # "PID-START-HEX", "/lambda-sandbox/ID", host pid of nsinit
    # close(): every process killed, every mount, loop device, cgroup and file gone

Inside the environment (see nsinit.py, which builds it):

- PID and mount namespaces of its own; PID 1 is nsinit, which forks each spawned process (so
  the runtime and the extensions are its children, as under Lambda's init) and reaps orphans.
  nsinit is in none of the environment's cgroups; each spawned process joins the memory, cpu
  and freezer groups before it execs, as uid 993 / gid 990 with no supplementary groups.
- `/` is the host's root, read-only (recursively); `/tmp` a fresh ext4 image of ephemeral_mb
  with a journal, as Lambda's (statvfs total about Lambda's 525.8 MiB for 512, at least 131,072
  inodes), owned by uid 993;
  `/opt` (layers, in order), `/var/task` (function_dir), `/var/runtime` (runtime_files) and
  `/etc/hosts` (localhost and sandbox.localdomain -> 127.0.0.1) come from one fresh read-only
  ext4 image per environment, so the page cache of the code is charged to the environment that
  reads it and never found already cached by the host; `/proc` is the namespace's own; `/dev`
  holds null, zero, full, random, urandom and the fd links (no /dev/shm, as on Lambda);
  `/var/lang` (lang_files: the runtime's interpreter and its library, e.g. bin/node) is a cached
  read-only image (langimage.py) that each environment mounts through a loop device of its own,
  so the runtime's pages too are charged to the environment that reads them (the shared
  libraries they load from /lib stay the host's, already cached); without lang_files there is
  no /var/lang (as under provided.al2023); the efs host folders are bind-mounted writable at
  /mnt/NAME (they must be writable by uid 993). Nothing else is writable.
- The network is the host's: the APIs listen on the host's 127.0.0.1.

Accounting: the memory limit is memory_mb without swap; a group that thrashes at its limit
instead of running out is ended as the OOM killer would (cgroups.ThrashGuard, v1) and that
counts in oom_kills; `max_memory_bytes` is the group's high-water mark since creation (v1
memory.max_usage_in_bytes, v2 memory.peak, or a 5 ms sampler of memory.current on v2 kernels
without memory.peak). CPU: cfs quota = memory_mb / 1769 CPUs
(capped at the host's CPU count), or `cpus` if given.

Processes: `spawn` passes exactly `env`; `argv[0]` without a slash is looked up in env's PATH.
An exec failure raises the OSError the child got (FileNotFoundError, PermissionError, ...).
stdout/stderr are buffered readers of the pipes (end of file once the process and everything
that inherited them are gone); `close()` closes them, so read them to end of file first.
Exit statuses are subprocess-style: a process killed by the OOM killer or by kill_all
reports -9 (-signal.SIGKILL); tell an OOM kill apart by oom_kills() having grown. A spawn while
the environment is frozen returns only after thaw (the child freezes as it joins the group).
Proc.signal goes through nsinit, which knows whether the pid is still its unreaped child, so a
signal never reaches a recycled pid. spawn may be called from several threads at once.

Errors: HostError for anything the machine or the spec got wrong (one message, for the CLI),
including a cgroup file that cannot be read or written. After close(), max_memory_bytes,
memory_limit_bytes and oom_kills return the figures read just before the teardown, so the
REPORT of an invocation that ended its environment (OOM, timeout) can still be written.

Cleanup: close() is idempotent and runs on __exit__. If the host process dies without it (kill
-9), nsinit sees end of file on its socket and tears down itself: the mounts die with the
namespace, the loop devices clear themselves, the images were unlinked as soon as attached and
the cgroups are removed by nsinit. `Sandbox.create` also removes leftovers of dead sandboxes.
What stays, by design: the runtime images in WORK_ROOT/cache (about 180 MB for python3.11 and
nodejs20.x), shared by every later environment; each environment's loop device reaches one
through a link in its own folder, so leftovers are found as for the other images.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO

from lambda_sandbox import cgroups, langimage, nsinit
from lambda_sandbox.preflight import HostError, find_tool

WORK_ROOT = Path("/var/tmp/lambda-sandbox")
CGROUP_ROOT = Path("/sys/fs/cgroup")
SETUP_TIMEOUT = 60.0
SANDBOX_UID = nsinit.SANDBOX_UID
SANDBOX_GID = nsinit.SANDBOX_GID

__all__ = ["HostError", "HostSpec", "Proc", "Sandbox"]


@dataclass(frozen=True)
class HostSpec:
    function_dir: Path  # -> /var/task (read-only)
    layers: tuple[Path, ...] = ()  # zips or directories -> /opt, in order, later override
    runtime_files: tuple[tuple[Path, str], ...] = ()  # host file or dir -> /var/runtime/REL
    memory_mb: int = 128
    ephemeral_mb: int = 512
    efs: tuple[tuple[Path, str], ...] = ()  # (host dir, "/mnt/NAME"), writable
    cpus: float | None = None  # CPU share; None: memory_mb / 1769, as on Lambda
    # host file or dir -> /var/lang/REL, on a cached read-only image (see langimage.py)
    lang_files: tuple[tuple[Path, str], ...] = ()
    lang_name: str = "lang"  # names the cached image


class Proc:
    """One spawned process. `pid` is its host pid."""

    def __init__(self, sandbox: Sandbox, pid: int, name: str, out_fd: int, err_fd: int) -> None:
        self.pid = pid
        self.name = name
        self.stdout: BinaryIO = open(out_fd, "rb")  # noqa: SIM115 - lives as long as the Proc
        self.stderr: BinaryIO = open(err_fd, "rb")  # noqa: SIM115
        self._sandbox = sandbox
        self._status: int | None = None
        self._cond = threading.Condition()

    def __repr__(self) -> str:
        return f"Proc(pid={self.pid}, name={self.name!r}, status={self._status})"

    def _exited(self, status: int) -> None:
        with self._cond:
            if self._status is None:
                self._status = status
            self._cond.notify_all()

    def signal(self, sig: int) -> None:
        """Send sig unless the process has already been reaped (nsinit, its parent, checks)."""
        if self._status is None:
            self._sandbox._send({"op": "signal", "pid": self.pid, "sig": int(sig)})

    def poll(self) -> int | None:
        return self._status

    def wait(self, timeout: float | None = None) -> int | None:
        """Exit status (negative: killed by that signal), or None if timeout passed first."""
        with self._cond:
            self._cond.wait_for(lambda: self._status is not None, timeout)
            return self._status


@contextlib.contextmanager
def _as_host_error() -> Iterator[None]:
    try:
        yield
    except cgroups.CgroupError as exc:
        raise HostError(str(exc)) from exc


def _check_spec(spec: HostSpec) -> None:
    problems = []
    if not spec.function_dir.is_dir():
        problems.append(f"function folder {spec.function_dir} is not a directory")
    for layer in spec.layers:
        if not (layer.is_dir() or zipfile.is_zipfile(layer)):
            problems.append(f"layer {layer} is neither a directory nor a zip file")
    for source, rel in spec.runtime_files:
        if not source.exists():
            problems.append(f"runtime file {source} does not exist")
        if rel.startswith("/") or ".." in Path(rel).parts:
            problems.append(f"runtime file target {rel!r} must be relative, inside /var/runtime")
    for source, rel in spec.lang_files:
        if not source.exists():
            problems.append(f"runtime file {source} does not exist")
        if rel.startswith("/") or ".." in Path(rel).parts:
            problems.append(f"runtime file target {rel!r} must be relative, inside /var/lang")
    for host_dir, point in spec.efs:
        parts = Path(point).parts
        if len(parts) != 3 or parts[:2] != ("/", "mnt"):
            problems.append(f"EFS mount point {point!r} must be /mnt/NAME")
        if not host_dir.is_dir():
            problems.append(f"EFS folder {host_dir} is not a directory")
        elif not _writable_by_sandbox_user(host_dir):
            problems.append(
                f"EFS folder {host_dir} is not writable by uid {SANDBOX_UID} "
                f"(chown {SANDBOX_UID}:{SANDBOX_GID} it, as an EFS access point would)"
            )
    if spec.memory_mb < 16:
        problems.append(f"memory {spec.memory_mb} MB is below 16 MB")
    if spec.ephemeral_mb < 16:
        problems.append(f"ephemeral storage {spec.ephemeral_mb} MB is below 16 MB")
    if problems:
        raise HostError("; ".join(problems))


def _writable_by_sandbox_user(path: Path) -> bool:
    st = path.stat()
    if st.st_uid == SANDBOX_UID:
        return bool(st.st_mode & stat.S_IWUSR and st.st_mode & stat.S_IXUSR)
    if st.st_gid == SANDBOX_GID:
        return bool(st.st_mode & stat.S_IWGRP and st.st_mode & stat.S_IXGRP)
    return bool(st.st_mode & stat.S_IWOTH and st.st_mode & stat.S_IXOTH)


def clean_stale(layout: cgroups.Layout, work_root: Path) -> None:
    """Remove what sandboxes of dead processes left: cgroups and private folders."""
    cgroups.clean_stale(layout)
    with contextlib.suppress(OSError):
        for entry in work_root.iterdir():
            if entry.name != langimage.CACHE_DIR_NAME and not cgroups.owner_alive(entry.name):
                shutil.rmtree(entry, ignore_errors=True)


class Sandbox:
    """One execution environment; create with `Sandbox.create`, use as a context manager."""

    def __init__(self, spec: HostSpec, cg: cgroups.Cgroups, workdir: Path) -> None:
        self.spec = spec
        self.id = cg.name
        self._cg = cg
        self._workdir = workdir
        self._peak = None if cg.has_peak() else cgroups.PeakSampler(cg)
        self._thrash = cgroups.ThrashGuard(cg)
        self._sock: socket.socket | None = None
        self._nsinit: subprocess.Popen[bytes] | None = None
        self.init_pid = 0  # host pid of nsinit (PID 1 of the namespace)
        self._loops: list[str] = []
        self._send_lock = threading.Lock()
        self._state = threading.Condition()
        self._next_id = 0
        self._replies: dict[int, dict[str, Any] | Proc] = {}
        self._procs: dict[int, Proc] = {}
        self._all_procs: list[Proc] = []
        self._gone = False  # nsinit's end of the socket closed
        self._closed = False
        self._final: tuple[int, int, int] | None = None  # peak, limit, OOM kills at close
        self._reader: threading.Thread | None = None

    @property
    def cgroup(self) -> str:
        """The environment's cgroup path, as /proc/PID/cgroup shows it for its processes."""
        return f"/{cgroups.PARENT}/{self.id}"

    @classmethod
    def create(
        cls,
        spec: HostSpec,
        *,
        cgroup_root: Path = CGROUP_ROOT,
        work_root: Path = WORK_ROOT,
    ) -> Sandbox:
        _check_spec(spec)
        mkfs = find_tool("mkfs.ext4")
        if mkfs is None:
            raise HostError("mkfs.ext4 not found (Debian package e2fsprogs)")
        layout = cgroups.detect(cgroup_root)
        clean_stale(layout, work_root)
        lang_image = (
            langimage.ensure(spec.lang_name, spec.lang_files, work_root, mkfs)
            if spec.lang_files
            else None
        )
        cpus = spec.cpus if spec.cpus is not None else spec.memory_mb / cgroups.MB_PER_VCPU
        cpus = min(cpus, float(os.cpu_count() or 1))
        try:
            cg = cgroups.create(layout, spec.memory_mb, cpus)
        except (cgroups.CgroupError, OSError) as exc:
            raise HostError(f"cannot create the environment's cgroups: {exc}") from exc
        sb = cls(spec, cg, work_root / cg.name)
        try:
            for _attempt in range(5):
                work_root.mkdir(mode=0o700, parents=True, exist_ok=True)
                try:
                    sb._workdir.mkdir(mode=0o700)
                    break
                except FileNotFoundError:  # a closing sandbox removed the empty parent
                    continue
            sb._start(mkfs, lang_image)
        except BaseException:
            sb.close()
            raise
        return sb

    def _start(self, mkfs: str, lang_image: Path | None) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self._sock = ours
        with theirs:
            self._nsinit = subprocess.Popen(
                [sys.executable, "-I", "-S", nsinit.__file__, str(theirs.fileno())],
                pass_fds=[theirs.fileno()],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                start_new_session=True,  # Ctrl-C at the terminal reaches the CLI, not the runtime
            )
        freeze_file, _frozen, thawed = self._cg.freeze_file
        spec = self.spec
        nsinit.send_msg(
            ours,
            {
                "op": "setup",
                "workdir": str(self._workdir),
                "function_dir": str(spec.function_dir.resolve()),
                "layers": [str(p.resolve()) for p in spec.layers],
                "runtime_files": [(str(p.resolve()), rel) for p, rel in spec.runtime_files],
                "lang_image": str(lang_image) if lang_image else "",
                "ephemeral_mb": spec.ephemeral_mb,
                "efs": [(str(p.resolve()), point) for p, point in spec.efs],
                "cgroup_procs": [str(p) for p in self._cg.procs_files],
                "cgroup_dirs": [str(d) for d in self._cg.dirs],
                "thaw_file": str(freeze_file),
                "thaw_value": thawed,
                "mkfs": mkfs,
            },
        )
        ours.settimeout(SETUP_TIMEOUT)
        try:
            msg, _fds = nsinit.recv_msg(ours)
        except TimeoutError as exc:
            raise HostError(f"environment setup took over {SETUP_TIMEOUT:.0f} s") from exc
        ours.settimeout(None)
        if msg is None or msg["op"] != "ready":
            reason = msg["message"] if msg else "nsinit exited during setup"
            raise HostError(f"cannot set up the environment: {reason}")
        self.init_pid = int(msg["pid"])
        self._loops = list(msg["loops"])
        # Images are unlinked and nothing is mounted here any more: the folder can go now.
        shutil.rmtree(self._workdir, ignore_errors=True)
        self._reader = threading.Thread(
            target=self._read_loop, args=(ours,), name=f"nsinit-{self.id}", daemon=True
        )
        self._reader.start()

    # --- talking to nsinit ----------------------------------------------------------------

    def _send(self, msg: dict[str, Any]) -> None:
        if self._sock is None or self._gone:
            raise HostError("the environment is gone (its init exited)")
        with self._send_lock:
            try:
                nsinit.send_msg(self._sock, msg)
            except OSError as exc:
                raise HostError(f"the environment is gone: {exc}") from exc

    def _read_loop(self, sock: socket.socket) -> None:
        while True:
            try:
                msg, fds = nsinit.recv_msg(sock)
            except OSError:
                msg, fds = None, []
            if msg is None:
                break
            op = msg["op"]
            if op == "spawned":
                proc = Proc(self, int(msg["pid"]), "", fds[0], fds[1])
                with self._state:
                    self._procs[proc.pid] = proc
                    self._all_procs.append(proc)
                    self._replies[int(msg["id"])] = proc
                    self._state.notify_all()
            elif op == "spawn_failed":
                with self._state:
                    self._replies[int(msg["id"])] = msg
                    self._state.notify_all()
            elif op == "exited":
                with self._state:
                    exited = self._procs.pop(int(msg["pid"]), None)
                if exited is not None:
                    exited._exited(int(msg["status"]))
            for fd in fds if op != "spawned" else ():
                os.close(fd)
        with self._state:
            self._gone = True
            left = list(self._procs.values())
            self._procs.clear()
            self._state.notify_all()
        for proc in left:  # init died: the kernel killed everything in its namespace
            proc._exited(-signal.SIGKILL)

    # --- the interface --------------------------------------------------------------------

    def spawn(self, argv: list[str], env: dict[str, str], cwd: str = "/", name: str = "") -> Proc:
        """Fork argv inside the environment as uid 993 with exactly env; see the module doc."""
        if not argv:
            raise ValueError("argv is empty")
        with self._state:
            self._next_id += 1
            req = self._next_id
        self._send({"op": "spawn", "id": req, "argv": list(argv), "env": dict(env), "cwd": cwd})
        with self._state:
            self._state.wait_for(lambda: req in self._replies or self._gone, SETUP_TIMEOUT)
            reply = self._replies.pop(req, None)
        if isinstance(reply, Proc):
            reply.name = name
            return reply
        if reply is None:
            raise HostError("the environment is gone (its init exited)")
        raise OSError(int(reply["errno"]), reply["strerror"], reply["filename"])

    def freeze(self) -> None:
        with _as_host_error():
            self._cg.freeze()

    def thaw(self) -> None:
        with _as_host_error():
            self._cg.thaw()

    def max_memory_bytes(self) -> int:
        """High-water mark since creation; after close(), the last one read before removal."""
        if self._final is not None:
            return self._final[0]
        with _as_host_error():
            return self._peak.peak() if self._peak is not None else self._cg.memory_peak_bytes()

    def memory_limit_bytes(self) -> int:
        if self._final is not None:
            return self._final[1]
        with _as_host_error():
            return self._cg.memory_limit_bytes()

    def oom_kills(self) -> int:
        """OOM kills so far; after close(), the count read before removal."""
        if self._final is not None:
            return self._final[2]
        with _as_host_error():
            return self._cg.oom_kills() + self._thrash.kills()

    def kill_all(self) -> None:
        """SIGKILL every process of the environment (frozen or not); nsinit stays."""
        with _as_host_error():
            self._cg.kill_all()

    def close(self) -> None:
        """Kill everything and remove every trace; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(HostError):  # the figures stay readable for the last REPORT
            self._final = (self.max_memory_bytes(), self.memory_limit_bytes(), self.oom_kills())
        if self._nsinit is not None:
            with contextlib.suppress(HostError):
                self._send({"op": "exit"})
            try:
                self._nsinit.wait(10)
            except subprocess.TimeoutExpired:
                # init stuck (in setup, before it reads the socket): killing PID 1 of the
                # namespace kills everything in it; its pid is known here even before "ready"
                outer = self._nsinit.pid
                children = Path(f"/proc/{outer}/task/{outer}/children")
                with contextlib.suppress(OSError):
                    for pid in [int(p) for p in children.read_text().split()] + [outer]:
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(pid, signal.SIGKILL)
                self._nsinit.wait()
        if self._reader is not None:
            self._reader.join(5)
        if self._peak is not None:
            self._peak.stop()
        self._thrash.stop()
        self._cg.remove()
        self._wait_loops_detached()
        shutil.rmtree(self._workdir, ignore_errors=True)
        with contextlib.suppress(OSError):  # shared parents go with the last sandbox
            self._workdir.parent.rmdir()
        cgroups.remove_parents(self._cg.layout)
        if self._sock is not None:
            self._sock.close()
        for proc in self._all_procs:
            proc.stdout.close()
            proc.stderr.close()

    def _wait_loops_detached(self) -> None:
        """Autoclear detaches a loop device when its last mount goes, a moment after init."""
        deadline = time.monotonic() + 5.0
        for name in self._loops:
            backing = Path("/sys/block") / Path(name).name / "loop" / "backing_file"
            while time.monotonic() < deadline:
                try:
                    if str(self._workdir) not in backing.read_text():
                        break
                except OSError:
                    break
                time.sleep(0.002)

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
