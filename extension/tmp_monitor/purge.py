"""The purge: empties /tmp between invocations, but for what is kept, held open or not ours.

The monitor calls the purger after the platform's `runtimeDone` for the request and its own
end-of-runtime walk, before it calls next: never while the function runs, and never in a mode
without `runtimeDone` or with multi-concurrency (the monitor's duty; this module cannot tell).

What it removes: every regular file, symlink and folder below the root, except

- what the keep list keeps (`TMP_MONITOR_KEEP` and `keep.DEFAULT_KEEP`), and the folders that
  lead to it; a kept folder is not entered;
- files that a process of the environment holds open or maps, and folders that one works in
  (`openfiles.held_files`, read just before the walk); the monitor's own fds do not count;
- anything that is not a regular file, a folder or a symlink (sockets, FIFOs, devices);
- other mounts under the root (another st_dev or mount id, bind mounts included), whole;
- the root itself; and so every folder that holds anything left.

How it stays inside the root: it works from directory file descriptors only. Each folder is
opened relative to its parent's fd with O_NOFOLLOW | O_DIRECTORY, then checked to be the folder
that was looked at (st_dev, st_ino) and on the root's mount (st_dev and the mount id of
/proc/self/fdinfo); entries are looked at with fstatat(AT_SYMLINK_NOFOLLOW) and removed with
unlinkat / rmdir relative to the same fd. A folder swapped for a symlink between the look and
the open fails the open (ELOOP) and is left. A symlink is unlinked, never followed. The walk is
iterative and keeps at most _MAX_OPEN_DIRS folders open (Lambda allows 1,024 fds): a closed
ancestor is reopened through ".." of its child and must be the same folder (st_dev, st_ino), or
the purge stops. (On Lambda /tmp is its own file system, so no folder can be moved out of it
while the purge works inside; on a root that is not a mount point, such a rename is a race this
module does not close.)

Counting: `bytes` is allocated bytes (st_blocks * 512) of the files, symlinks and folders
removed; an inode with several hard links counts only when its last link goes. In a dry run
nothing is removed and everything is counted as if it were, so a dry run reports the bytes that
a real purge of the same tree then frees. After a real purge, /proc is read again: files it
unlinked that a process still holds (opened after the first read) are taken out of `files` and
`bytes` and counted in `purged_but_open`, since their space is not freed yet.

Time: each purge has a budget, at most MAX_BUDGET_S and at most DEADLINE_SHARE of the time left
before the invocation's deadline: the purge runs in the post-runtime phase, which the user pays
for and which delays the next invocation, and overrunning the deadline times the invocation out.
When the budget runs out the purge stops where it is (`truncated`); the rest goes next time.

Errors: `purge_tree` never raises. A vanished entry (ENOENT) is no error; an entry that cannot
be read or removed is left, with the folders leading to it, and counted in `errors`.
"""

from __future__ import annotations

import array
import errno
import os
import stat
import sys
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Final, Protocol

from tmp_monitor.config import Config, PurgeMode
from tmp_monitor.openfiles import held_files, unlinked_open_files

__all__ = [
    "DEADLINE_SHARE",
    "MAX_BUDGET_S",
    "Keep",
    "PurgeResult",
    "Purger",
    "budget_s",
    "make_purger",
    "purge_tree",
]

# 10,000 to 30,000 small files (unlink costs 30-100 us of kernel time on ext4, whatever Python
# does): a bigger /tmp is emptied over several invocations.
MAX_BUDGET_S: Final = 1.0
DEADLINE_SHARE: Final = 0.5
_MAX_OPEN_DIRS: Final = 32  # each with its listing's fd: at most 66 fds
_LIST_CHUNK: Final = 1024
_DIR_FLAGS: Final = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


@dataclass(frozen=True, slots=True)
class PurgeResult:
    """What one purge did (or, in a dry run, would have done)."""

    bytes: int  # allocated bytes freed: files, symlinks and folders; hard links at the last one
    files: int  # regular files and symlinks unlinked (each link), not the purged_but_open ones
    dirs: int  # folders removed
    purged_but_open: int  # files unlinked that a process turned out to hold: not freed yet
    kept_open: int  # files held open or mapped, folders a process works in
    kept_pattern: int  # entries the keep list keeps (a kept folder counts once)
    kept_mounts: int  # mount points under the root, left whole
    skipped_other: int  # sockets, FIFOs, devices
    errors: int  # entries that could not be read or removed, and so were left
    unreadable_processes: int  # processes of the purge's own uid whose open files are unknown
    truncated: bool  # stopped at the time budget; the rest goes at the next invocation
    dry_run: bool  # nothing was removed; the figures are what a purge would have done
    duration_ms: float
    first_error: str = ""  # the reason of the first error (never a file name)


class Keep(Protocol):
    """What the purge asks of a keep list (`keep.KeepList`)."""

    def keeps(self, relpath: str, is_dir: bool = False) -> bool: ...

    def may_keep_below(self, reldir: str) -> bool: ...


class Purger(Protocol):
    def __call__(self, used_bytes: int, deadline_ms: float | None = None) -> PurgeResult | None:
        """Purge after an invocation whose end-of-runtime walk found used_bytes (TmpUsedBytes).

        deadline_ms is the invocation's deadline (the INVOKE event's deadlineMs, epoch ms), which
        bounds the purge's time; None means MAX_BUDGET_S. Returns None when the purge did not
        run (purge off, or below the threshold). Never raises.
        """
        ...


def budget_s(deadline_ms: float | None, now_s: float | None = None) -> float:
    """The purge's time budget given the invocation's deadline (epoch ms)."""
    if deadline_ms is None:
        return MAX_BUDGET_S
    left_s = deadline_ms / 1000 - (time.time() if now_s is None else now_s)
    return max(0.0, min(MAX_BUDGET_S, left_s * DEADLINE_SHARE))


@dataclass(slots=True)
class _Dir:
    """A folder on the walk's stack."""

    name: str  # its name in the parent
    ident: tuple[int, int]  # (st_dev, st_ino), to recognise it when reopened
    fd: int  # -1 while closed (see _MAX_OPEN_DIRS)
    names: list[str]  # entries read and not visited yet
    # The rest of its entries while it is open, read _LIST_CHUNK at a time: a folder of a
    # million files must not cost a million names of memory (the monitor shares the
    # function's memory). A started listing holds an fd of its own.
    listing: Generator[str, None, None] | None
    bytes: int  # its own allocated bytes, freed with it
    # Its path relative to the root while it is the deepest folder on the stack, if its parent
    # checks keep patterns ("" otherwise): one path at a time, or a deep tree of long names
    # would cost memory quadratic in its depth.
    rel: str
    check_keep: bool  # the keep list may keep something below it
    retained: bool = False  # it holds something that stays, so it stays


@dataclass(slots=True)
class _Tally:
    bytes: int = 0
    files: int = 0
    dirs: int = 0
    kept_open: int = 0
    kept_pattern: int = 0
    kept_mounts: int = 0
    skipped_other: int = 0
    errors: int = 0
    first_error: str = ""
    truncated: bool = False
    links: dict[int, int] = field(default_factory=dict)  # inode -> links not removed yet
    # Inodes whose last link went, 8 bytes each (a set would take ~60 per file of a huge tree);
    # searched only for the few files found held after the purge.
    unlinked: array.array[int] = field(default_factory=lambda: array.array("Q"))

    def error(self, why: str) -> None:
        self.errors += 1
        if not self.first_error:
            self.first_error = why


@dataclass(frozen=True, slots=True)
class _Walk:
    dev: int
    mount_id: int
    keep: Keep
    held: frozenset[int]
    dry_run: bool
    proc_root: str


def _reason(error: OSError) -> str:
    # str(error) would name the file: names can be sensitive, so only the reason is logged.
    return os.strerror(error.errno) if error.errno else type(error).__name__


def _mount_id(proc_root: str, fd: int) -> int | None:
    try:
        info = os.open(f"{proc_root}/self/fdinfo/{fd}", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        data = os.read(info, 4096)
    except OSError:
        return None
    finally:
        os.close(info)
    for line in data.splitlines():
        if line.startswith(b"mnt_id:"):
            return int(line[7:])
    return None


def _last_link(links: dict[int, int], st: os.stat_result) -> bool:
    """Counts one link of st's inode as removed; True when it was the last one."""
    if st.st_nlink <= 1 and st.st_ino not in links:
        return True
    # After a real unlink the next link shows one link fewer, in a dry run the same count:
    # either way the count first seen, minus the links removed since, says when none is left.
    left = links.pop(st.st_ino, st.st_nlink) - 1
    if left > 0:
        links[st.st_ino] = left
        return False
    return True


def _enter(
    parent: _Dir, name: str, rel: str, st: os.stat_result, walk: _Walk, tally: _Tally
) -> _Dir | None:
    """Opens the folder name of parent for the walk, or leaves it (and parent) in place."""
    try:
        fd = os.open(name, _DIR_FLAGS, dir_fd=parent.fd)
    except FileNotFoundError:
        return None
    except OSError as error:
        parent.retained = True
        if error.errno not in (errno.ELOOP, errno.ENOTDIR):  # swapped meanwhile: next time
            tally.error(_reason(error))
        return None
    try:
        opened = os.fstat(fd)
        if (opened.st_dev, opened.st_ino) != (st.st_dev, st.st_ino):
            os.close(fd)  # swapped for another folder meanwhile: next time
            parent.retained = True
            return None
        if _mount_id(walk.proc_root, fd) != walk.mount_id:
            os.close(fd)  # a bind mount of a folder of the same file system
            parent.retained = True
            tally.kept_mounts += 1
            return None
    except OSError as error:
        os.close(fd)
        parent.retained = True
        tally.error(_reason(error))
        return None
    check_keep = parent.check_keep and walk.keep.may_keep_below(rel)
    child = _Dir(
        name=name,
        ident=(st.st_dev, st.st_ino),
        fd=fd,
        names=[],
        listing=_entries(fd),
        bytes=st.st_blocks * 512,
        rel=rel,
        check_keep=check_keep,
    )
    if st.st_ino in walk.held:
        child.retained = True  # a process works in it: empty it, keep the folder
        tally.kept_open += 1
    return child


def _visit(parent: _Dir, name: str, walk: _Walk, tally: _Tally) -> _Dir | None:
    """Removes the entry name of parent, or leaves it; returns the folder to walk into."""
    try:
        st = os.stat(name, dir_fd=parent.fd, follow_symlinks=False)
    except FileNotFoundError:
        return None
    except OSError as error:
        parent.retained = True
        tally.error(_reason(error))
        return None
    if st.st_dev != walk.dev:
        parent.retained = True  # a mount point of another file system
        tally.kept_mounts += 1
        return None
    mode = st.st_mode
    is_dir = stat.S_ISDIR(mode)
    if not (is_dir or stat.S_ISREG(mode) or stat.S_ISLNK(mode)):
        parent.retained = True
        tally.skipped_other += 1
        return None
    rel = ""
    if parent.check_keep:
        rel = f"{parent.rel}/{name}" if parent.rel else name
        if walk.keep.keeps(rel, is_dir):
            parent.retained = True
            tally.kept_pattern += 1
            return None
    if is_dir:
        return _enter(parent, name, rel, st, walk, tally)
    if st.st_ino in walk.held and stat.S_ISREG(mode):
        parent.retained = True
        tally.kept_open += 1
        return None
    if not walk.dry_run:
        try:
            os.unlink(name, dir_fd=parent.fd)
        except FileNotFoundError:
            return None
        except OSError as error:
            parent.retained = True
            tally.error(_reason(error))
            return None
    tally.files += 1
    if _last_link(tally.links, st):
        tally.bytes += st.st_blocks * 512
        if not walk.dry_run and stat.S_ISREG(mode):
            tally.unlinked.append(st.st_ino)
    return None


def _remove_dir(parent: _Dir, child: _Dir, walk: _Walk, tally: _Tally) -> None:
    if child.retained:
        parent.retained = True
        return
    if not walk.dry_run:
        try:
            os.rmdir(child.name, dir_fd=parent.fd)
        except FileNotFoundError:
            return
        except OSError as error:
            parent.retained = True
            if error.errno not in (errno.ENOTEMPTY, errno.EEXIST):  # ENOTEMPTY: a new entry
                tally.error(_reason(error))
            return
    tally.dirs += 1
    tally.bytes += child.bytes


def _entries(fd: int) -> Generator[str, None, None]:
    with os.scandir(fd) as entries:  # on a dup of fd
        for entry in entries:
            yield entry.name


def _read(folder: _Dir, tally: _Tally, limit: int | None) -> None:
    """Moves up to limit (None: all) more entries of folder's listing into folder.names."""
    if folder.listing is None:
        return
    try:
        for name in folder.listing:
            folder.names.append(name)
            if limit is not None and len(folder.names) >= limit:
                return
    except OSError as error:
        folder.retained = True  # not all of it could be read: it cannot be known empty
        tally.error(_reason(error))
    folder.listing.close()
    folder.listing = None


def _next_name(folder: _Dir, tally: _Tally) -> str | None:
    if not folder.names:
        _read(folder, tally, _LIST_CHUNK)
    return folder.names.pop() if folder.names else None


def _reopen(parent: _Dir, child_fd: int) -> bool:
    """Reopens parent's closed fd as ".." of its child; False unless it is the same folder."""
    try:
        fd = os.open("..", _DIR_FLAGS, dir_fd=child_fd)
    except OSError:
        return False
    try:
        st = os.fstat(fd)
    except OSError:
        os.close(fd)
        return False
    if (st.st_dev, st.st_ino) != parent.ident:
        os.close(fd)
        return False
    parent.fd = fd
    return True


def _walk(root: _Dir, walk: _Walk, tally: _Tally, deadline: float) -> None:
    stack = [root]
    try:
        while True:
            top = stack[-1]
            if time.monotonic() >= deadline:
                tally.truncated = True  # the folders on the stack stay: they are not empty
                return
            name = _next_name(top, tally)
            if name is not None:
                child = _visit(top, name, walk, tally)
                if child is not None:
                    if top.check_keep:
                        top.rel = ""  # the child's path holds it; rebuilt when the child is done
                    stack.append(child)
                    if len(stack) > _MAX_OPEN_DIRS + 1:
                        oldest = stack[-_MAX_OPEN_DIRS - 1]
                        if oldest.fd >= 0:
                            _read(oldest, tally, None)  # its listing's fd goes too
                            os.close(oldest.fd)
                            oldest.fd = -1
                continue
            if len(stack) == 1:
                return
            stack.pop()
            parent = stack[-1]
            try:
                if parent.fd < 0 and not _reopen(parent, top.fd):
                    tally.error("a folder was moved while the purge was in it")
                    tally.truncated = True
                    return
            finally:
                os.close(top.fd)
            if parent.check_keep:  # top.rel is parent.rel + "/" + top.name, or top.name
                parent.rel = top.rel[: max(0, len(top.rel) - len(top.name) - 1)]
            _remove_dir(parent, top, walk, tally)
    finally:
        for folder in stack:
            if folder.listing is not None:
                folder.listing.close()
        for folder in stack[1:]:
            if folder.fd >= 0:
                os.close(folder.fd)


def purge_tree(
    root: str,
    keep: Keep,
    *,
    dry_run: bool = False,
    budget_s: float = MAX_BUDGET_S,
    proc_root: str = "/proc",
) -> PurgeResult:
    """Removes everything below root that is not kept, held open, another mount or special.

    Never raises: a purge that cannot start (root or proc_root unreadable) removes nothing
    and reports one error.
    """
    start = time.monotonic()
    tally = _Tally()
    unreadable = 0
    purged_but_open = 0
    try:
        root_fd = os.open(root, _DIR_FLAGS)
    except OSError as error:
        tally.error(_reason(error))
    else:
        try:
            root_st = os.fstat(root_fd)
            mount_id = _mount_id(proc_root, root_fd)
            if mount_id is None:
                # Without /proc neither mounts nor open files can be seen: removing then could
                # break a database the function keeps open.
                tally.error(f"{proc_root} cannot be read")
            elif (held := held_files(proc_root, root_st.st_dev)).unreadable:
                # A process of the function's user whose fds cannot be read (not dumpable, as
                # browser helpers make themselves) may hold a file open: remove nothing.
                unreadable = held.unreadable
            else:
                walk = _Walk(root_st.st_dev, mount_id, keep, held.inodes, dry_run, proc_root)
                check_keep = keep.may_keep_below("")
                ident = (root_st.st_dev, root_st.st_ino)
                listing = _entries(root_fd)
                top = _Dir("", ident, root_fd, [], listing, 0, "", check_keep)
                _walk(top, walk, tally, start + budget_s)
                if tally.unlinked:
                    after = unlinked_open_files(proc_root, root_st.st_dev)
                    for inode, size in after.items():
                        if inode not in held.inodes and inode in tally.unlinked:
                            purged_but_open += 1
                            tally.bytes = max(0, tally.bytes - size)
                            tally.files = max(0, tally.files - 1)
        except OSError as error:
            tally.error(_reason(error))
        except Exception as error:  # never raise into the monitor's loop
            tally.error(type(error).__name__)
        finally:
            os.close(root_fd)
    return PurgeResult(
        bytes=tally.bytes,
        files=tally.files,
        dirs=tally.dirs,
        purged_but_open=purged_but_open,
        kept_open=tally.kept_open,
        kept_pattern=tally.kept_pattern,
        kept_mounts=tally.kept_mounts,
        skipped_other=tally.skipped_other,
        errors=tally.errors,
        unreadable_processes=unreadable,
        truncated=tally.truncated,
        dry_run=dry_run,
        duration_ms=(time.monotonic() - start) * 1000,
        first_error=tally.first_error,
    )


def _stderr(line: str) -> None:
    print(f"tmp-monitor: {line}", file=sys.stderr, flush=True)


def _no_purge(used_bytes: int, deadline_ms: float | None = None) -> PurgeResult | None:
    return None


def make_purger(
    config: Config,
    *,
    root: str,  # no default: a purger of the wrong folder deletes what it finds there
    proc_root: str = "/proc",
    warn: Callable[[str], None] = _stderr,
) -> Purger:
    """The purger config asks for (a no-op twin when the purge is off).

    It says on warn, never on stdout: each purge that stops at its budget; the first time a
    reason for errors or unreadable processes appears (each reason once: they tend to repeat at
    every invocation).
    """
    if config.purge is PurgeMode.OFF:
        return _no_purge
    said: set[str] = set()

    def once(key: str, line: str) -> None:
        if key not in said:
            said.add(key)
            warn(line)

    def purger(used_bytes: int, deadline_ms: float | None = None) -> PurgeResult | None:
        if config.purge is PurgeMode.THRESHOLD and used_bytes <= config.purge_threshold_bytes:
            return None
        budget = budget_s(deadline_ms)
        result = purge_tree(
            root, config.keep, dry_run=config.dry_run, budget_s=budget, proc_root=proc_root
        )
        verb = "would have freed" if result.dry_run else "freed"
        if result.truncated:
            warn(
                f"purge: stopped at its time budget of {budget * 1000:.0f} ms; {verb}"
                f" {result.bytes} bytes in {result.files} files, the rest goes at the next"
                " invocation"
            )
        if result.errors:
            once(
                f"error:{result.first_error}",
                f"purge: {result.errors} entries of {root} could not be read or removed"
                f" ({result.first_error}); they and their folders are left",
            )
        if result.unreadable_processes:
            once(
                "unreadable",
                f"purge: the open files of {result.unreadable_processes} processes cannot be"
                " read; nothing is purged while they run (they may hold any file open)",
            )
        return result

    return purger
