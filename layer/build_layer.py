"""Build the tmp-monitor layer zips, one per architecture (SPEC sections 2-4, 8, 10).

Each zip holds a private Python: Debian bookworm's python3.11 with its own glibc and loader
(from .deb packages pinned in layer/debs.lock), the wheels pinned in layer/wheels-<arch>.lock
(the versions come from pyproject.toml), the package tmp_monitor, and the launcher
extensions/tmp-monitor. Nothing of the execution environment is used but the kernel and /bin/sh.

    layer/build-layer.sh [--out DIR] [--force]   build DIR/tmp-monitor-{x86_64,arm64}.zip
    layer/build-layer.sh --relock                resolve the newest .debs and wheels, rewrite locks

Downloads are cached under build/cache (checked against the locks on every build); an unchanged
input set (sources, locks, this script) skips the build.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import struct
import subprocess
import sys
import tomllib
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LAYER_SRC = ROOT / "layer"
BUILD = ROOT / "build"
CACHE = BUILD / "cache"
DEBS_LOCK = LAYER_SRC / "debs.lock"
NAME = "tmp-monitor"
PYVER = "3.11"

# Debian packages the runtime is made of. libssl3 is left out on purpose (SPEC section 3).
DEBS = (
    "python3.11-minimal",
    "libpython3.11-minimal",
    "libpython3.11-stdlib",
    "libc6",
    "zlib1g",
    "libexpat1",
    "libffi8",
    "libgcc-s1",
    "gcc-12-base",  # nothing but the copyright of libgcc-s1, which points there
)

# Stdlib packages and modules nobody in the layer imports: (sub)paths of lib/python3.11.
STDLIB_DROP = (
    "sqlite3",
    "curses",
    "dbm",
    "tkinter",
    "lib2to3",
    "ensurepip",
    "idlelib",
    "test",
    "pydoc_data",
    "distutils",
    "turtledemo",
    "turtle.py",
    "ssl.py",  # without _ssl it cannot import anyway; better no module than a broken one
    "venv",
    "unittest",
    "__phello__",
    "sitecustomize.py",  # Debian's, a link to /etc/python3.11/ (and -S never imports it)
    "site-packages",
    "dist-packages",
)
# Extension modules of lib-dynload left out: no TLS (ssl, _hashlib: hashlib falls back to its
# builtin _sha* modules), no databases, terminals or audio, no test modules, no CJK codecs, and
# the ones whose only job is a library we do not ship (libmpdec, libbz2, liblzma, libuuid,
# libcrypt; decimal and uuid fall back to pure Python).
DYNLOAD_DROP = re.compile(
    r"^(_ssl|_hashlib|_sqlite3|_curses|_curses_panel|_dbm|_gdbm|_tkinter|readline|nis"
    r"|_crypt|_decimal|_bz2|_lzma|_uuid|_test\w*|_ctypes_test|_xxtestfuzz|xxlimited\w*"
    r"|_xxsubinterpreters|audioop|ossaudiodev|_codecs_\w+|_multibytecodec|_lsprof)\."
)
# Loaded by glibc with dlopen, so absent from every DT_NEEDED list.
DLOPENED = ("libgcc_s.so.1",)

# A fixed time for every entry of the zip (zip cannot store dates before 1980).
ZIP_DATE = (1980, 1, 2, 0, 0, 0)
SOURCE_DATE_EPOCH = "315619200"  # 1980-01-02T00:00:00Z


@dataclass(frozen=True)
class Arch:
    name: str  # the layer's name for it (Lambda's)
    deb: str  # Debian's
    triplet: str
    loader: str
    wheel_platform: str


ARCHES = (
    Arch("x86_64", "amd64", "x86_64-linux-gnu", "ld-linux-x86-64.so.2", "manylinux2014_x86_64"),
    Arch("arm64", "arm64", "aarch64-linux-gnu", "ld-linux-aarch64.so.1", "manylinux2014_aarch64"),
)


@dataclass(frozen=True)
class DebPin:
    arch: str
    package: str
    version: str
    sha256: str

    @property
    def filename(self) -> str:
        return f"{self.package}_{self.version.replace(':', '%3a')}_{self.arch}.deb"


def say(message: str) -> None:
    print(f"build-layer: {message}", file=sys.stderr, flush=True)


class BuildError(Exception):
    pass


def run(
    cmd: list[str],
    *,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    quiet: bool = False,
) -> None:
    try:
        out = subprocess.DEVNULL if quiet else None
        subprocess.run(cmd, check=True, text=True, env=env, cwd=cwd, stdout=out)
    except subprocess.CalledProcessError as exc:
        raise BuildError(f"command failed ({exc.returncode}): {' '.join(cmd)}") from exc
    except OSError as exc:
        raise BuildError(f"cannot run {cmd[0]}: {exc}") from exc


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# ---------------------------------------------------------------------------- pins


def pinned_requirements() -> list[str]:
    """The layer's dependencies as pyproject.toml pins them (the one place they are written)."""
    with (ROOT / "pyproject.toml").open("rb") as f:
        deps: list[str] = tomllib.load(f)["project"]["dependencies"]
    for dep in deps:
        if not re.fullmatch(r"[A-Za-z0-9_.-]+==[A-Za-z0-9_.+!-]+", dep):
            raise BuildError(f"pyproject.toml: dependency {dep!r} is not pinned with ==")
    return deps


def read_deb_lock() -> list[DebPin]:
    pins = []
    for line in DEBS_LOCK.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            arch, package, version, sha = line.split()
            pins.append(DebPin(arch, package, version, sha))
    return pins


def wheel_lock_path(arch: Arch) -> Path:
    return LAYER_SRC / f"wheels-{arch.name}.lock"


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def read_wheel_lock(arch: Arch) -> dict[str, tuple[str, str]]:
    """name -> (version, sha256) from a pip requirements file with one hash per line."""
    pins = {}
    for line in wheel_lock_path(arch).read_text().splitlines():
        m = re.fullmatch(r"([A-Za-z0-9_.-]+)==(\S+) --hash=sha256:([0-9a-f]{64})", line.strip())
        if m:
            pins[normalize(m[1])] = (m[2], m[3])
    return pins


def check_locks_match_pyproject() -> None:
    for arch in ARCHES:
        pins = read_wheel_lock(arch)
        for dep in pinned_requirements():
            name, version = dep.split("==")
            if pins.get(normalize(name), ("",))[0] != version:
                raise BuildError(
                    f"{wheel_lock_path(arch).name} does not pin {dep} of pyproject.toml: "
                    "run layer/build-layer.sh --relock"
                )
    locked = {(p.arch, p.package) for p in read_deb_lock()}
    wanted = {(a.deb, d) for a in ARCHES for d in DEBS}
    if locked != wanted:
        raise BuildError("debs.lock does not list exactly DEBS: run layer/build-layer.sh --relock")


# ---------------------------------------------------------------------------- apt


def mirrors() -> tuple[str, str]:
    """The machine's Debian and Debian security mirrors, from its APT sources."""
    found = {"debian": "", "security": ""}
    files = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
    for path in files:
        if not path.is_file() or path.suffix not in (".list", ".sources", ""):
            continue
        text = path.read_text(errors="replace")
        entries: list[tuple[str, list[str]]] = []
        for m in re.finditer(r"^deb\s+(?:\[[^]]*\]\s+)?(\S+)\s+(\S+)", text, re.M):
            entries.append((m[1], [m[2]]))
        for stanza in re.split(r"\n\s*\n", text):
            uris = re.search(r"^URIs:\s*(\S+)", stanza, re.M)
            suite_line = re.search(r"^Suites:\s*(.+)$", stanza, re.M)
            if uris and suite_line and re.search(r"^Types:.*\bdeb\b", stanza, re.M):
                entries.append((uris[1], suite_line[1].split()))
        for uri, suites in entries:
            key = "security" if any(s.endswith("-security") for s in suites) else "debian"
            if any(s.startswith("bookworm") for s in suites) and not found[key]:
                found[key] = uri.rstrip("/")
    return (
        os.environ.get("TMP_MONITOR_DEBIAN_MIRROR")
        or found["debian"]
        or "http://deb.debian.org/debian",
        os.environ.get("TMP_MONITOR_DEBIAN_SECURITY_MIRROR")
        or found["security"]
        or "http://deb.debian.org/debian-security",
    )


def apt_env(arch: Arch) -> dict[str, str]:
    """A private APT configuration for one architecture: own sources, lists and cache."""
    base = BUILD / "apt" / arch.deb
    etc = base / "etc"
    for sub in ("etc/apt.conf.d", "etc/preferences.d", "etc/trusted.gpg.d", "etc/sources.list.d"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    (base / "state" / "lists" / "partial").mkdir(parents=True, exist_ok=True)
    (base / "cache" / "archives" / "partial").mkdir(parents=True, exist_ok=True)
    (base / "state" / "status").touch()
    debian, security = mirrors()
    keyring = "/usr/share/keyrings/debian-archive-keyring.gpg"
    (etc / "sources.list").write_text(
        f"deb [arch={arch.deb} signed-by={keyring}] {debian} bookworm main\n"
        f"deb [arch={arch.deb} signed-by={keyring}] {debian} bookworm-updates main\n"
        f"deb [arch={arch.deb} signed-by={keyring}] {security} bookworm-security main\n"
    )
    conf = base / "apt.conf"
    conf.write_text(
        f'Dir::State "{base}/state/";\n'
        f'Dir::State::status "{base}/state/status";\n'
        f'Dir::Cache "{base}/cache/";\n'
        f'Dir::Log "{base}/log/";\n'
        f'Dir::Etc "{etc}/";\n'
        f'Dir::Etc::main "{etc}/apt.conf";\n'
        f'Dir::Etc::parts "{etc}/apt.conf.d/";\n'
        f'Dir::Etc::sourcelist "{etc}/sources.list";\n'
        f'Dir::Etc::sourceparts "{etc}/sources.list.d/";\n'
        f'Dir::Etc::preferences "{etc}/preferences";\n'
        f'Dir::Etc::preferencesparts "{etc}/preferences.d/";\n'
        f'Dir::Etc::trusted "{etc}/trusted.gpg";\n'
        f'Dir::Etc::trustedparts "{etc}/trusted.gpg.d/";\n'
        f'APT::Architecture "{arch.deb}";\n'
        f'APT::Architectures {{ "{arch.deb}"; }};\n'
        'Acquire::Languages "none";\n'
        'APT::Sandbox::User "root";\n'
        'Debug::NoLocking "true";\n'
    )
    return {**os.environ, "APT_CONFIG": str(conf), "LC_ALL": "C"}


def apt_download(arch: Arch, specs: list[str], dest: Path) -> None:
    env = apt_env(arch)
    say(f"apt-get update ({arch.deb})")
    run(["apt-get", "-q", "update"], env=env, quiet=True)
    dest.mkdir(parents=True, exist_ok=True)
    say(f"apt-get download ({arch.deb}): {' '.join(specs)}")
    run(["apt-get", "-q", "download", *specs], env=env, cwd=dest, quiet=True)


def fetch_debs(arch: Arch) -> list[Path]:
    """The pinned .debs of one architecture, from the cache or the mirror, hashes checked."""
    pins = [p for p in read_deb_lock() if p.arch == arch.deb]
    cache = CACHE / "debs"
    missing = [
        p
        for p in pins
        if not (cache / p.filename).is_file() or sha256_file(cache / p.filename) != p.sha256
    ]
    if missing:
        try:
            apt_download(arch, [f"{p.package}:{p.arch}={p.version}" for p in missing], cache)
        except BuildError as exc:
            raise BuildError(
                f"{exc}\n  A pinned version may have left the mirror (Debian keeps only the newest"
                " of a suite): run layer/build-layer.sh --relock for new pins, or set"
                " TMP_MONITOR_DEBIAN_MIRROR / TMP_MONITOR_DEBIAN_SECURITY_MIRROR to a"
                " snapshot.debian.org archive that has them."
            ) from exc
    for p in pins:
        got = sha256_file(cache / p.filename)
        if got != p.sha256:
            raise BuildError(f"{p.filename}: sha256 {got}, debs.lock pins {p.sha256}")
    return [cache / p.filename for p in pins]


def relock() -> None:
    lines = ["# arch package version sha256: the .debs of the layer's runtime."]
    lines.append("# Written by layer/build-layer.sh --relock; every build checks the downloads.")
    for arch in ARCHES:
        tmp = BUILD / "relock" / arch.deb
        shutil.rmtree(tmp, ignore_errors=True)
        apt_download(arch, [f"{d}:{arch.deb}" for d in DEBS], tmp)
        for deb in sorted(tmp.glob("*.deb")):
            package, version, deb_arch = deb.stem.split("_")
            pin = DebPin(deb_arch, package, version.replace("%3a", ":"), sha256_file(deb))
            lines.append(f"{pin.arch} {pin.package} {pin.version} {pin.sha256}")
            (CACHE / "debs").mkdir(parents=True, exist_ok=True)
            shutil.copyfile(deb, CACHE / "debs" / pin.filename)
    DEBS_LOCK.write_text("\n".join(lines) + "\n")
    say(f"wrote {DEBS_LOCK.relative_to(ROOT)}")
    for arch in ARCHES:
        tmp = BUILD / "relock" / f"wheels-{arch.name}"
        shutil.rmtree(tmp, ignore_errors=True)
        pip(["download", "--dest", str(tmp), *pip_target_args(arch), *pinned_requirements()])
        out = [
            f"# Wheels of the layer for {arch.name}: pyproject.toml's pins and what they need.",
            "# Written by layer/build-layer.sh --relock; installed with pip --require-hashes.",
        ]
        for whl in sorted(tmp.glob("*.whl")):
            name, version = whl.name.split("-")[:2]
            out.append(f"{normalize(name)}=={version} --hash=sha256:{sha256_file(whl)}")
        wheel_lock_path(arch).write_text("\n".join(out) + "\n")
        say(f"wrote {wheel_lock_path(arch).relative_to(ROOT)}")


# ---------------------------------------------------------------------------- wheels


def pip(args: list[str]) -> None:
    run([sys.executable, "-m", "pip", "-qq", "--disable-pip-version-check", *args])


def pip_target_args(arch: Arch) -> list[str]:
    return [
        "--only-binary=:all:",
        "--platform",
        arch.wheel_platform,
        "--python-version",
        PYVER,
        "--implementation",
        "cp",
    ]


def install_wheels(arch: Arch, site: Path) -> None:
    """The locked wheels of one architecture into site/, from the cache (filled on a miss)."""
    lock = wheel_lock_path(arch)
    cache = CACHE / "wheels" / arch.name
    have = {sha256_file(w) for w in cache.glob("*.whl")} if cache.is_dir() else set()
    target = pip_target_args(arch)
    if any(sha not in have for _, sha in read_wheel_lock(arch).values()):
        say(f"pip download ({arch.name})")
        pip(
            [
                "download",
                "--no-deps",
                "--require-hashes",
                "--dest",
                str(cache),
                "-r",
                str(lock),
                *target,
            ]
        )
    offline = ["--no-index", "--find-links", str(cache), "--no-deps", "--require-hashes"]
    pip(["install", *offline, "--no-compile", "--target", str(site), "-r", str(lock), *target])
    # Scripts are never run here; install records would go stale once sources become bytecode.
    shutil.rmtree(site / "bin", ignore_errors=True)
    for info in site.glob("*.dist-info"):
        for leftover in ("RECORD", "INSTALLER", "REQUESTED", "direct_url.json"):
            (info / leftover).unlink(missing_ok=True)
    shutil.rmtree(site / "psutil" / "tests", ignore_errors=True)


# ---------------------------------------------------------------------------- ELF


def elf_dynamic(path: Path) -> tuple[str | None, list[str]]:
    """(DT_SONAME, DT_NEEDED) of a 64-bit little-endian ELF file (both targets are)."""
    data = path.read_bytes()
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        raise BuildError(f"{path}: not a 64-bit little-endian ELF file")
    (phoff,) = struct.unpack_from("<Q", data, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    loads, dynamic = [], None
    for i in range(phnum):
        p_type, _, p_offset, p_vaddr, _, p_filesz = struct.unpack_from(
            "<IIQQQQ", data, phoff + i * phentsize
        )
        if p_type == 1:
            loads.append((p_vaddr, p_offset, p_filesz))
        elif p_type == 2:
            dynamic = (p_offset, p_filesz)
    if dynamic is None:
        return None, []

    def offset_of(vaddr: int) -> int:
        for start, offset, size in loads:
            if start <= vaddr < start + size:
                return int(vaddr - start + offset)
        raise BuildError(f"{path}: address {vaddr:#x} outside every PT_LOAD segment")

    entries = []
    for pos in range(dynamic[0], dynamic[0] + dynamic[1], 16):
        tag, value = struct.unpack_from("<qQ", data, pos)
        if tag == 0:
            break
        entries.append((tag, value))
    strtab = offset_of(next(v for t, v in entries if t == 5))

    def string(index: int) -> str:
        end = data.index(b"\0", strtab + index)
        return data[strtab + index : end].decode()

    soname = next((string(v) for t, v in entries if t == 14), None)
    return soname, [string(v) for t, v in entries if t == 1]


def resolve_in(root: Path, path: Path) -> Path:
    """Follow symlinks the way they would resolve if root were /."""
    for _ in range(40):
        if not path.is_symlink():
            return path
        target = Path(os.readlink(path))
        path = root / target.relative_to("/") if target.is_absolute() else path.parent / target
    raise BuildError(f"{path}: symlink loop")


def library_index(root: Path, arch: Arch) -> dict[str, Path]:
    """Every shared library of the unpacked .debs, by file name, dereferenced."""
    index: dict[str, Path] = {}
    for d in (root / "lib" / arch.triplet, root / "usr" / "lib" / arch.triplet):
        for lib in sorted(d.glob("*.so*")) if d.is_dir() else []:
            real = resolve_in(root, lib)
            if real.is_file():
                index.setdefault(lib.name, real)
    return index


def copy_closure(roots: Iterable[Path], index: dict[str, Path], dest: Path) -> list[str]:
    """Copy the DT_NEEDED closure of roots (plus DLOPENED) into dest under their SONAMEs."""
    wanted = list(DLOPENED)
    for elf in roots:
        wanted += elf_dynamic(elf)[1]
    done: list[str] = []
    while wanted:
        name = wanted.pop()
        if name in done:
            continue
        if name not in index:
            raise BuildError(f"library {name} is needed but no pinned .deb provides it")
        soname, needed = elf_dynamic(index[name])
        if soname is not None and soname != name:
            raise BuildError(f"{index[name]} has SONAME {soname}, wanted as {name}")
        shutil.copyfile(index[name], dest / name)
        done.append(name)
        wanted += needed
    return sorted(done)


# ---------------------------------------------------------------------------- layout


def unpack_debs(debs: list[Path], root: Path) -> None:
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    for deb in debs:
        run(["dpkg-deb", "-x", str(deb), str(root)])


def stage_runtime(arch: Arch, debroot: Path, opt: Path) -> None:
    runtime = opt / NAME / "runtime"
    (runtime / "bin").mkdir(parents=True)
    shutil.copyfile(debroot / "usr" / "bin" / f"python{PYVER}", runtime / "bin" / f"python{PYVER}")
    stdlib = runtime / "lib" / f"python{PYVER}"
    source = debroot / "usr" / "lib" / f"python{PYVER}"
    shutil.copytree(source, stdlib, symlinks=True)
    for name in STDLIB_DROP:
        target = stdlib / name
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        else:
            target.unlink(missing_ok=True)
    # What is left of the symlinks is replaced by the file they name inside the .debs, never by
    # one of the build machine.
    for link in [p for p in stdlib.rglob("*") if p.is_symlink()]:
        real = resolve_in(debroot, source / link.relative_to(stdlib))
        if not real.is_file():
            raise BuildError(f"{link.relative_to(stdlib)}: its target is not in the .debs")
        link.unlink()
        shutil.copyfile(real, link)
    for module in (stdlib / "lib-dynload").iterdir():
        if DYNLOAD_DROP.match(module.name):
            module.unlink()
    for cache in sorted(stdlib.rglob("__pycache__")):
        shutil.rmtree(cache)


def stage_site(arch: Arch, opt: Path) -> None:
    site = opt / NAME / "site"
    site.mkdir(parents=True)
    install_wheels(arch, site)
    src = ROOT / "extension" / "tmp_monitor"
    shutil.copytree(
        src, site / "tmp_monitor", ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
    )


def stage_libraries(arch: Arch, debroot: Path, opt: Path) -> list[str]:
    runtime = opt / NAME / "runtime"
    roots = [runtime / "bin" / f"python{PYVER}"]
    roots += sorted((runtime / "lib" / f"python{PYVER}" / "lib-dynload").glob("*.so"))
    roots += sorted((opt / NAME / "site").rglob("*.so"))
    libs = copy_closure(roots, library_index(debroot, arch), runtime / "lib")
    if arch.loader not in libs:
        raise BuildError(f"the loader {arch.loader} is not in the library closure")
    return libs


def stage_licences(arch: Arch, debroot: Path, opt: Path) -> None:
    dest = opt / NAME / "LICENSES"
    shutil.copytree(LAYER_SRC / "LICENSES", dest)
    lines = ["What this layer ships, and where each part comes from.", ""]
    lines.append("Debian bookworm packages (sources: https://snapshot.debian.org/):")
    for pin in read_deb_lock():
        if pin.arch == arch.deb:
            lines.append(f"  {pin.package} {pin.version} ({pin.arch})")
            doc = resolve_in(debroot, debroot / "usr" / "share" / "doc" / pin.package)
            shutil.copyfile(doc / "copyright", dest / f"{pin.package}.copyright")
    lines += ["", "Python packages from PyPI (licences in site/*.dist-info/):"]
    lines += [f"  {n} {v}" for n, (v, _) in sorted(read_wheel_lock(arch).items())]
    lines += ["", "tmp_monitor (site/tmp_monitor): tmp-monitor.txt (MIT-0)", ""]
    (dest / "SOURCES.txt").write_text("\n".join(lines))


def stage_launcher(opt: Path) -> None:
    (opt / "extensions").mkdir()
    shutil.copyfile(LAYER_SRC / "extensions" / NAME, opt / "extensions" / NAME)
    shutil.copyfile(LAYER_SRC / "bootstrap.py", opt / NAME / "bootstrap.py")


def python_cmd(opt: Path, arch: Arch) -> list[str]:
    """How to start a staged interpreter directly (what the launcher does, minus the checks)."""
    runtime = opt / NAME / "runtime"
    return [
        str(runtime / "lib" / arch.loader),
        "--inhibit-cache",
        "--library-path",
        str(runtime / "lib"),
        str(runtime / "bin" / f"python{PYVER}"),
        "-I",
        "-S",
        "-B",
    ]


def compile_bytecode(compiler: list[str], opt: Path) -> None:
    """Bytecode never checked against its source, with /opt paths in it; sources dropped except
    ours."""
    env = {"SOURCE_DATE_EPOCH": SOURCE_DATE_EPOCH, "LC_ALL": "C", "PATH": "/usr/bin:/bin"}
    compileall = [*compiler, "-m", "compileall", "-q", "--invalidation-mode", "unchecked-hash"]
    paths = ["-s", str(opt), "-p", "/opt"]
    # -b puts each .pyc where its .py was, so that it imports once the source is gone.
    for tree in (opt / NAME / "runtime" / "lib" / f"python{PYVER}", opt / NAME / "site"):
        run([*compileall, "-b", *paths, "-x", "/tmp_monitor/", str(tree)], env=env)
    # Our own package keeps its sources, so tracebacks in the log show the code; its bytecode
    # goes to __pycache__, where the import system looks when the source is there.
    run([*compileall, *paths, str(opt / NAME / "site" / "tmp_monitor")], env=env)
    for tree in (opt / NAME / "runtime", opt / NAME / "site"):
        for source in tree.rglob("*.py"):
            if source.with_suffix(".pyc").is_file():
                source.unlink()


def smoke_test(cmd: list[str], opt: Path) -> None:
    """The staged interpreter starts and imports what the monitor needs, from the layer only."""
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); "
        "import psutil, aws_lambda_powertools.metrics, tmp_monitor, hashlib, json; "
        "hashlib.sha256(b''); "
        "bad = [m.__file__ for m in list(sys.modules.values()) "
        "if getattr(m, '__file__', None) and not m.__file__.startswith(sys.argv[2])]; "
        "print(sys.prefix); sys.exit(f'loaded from outside the layer: {bad}' if bad else 0)"
    )
    run([*cmd, "-c", code, str(opt / NAME / "site"), str(opt)], quiet=True)


def files_under(top: Path) -> Iterator[Path]:
    for path in sorted(top.rglob("*")):
        if path.is_symlink():
            raise BuildError(f"{path}: symlinks cannot go into the layer")
        if path.is_file():
            yield path


def is_executable(rel: Path) -> bool:
    """Mode 755 for the launcher, the interpreter and the loader; 644 for everything else."""
    runtime = Path(NAME, "runtime")
    return (
        rel == Path("extensions", NAME)
        or rel.parent == runtime / "bin"
        or (rel.parent == runtime / "lib" and rel.name.startswith("ld-linux-"))
    )


def set_modes(opt: Path) -> None:
    for path in files_under(opt):
        path.chmod(0o755 if is_executable(path.relative_to(opt)) else 0o644)


def write_zip(opt: Path, out: Path) -> None:
    """A byte-for-byte reproducible zip: sorted entries, one date, modes 755/644 only."""
    tmp = out.with_suffix(".zip.tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        for path in sorted(files_under(opt), key=lambda p: p.relative_to(opt).as_posix()):
            rel = path.relative_to(opt)
            info = zipfile.ZipInfo(rel.as_posix(), ZIP_DATE)
            info.create_system = 3  # Unix, so that unzip applies the mode
            mode = 0o755 if is_executable(rel) else 0o644
            info.external_attr = (0o100000 | mode) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, path.read_bytes(), compresslevel=9)
    tmp.replace(out)


# ---------------------------------------------------------------------------- driver


def input_digest() -> str:
    """A digest over everything a build reads, so an unchanged input set can skip it."""
    digest = hashlib.sha256()
    paths = sorted(p for p in LAYER_SRC.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    package = ROOT / "extension" / "tmp_monitor"
    paths += sorted(
        p
        for p in package.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
    )
    paths.append(ROOT / "pyproject.toml")
    for path in paths:
        digest.update(path.relative_to(ROOT).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def build(out: Path) -> None:
    check_locks_match_pyproject()
    staged: dict[str, Path] = {}
    for arch in ARCHES:
        work = BUILD / "layer" / arch.name
        debroot, opt = work / "debroot", work / "opt"
        unpack_debs(fetch_debs(arch), debroot)
        shutil.rmtree(opt, ignore_errors=True)
        opt.mkdir(parents=True)
        stage_runtime(arch, debroot, opt)
        stage_site(arch, opt)
        stage_launcher(opt)
        stage_licences(arch, debroot, opt)
        libs = stage_libraries(arch, debroot, opt)
        set_modes(opt)
        say(f"{arch.name}: runtime libraries {' '.join(libs)}")
        staged[arch.name] = opt
    # Bytecode does not depend on the architecture: the x86_64 interpreter, which runs here,
    # compiles both trees with exactly the Python that will load them.
    x86 = ARCHES[0]
    compiler = python_cmd(staged[x86.name], x86)
    for arch in ARCHES:
        compile_bytecode(compiler, staged[arch.name])
    smoke_test(compiler, staged[x86.name])
    qemu = shutil.which("qemu-aarch64-static")
    if qemu:
        smoke_test([qemu, *python_cmd(staged["arm64"], ARCHES[1])], staged["arm64"])
    else:
        say("qemu-aarch64-static not found: the arm64 interpreter is not smoke-tested")
    out.mkdir(parents=True, exist_ok=True)
    # The zips are written by the layer's own Python too: deflate's output depends on the zlib
    # version, and this one is pinned, so other build machines get the same bytes.
    for arch in ARCHES:
        zpath = out / f"{NAME}-{arch.name}.zip"
        run(
            [
                *compiler,
                str(Path(__file__).resolve()),
                "--write-zip",
                str(staged[arch.name]),
                str(zpath),
            ]
        )


def report(out: Path) -> None:
    for arch in ARCHES:
        zpath = out / f"{NAME}-{arch.name}.zip"
        with zipfile.ZipFile(zpath) as zf:
            unzipped = sum(i.file_size for i in zf.infolist())
            entries = len(zf.infolist())
        print(
            f"{zpath.relative_to(ROOT) if zpath.is_relative_to(ROOT) else zpath}: "
            f"{zpath.stat().st_size / 1e6:.2f} MB zipped, {unzipped / 2**20:.1f} MiB unzipped, "
            f"{entries} files, sha256 {sha256_file(zpath)}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="layer/build-layer.sh", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--out", type=Path, default=ROOT / "dist", help="where the zips go")
    parser.add_argument("--force", action="store_true", help="build even if nothing changed")
    parser.add_argument("--relock", action="store_true", help="re-resolve and rewrite the locks")
    parser.add_argument("--write-zip", nargs=2, type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.write_zip:
        write_zip(*args.write_zip)
        return 0
    out: Path = args.out.resolve()
    os.umask(0o022)
    try:
        if args.relock:
            relock()
        stamp = out / ".layer-inputs"
        digest = input_digest()
        zips = [out / f"{NAME}-{a.name}.zip" for a in ARCHES]
        fresh = stamp.is_file() and stamp.read_text() == digest and all(z.is_file() for z in zips)
        if fresh and not args.force:
            say("inputs unchanged, zips up to date")
        else:
            build(out)
            stamp.write_text(digest)
        report(out)
    except BuildError as exc:
        print(f"build-layer: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
