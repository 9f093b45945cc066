"""The runtime's own files (/var/lang: Node.js, or Python and its standard library) as a
read-only ext4 image, built once per set of inputs and shared by every environment.

Why an image: page cache is charged to the first reader. Run from the host's root, node's 99 MB
and Python's standard library are found already cached on behalf of the host, so an environment
started at 8-10 MB of Max Memory Used where Lambda shows 35-65 MB. Each environment mounts the
image through a loop device of its own (nsinit), so its page cache starts cold and whatever the
runtime reads is charged to that environment, as on Lambda.

Cache: WORK_ROOT/cache/<runtime>-<hash>.img, the hash covering every input file's path, size and
mtime and the build options, so an upgraded interpreter yields a new name and a new build (older
images of that runtime are removed then). Built under an exclusive lock, renamed into place only
once complete (a partial build never has the final name), so concurrent sandboxes build once and
an image that fails the superblock check is rebuilt.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import subprocess
from pathlib import Path

from lambda_sandbox.preflight import HostError

CACHE_DIR_NAME = "cache"
# Bump when the layout or the mkfs options below change: old images then get a new name.
FORMAT = "1"
# Never read at run time, and a third of Python's 54 MB (the static libpython): left out.
EXCLUDED_DIRS = frozenset({"config-3.11-x86_64-linux-gnu", "config-3.11-aarch64-linux-gnu"})
MIB = 1 << 20
SUPERBLOCK = 1024  # ext4's superblock: magic 0xEF53 at +0x38, block count at +4, log size +24


def _walk(source: Path) -> list[tuple[str, Path]]:
    """(path relative to source, host path) of source and everything under it, sorted."""
    if not source.is_dir() or source.is_symlink():
        return [("", source)]
    found: list[tuple[str, Path]] = [("", source)]
    for dirpath, dirnames, filenames in os.walk(source):
        dirnames[:] = sorted(d for d in dirnames if d not in EXCLUDED_DIRS)
        base = Path(dirpath)
        for name in dirnames + sorted(filenames):
            path = base / name
            found.append((str(path.relative_to(source)), path))
    return found


def _digest(files: tuple[tuple[Path, str], ...]) -> str:
    h = hashlib.sha256(f"format {FORMAT}\n".encode())
    for source, rel in files:
        for sub, path in _walk(source):
            st = os.lstat(path)
            h.update(
                f"{rel}/{sub}\0{source}\0{st.st_mode}\0{st.st_size}\0{st.st_mtime_ns}\n".encode()
            )
    return h.hexdigest()[:16]


# Stat-ing Python's 1,400 files costs 20 ms, paid once per process, not per environment (a
# run's resets create new ones); an interpreter upgraded under a running sandbox is not seen.
_digests: dict[tuple[tuple[Path, str], ...], str] = {}


def _complete(image: Path) -> bool:
    """An ext4 superblock, and the file as long as the file system it describes (a copy cut
    short, or a file that is not an image, is rebuilt)."""
    try:
        with image.open("rb") as f:
            f.seek(SUPERBLOCK)
            sb = f.read(1024)
            size = os.fstat(f.fileno()).st_size
    except OSError:
        return False
    if len(sb) < 1024 or sb[0x38:0x3A] != b"\x53\xef":
        return False
    blocks = int.from_bytes(sb[4:8], "little")
    block_size = 1024 << int.from_bytes(sb[24:28], "little")
    return blocks > 0 and size >= blocks * block_size


def _link_or_copy(source: str, target: str) -> None:
    """Hard links where the host's files share the cache's file system (no copy); else a copy."""
    try:
        os.link(source, target, follow_symlinks=False)
    except OSError:
        shutil.copy2(source, target, follow_symlinks=False)


def _stage(files: tuple[tuple[Path, str], ...], stage: Path) -> int:
    """Lay the files out under stage; returns their size rounded up to 4 KiB blocks."""
    stage.mkdir(mode=0o755)
    for source, rel in files:
        target = stage / rel
        target.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        if source.is_dir() and not source.is_symlink():
            shutil.copytree(
                source,
                target,
                symlinks=True,
                ignore=lambda _d, names: [n for n in names if n in EXCLUDED_DIRS],
                copy_function=_link_or_copy,
            )
        else:
            _link_or_copy(str(source), str(target))
    total = 0
    for _sub, path in _walk(stage):
        total += 4096 + -(-path.lstat().st_size // 4096) * 4096
    return total


def _build(files: tuple[tuple[Path, str], ...], image: Path, mkfs: str) -> None:
    stage = image.with_name(f"{image.stem}.stage-{os.getpid()}")
    partial = image.with_name(f"{image.stem}.partial-{os.getpid()}")
    try:
        shutil.rmtree(stage, ignore_errors=True)
        used = _stage(files, stage)
        entries = len(_walk(stage))
        size = -(-(used + used // 8 + 8 * MIB) // MIB) * MIB
        with partial.open("wb") as f:
            f.truncate(size)
        # No journal: the image is only ever mounted read-only.
        argv = [mkfs, "-q", "-F", "-t", "ext4", "-b", "4096", "-m", "0"]
        argv += ["-N", str(entries + 64), "-O", "^has_journal,^resize_inode"]
        argv += ["-E", "root_owner=0:0", "-d", str(stage), str(partial)]
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise HostError(f"mkfs.ext4 of the runtime image {image.name} failed: {done.stderr}")
        with partial.open("rb+") as f:
            os.fsync(f.fileno())
        os.chmod(partial, 0o644)
        os.replace(partial, image)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()


def ensure(name: str, files: tuple[tuple[Path, str], ...], work_root: Path, mkfs: str) -> Path:
    """The cached image holding files (host path -> path relative to /var/lang), built if
    missing, stale or incomplete."""
    cache = work_root / CACHE_DIR_NAME
    cache.mkdir(mode=0o755, parents=True, exist_ok=True)
    try:
        digest = _digests.get(files) or _digests.setdefault(files, _digest(files))
        image = cache / f"{name}-{digest}.img"
    except OSError as exc:
        raise HostError(f"runtime files of {name} unreadable: {exc}") from exc
    if _complete(image):
        return image
    with (cache / f"{name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a concurrent sandbox may be building it right now
        if not _complete(image):
            for old in cache.glob(f"{name}-*"):  # other versions, and a partial one of this
                with contextlib.suppress(OSError):
                    if old.is_dir():
                        shutil.rmtree(old)
                    else:
                        old.unlink()
            try:
                _build(files, image, mkfs)
            except OSError as exc:
                raise HostError(f"cannot build the runtime image {image}: {exc}") from exc
    return image
