"""Makes /tmp hostile, then says what a walk of /tmp should find (event `op`):

- `many`: `count` (100,000) empty files in folders of 1,000;
- `deep`: a chain of `depth` (1,000) folders named `name` (`level`), one file at the bottom
  (deeper than PATH_MAX allows to name by one path);
- `unreadable`: files and folders without permissions (mode 000, r-only, x-only folders);
- `churn`: 1,000 stable files, and a thread that goes on creating and deleting files in
  /tmp/churn while the monitor walks (stopped by the next invocation);
- `fill`: /tmp full to its last block (fallocate, then writes until ENOSPC), held `hold_ms`
  (300) while the monitor samples, and kept.

Every op returns `expected`: {files, bytes} of its own walk of /tmp, done as the monitor's
should be (lstat, no symlinks, hard links once, allocated bytes, root's lost+found left out),
by changing into each folder so that no path length limit applies; and `seconds` it took.
"""

import errno
import os
import sys
import threading
import time

sys.setrecursionlimit(100_000)
_churn_stop = threading.Event()
_churner = []  # the churn thread, joined by the next invocation


def _walk_here(seen, totals):
    with os.scandir(".") as it:
        entries = list(it)
    for entry in entries:
        try:
            st = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        is_dir = entry.is_dir(follow_symlinks=False)
        if st.st_nlink > 1 and not is_dir:
            if (st.st_dev, st.st_ino) in seen:
                continue
            seen.add((st.st_dev, st.st_ino))
        totals[1] += st.st_blocks * 512
        if is_dir:
            try:
                os.chdir(entry.name)
            except OSError:
                continue
            try:
                _walk_here(seen, totals)
            except OSError:
                pass
            finally:
                os.chdir("..")
        elif entry.is_file(follow_symlinks=False):
            totals[0] += 1


def expected():
    here = os.getcwd()
    totals = [0, 0]
    os.chdir("/tmp")
    try:
        with os.scandir(".") as it:
            top = [e.name for e in it]
        seen = set()
        for name in top:
            if name == "lost+found":
                continue
            # the same walk, one top-level entry at a time
            st = os.lstat(name)
            if os.path.isdir(name) and not os.path.islink(name):
                totals[1] += st.st_blocks * 512
                try:
                    os.chdir(name)
                except OSError:
                    continue
                try:
                    _walk_here(seen, totals)
                except OSError:
                    pass
                finally:
                    os.chdir("/tmp")
            else:
                if st.st_nlink > 1:
                    if (st.st_dev, st.st_ino) in seen:
                        continue
                    seen.add((st.st_dev, st.st_ino))
                totals[1] += st.st_blocks * 512
                if os.path.isfile(name) and not os.path.islink(name):
                    totals[0] += 1
    finally:
        os.chdir(here)
    return {"files": totals[0], "bytes": totals[1]}


def many(count):
    for i in range(0, count, 1000):
        folder = f"/tmp/many/{i // 1000}"
        os.makedirs(folder)
        for j in range(min(1000, count - i)):
            os.close(os.open(f"{folder}/{j}", os.O_CREAT | os.O_WRONLY, 0o644))


def deep(depth, name):
    here = os.getcwd()
    os.mkdir("/tmp/deep")
    os.chdir("/tmp/deep")
    try:
        for _ in range(depth):
            os.mkdir(name)
            os.chdir(name)
        with open("bottom.bin", "wb") as f:
            f.write(b"b" * 10000)
    finally:
        os.chdir(here)


def unreadable():
    base = "/tmp/locked"
    os.mkdir(base)
    for mode, folder in ((0o000, "none"), (0o400, "read-only"), (0o100, "search-only")):
        path = f"{base}/{folder}"
        os.mkdir(path)
        with open(f"{path}/inside.bin", "wb") as f:
            f.write(b"i" * 5000)
        os.chmod(path, mode)
    for mode in (0o000, 0o200):
        path = f"{base}/file-{mode:o}.bin"
        with open(path, "wb") as f:
            f.write(b"f" * 7000)
        os.chmod(path, mode)
    os.symlink("/etc/passwd", f"{base}/link-out")
    os.symlink("none", f"{base}/link-in")
    os.link(f"{base}/file-0.bin", f"{base}/hard-link.bin")


def _churn(folder):
    n = 0
    while not _churn_stop.is_set():
        path = f"{folder}/{n % 200}"
        try:
            if n % 400 < 200:
                with open(path, "wb") as f:
                    f.write(b"c" * 4096)
            else:
                os.unlink(path)
            if n % 50 == 0:
                sub = f"{folder}/sub{n % 7}"
                os.mkdir(sub)
                os.rmdir(sub)
        except OSError:
            pass
        n += 1


def churn():
    os.makedirs("/tmp/stable")
    for i in range(1000):
        with open(f"/tmp/stable/{i}", "wb") as f:
            f.write(b"s")
    os.makedirs("/tmp/churn")
    _churn_stop.clear()
    thread = threading.Thread(target=_churn, args=("/tmp/churn",), daemon=True)
    thread.start()
    _churner.append(thread)
    time.sleep(0.2)


def fill(hold_ms):
    path = "/tmp/fill.bin"
    st = os.statvfs("/tmp")
    fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o644)
    try:
        room = st.f_bavail * st.f_frsize - (1 << 20)
        if room > 0:
            os.posix_fallocate(fd, 0, room)
        os.lseek(fd, 0, os.SEEK_END)
        block = b"z" * 4096
        while True:
            try:
                os.write(fd, block)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                break
        os.fsync(fd)
    finally:
        os.close(fd)
    full = os.statvfs("/tmp").f_bavail
    time.sleep(hold_ms / 1000)
    return full


def handler(event, context):
    event = event or {}
    op = event.get("op", "")
    started = time.monotonic()
    _churn_stop.set()
    while _churner:
        _churner.pop().join()
    extra = {}
    if op == "many":
        many(int(event.get("count", 100_000)))
    elif op == "deep":
        deep(int(event.get("depth", 1000)), event.get("name", "level"))
    elif op == "unreadable":
        unreadable()
    elif op == "churn":
        churn()
    elif op == "fill":
        extra["free_blocks"] = fill(int(event.get("hold_ms", 300)))
    if op != "churn":
        extra["expected"] = expected()
    return {"op": op, "seconds": time.monotonic() - started, **extra}
