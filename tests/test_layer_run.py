"""The built layer runs on its own: in a chroot that holds nothing but the layer and busybox (so no
Python, glibc or loader of the host can be picked up), on both architectures (arm64 under
qemu-user), and beside a function whose environment is hostile to it.

The platform is a stand-in written here: the Extensions API (register, then three INVOKEs, then
SHUTDOWN) and the Telemetry API (subscriptions answered 200; each invocation's platform.start,
platform.runtimeDone and platform.report delivered to the monitor's listener, as Lambda does).
During each invocation the stand-in writes 1 MiB into the environment's /tmp, as a function would.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.parse
import zipfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
DIST = ROOT / "dist"
LOADER = {"x86_64": "ld-linux-x86-64.so.2", "arm64": "ld-linux-aarch64.so.1"}
MACHINE = {"x86_64": "x86_64", "arm64": "aarch64"}
INVOCATIONS = 3
MAX_MEMORY_USED_MB = 77  # what the stand-in's platform.report says
MIB = 1 << 20
RUN_TIMEOUT_S = 120  # qemu is slow; a hang must still end the test


def layer_zip(arch: str) -> Path:
    path = DIST / f"tmp-monitor-{arch}.zip"
    if not path.is_file():
        pytest.fail(f"{path} is missing: build it with ./build.sh layer")
    return path


def unzip_layer(arch: str, opt: Path) -> Path:
    """Unpack as Lambda does (modes kept) into opt; returns the launcher."""
    opt.mkdir(parents=True, exist_ok=True)
    subprocess.run(["unzip", "-q", str(layer_zip(arch)), "-d", str(opt)], check=True)
    return opt / "extensions" / "tmp-monitor"


def require_monitor(arch: str) -> None:
    with zipfile.ZipFile(layer_zip(arch)) as zf:
        if "tmp-monitor/site/tmp_monitor/__main__.py" not in zf.namelist():
            pytest.fail(
                "the layer holds no tmp_monitor/__main__.py: the monitor is not written yet"
            )


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# ---------------------------------------------------------------------------- the stand-in


@dataclass
class Platform:
    """What the stand-in saw and does. tmp_dir: the environment's /tmp, as the host sees it."""

    tmp_dir: Path
    gate: threading.Event = field(default_factory=threading.Event)  # set: first INVOKE may go
    waiting: threading.Event = field(default_factory=threading.Event)  # first /next arrived
    registered: list[tuple[str, list[str]]] = field(default_factory=list)
    subscriptions: list[dict[str, Any]] = field(default_factory=list)
    delivered: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    next_calls: int = 0
    function: threading.Thread | None = None
    watch_pid: int | None = None  # whose mapped files to collect at each /next
    maps_seen: set[str] = field(default_factory=set)

    def request_id(self, n: int) -> str:
        return f"00000000-0000-4000-8000-00000000000{n}"

    def listener(self) -> tuple[str, int, str] | None:
        if not self.subscriptions:
            return None
        uri = urllib.parse.urlsplit(self.subscriptions[-1]["destination"]["URI"])
        # sandbox.localdomain is the environment's name for loopback.
        return "127.0.0.1", uri.port or 80, uri.path or "/"

    def deliver(self, events: list[dict[str, Any]]) -> None:
        target = self.listener()
        if target is None:
            return
        host, port, path = target
        conn = http.client.HTTPConnection(host, port, timeout=10)
        try:
            conn.request("POST", path, json.dumps(events), {"Content-Type": "application/json"})
            status = conn.getresponse().status
        finally:
            conn.close()
        if status != 200:
            self.errors.append(f"listener answered {status}")
        self.delivered += [e["type"] for e in events]

    def run_function(self, n: int) -> None:
        """The invocation's life as telemetry tells it: start, 1 MiB more in /tmp, runtimeDone."""
        rid = self.request_id(n)
        self.deliver([{"time": now_iso(), "type": "platform.start", "record": {"requestId": rid}}])
        (self.tmp_dir / f"written-by-invocation-{n}").write_bytes(b"x" * MIB)
        time.sleep(0.2)
        done = {"requestId": rid, "status": "success", "metrics": {"durationMs": 200.0}}
        self.deliver([{"time": now_iso(), "type": "platform.runtimeDone", "record": done}])

    def next_event(self) -> dict[str, Any]:
        n = self.next_calls
        self.next_calls += 1
        if self.watch_pid is not None:
            self.maps_seen |= mapped_files(self.watch_pid)
        if n == 0:
            self.waiting.set()
            self.gate.wait(RUN_TIMEOUT_S)
        if self.function is not None:
            # The extension asked for the next event: the previous invocation is over.
            self.function.join()
            metrics = {
                "durationMs": 200.0,
                "billedDurationMs": 200,
                "memorySizeMB": 128,
                "maxMemoryUsedMB": MAX_MEMORY_USED_MB,
            }
            record = {"requestId": self.request_id(n), "status": "success", "metrics": metrics}
            self.deliver([{"time": now_iso(), "type": "platform.report", "record": record}])
            self.function = None
        deadline = int(time.time() * 1000) + 3000
        if n < INVOCATIONS:
            self.function = threading.Thread(target=self.run_function, args=(n + 1,))
            self.function.start()
            return {
                "eventType": "INVOKE",
                "deadlineMs": deadline,
                "requestId": self.request_id(n + 1),
                "invokedFunctionArn": "arn:aws:lambda:us-east-1:123456789012:function:layer-test",
                "tracing": {"type": "X-Amzn-Trace-Id", "value": f"Root=1-0-{n + 1}"},
            }
        return {"eventType": "SHUTDOWN", "shutdownReason": "spindown", "deadlineMs": deadline}


def handler_for(platform: Platform) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def reply(self, status: int, body: Any, headers: Mapping[str, str] = {}) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            for key, value in {"Content-Type": "application/json", **headers}.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def body(self) -> Any:
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            return json.loads(raw) if raw else None

        def do_POST(self) -> None:
            body = self.body()
            if self.path == "/2020-01-01/extension/register":
                name = self.headers.get("Lambda-Extension-Name", "")
                platform.registered.append((name, list(body.get("events", []))))
                info = {
                    "functionName": "layer-test",
                    "functionVersion": "$LATEST",
                    "handler": "index.handler",
                }
                self.reply(200, info, {"Lambda-Extension-Identifier": "ext-0001"})
            else:  # init/error, exit/error
                platform.errors.append(f"{self.path}: {body}")
                self.reply(202, {"status": "OK"})

        def do_PUT(self) -> None:
            body = self.body()
            if self.path == "/2022-07-01/telemetry":
                platform.subscriptions.append(body)
                self.reply(200, "OK")
            else:
                self.reply(404, {"errorType": "NotFound"})

        def do_GET(self) -> None:
            if self.path == "/2020-01-01/extension/event/next":
                self.reply(200, platform.next_event(), {"Lambda-Extension-Event-Identifier": "e"})
            else:
                self.reply(404, {"errorType": "NotFound"})

    return Handler


@pytest.fixture
def platform(tmp_path: Path) -> Iterator[tuple[Platform, str]]:
    tmp_dir = tmp_path / "tmp"
    tmp_dir.mkdir()
    state = Platform(tmp_dir)
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler_for(state))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state, f"127.0.0.1:{server.server_address[1]}"
    finally:
        state.gate.set()
        server.shutdown()
        server.server_close()


def lambda_env(api: str, extra: Mapping[str, str] = {}) -> dict[str, str]:
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "AWS_LAMBDA_RUNTIME_API": api,
        "AWS_LAMBDA_FUNCTION_NAME": "layer-test",
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "128",
        "AWS_REGION": "us-east-1",
        "LANG": "en_US.UTF-8",
        "TZ": ":UTC",
        **extra,
    }


@dataclass(frozen=True)
class Outcome:
    returncode: int
    stdout: str
    stderr: str

    def documents(self) -> list[dict[str, Any]]:
        """stdout parsed as EMF: every line must be one JSON document (nothing else on stdout)."""
        docs = []
        for line in self.stdout.splitlines():
            doc = json.loads(line)
            assert "_aws" in doc, line
            docs.append(doc)
        return docs


def finish(proc: subprocess.Popen[str], platform: Platform) -> Outcome:
    platform.gate.set()
    try:
        stdout, stderr = proc.communicate(timeout=RUN_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        stdout, stderr = proc.communicate()
        pytest.fail(f"the extension did not end after SHUTDOWN:\n{stderr}")
    return Outcome(proc.returncode, stdout, stderr)


def metric(doc: dict[str, Any], name: str) -> float:
    """A metric's value (Powertools writes each as a list of the values it collected)."""
    value = doc[name]
    [single] = value if isinstance(value, list) else [value]
    return float(single)


def check_monitor_ran(outcome: Outcome, platform: Platform, own_tmp: bool) -> None:
    """Registered as tmp-monitor, one invocation document per INVOKE, exit 0 after SHUTDOWN.
    own_tmp: the monitor's /tmp is the stand-in's tmp_dir (else it is the host's, shared)."""
    assert outcome.returncode == 0, outcome.stderr
    assert [name for name, _ in platform.registered] == ["tmp-monitor"], outcome.stderr
    assert platform.next_calls == INVOCATIONS + 1, outcome.stderr
    assert not platform.errors, platform.errors
    docs = outcome.documents()
    invocations = [d for d in docs if d.get("document") == "invocation"]
    ids = [platform.request_id(n) for n in range(1, INVOCATIONS + 1)]
    assert [d["requestId"] for d in invocations] == ids, outcome.stderr
    for doc in docs:
        assert [m["Namespace"] for m in doc["_aws"]["CloudWatchMetrics"]] == ["TmpMonitor"]
    if own_tmp:  # what the stand-in wrote, seen by the monitor through the layer's runtime
        used = [metric(d, "TmpUsedBytes") for d in invocations]
        assert all(n * MIB <= u < n * MIB + MIB for n, u in enumerate(used, 1)), used
    reports = {d["requestId"]: d for d in docs if d.get("document") == "report"}
    assert sorted(reports) == ids, platform.delivered
    assert {metric(r, "MaxMemoryUsedMB") for r in reports.values()} == {MAX_MEMORY_USED_MB}
    assert [d for d in docs if d.get("document") == "summary"], "no summary at SHUTDOWN"


# ---------------------------------------------------------------------------- the chroot


def static_busybox(probe_root: Path) -> Path:
    """A busybox that runs with no library at all (Debian's busybox-static), from PATH."""
    probe_root.mkdir(parents=True, exist_ok=True)
    for directory in os.environ.get("PATH", "").split(os.pathsep):
        candidate = Path(directory) / "busybox"
        if not candidate.is_file():
            continue
        shutil.copy(candidate, probe_root / "busybox")
        alone = subprocess.run(["chroot", str(probe_root), "/busybox", "true"], capture_output=True)
        if alone.returncode == 0:
            return candidate
    pytest.fail("no static busybox on PATH: install Debian's busybox-static")


def make_chroot(root: Path, arch: str) -> None:
    """busybox (static) as /bin/sh, qemu-user for arm64, the layer in /opt, and the few
    configuration files every Lambda environment has. No library, no interpreter of the host."""
    busybox = static_busybox(root.parent / "busybox-probe")
    (root / "bin").mkdir(parents=True)
    shutil.copy2(busybox, root / "bin" / "busybox")
    (root / "bin" / "sh").symlink_to("busybox")
    if arch == "arm64":
        qemu = shutil.which("qemu-aarch64-static")
        if qemu is None:
            pytest.fail("qemu-aarch64-static is missing: install Debian's qemu-user-static")
        shutil.copy2(qemu, root / "bin" / "qemu-aarch64-static")
    (root / "etc").mkdir()
    (root / "etc" / "hosts").write_text("127.0.0.1 localhost sandbox.localdomain\n")
    (root / "etc" / "nsswitch.conf").write_text("hosts: files dns\n")
    (root / "proc").mkdir()
    (root / "tmp").mkdir()
    unzip_layer(arch, root / "opt")


def in_chroot(root: Path, argv: list[str]) -> list[str]:
    """argv run as root of a new mount and PID namespace with a fresh /proc, chrooted."""
    return ["unshare", "--mount", "--pid", "--fork", "--mount-proc", f"--root={root}", *argv]


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A small tmpfs, the environment's /tmp (a fresh filesystem: its usage is what we write)."""
    mount = tmp_path / "tmpfs"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=32m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def qemu_prefix(arch: str) -> dict[str, str]:
    return {"TMP_MONITOR_TEST_EXEC_PREFIX": "/bin/qemu-aarch64-static"} if arch == "arm64" else {}


@pytest.mark.parametrize("arch", ["x86_64", "arm64"])
def test_bundled_interpreter_runs_alone_in_a_chroot(tmp_path: Path, arch: str) -> None:
    """Without the host's libc, loader or Python, the layer's Python starts and imports what the
    monitor needs; hashlib still gives sha256 without OpenSSL."""
    root = tmp_path / "root"
    make_chroot(root, arch)
    runtime = "/opt/tmp-monitor/runtime"
    code = (
        "import sys, platform, hashlib, json, ctypes; sys.path.insert(0, '/opt/tmp-monitor/site'); "
        "import psutil, aws_lambda_powertools.metrics; "
        "maps = sorted({l.split()[5] for l in open('/proc/self/maps') if len(l.split()) > 5 "
        "and l.split()[5].startswith('/')}); "
        "print(json.dumps({'machine': platform.machine(), 'prefix': sys.prefix, 'path': sys.path, "
        "'sha256': hashlib.sha256(b'').hexdigest(), 'pid': psutil.Process().pid, 'maps': maps, "
        "'modules': sorted(m.__file__ for m in list(sys.modules.values()) "
        "if getattr(m, '__file__', None))}))"
    )
    argv = [f"{runtime}/lib/{LOADER[arch]}", "--inhibit-cache", "--library-path", f"{runtime}/lib"]
    argv += [f"{runtime}/bin/python3.11", "-I", "-S", "-c", code]
    if arch == "arm64":
        argv.insert(0, "/bin/qemu-aarch64-static")
    done = subprocess.run(
        in_chroot(root, argv), capture_output=True, text=True, env={}, timeout=RUN_TIMEOUT_S
    )
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert seen["machine"] == MACHINE[arch]
    assert seen["prefix"] == runtime
    assert seen["sha256"] == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert seen["pid"] == 1  # psutil reads the namespace's fresh /proc
    assert all(p.startswith("/opt/tmp-monitor/") for p in seen["modules"]), seen["modules"]
    assert all(p.startswith("/opt/tmp-monitor/") for p in seen["path"]), seen["path"]
    if arch == "x86_64":  # under qemu-user, maps shows the emulator's view
        outside = [p for p in seen["maps"] if not p.startswith("/opt/tmp-monitor/")]
        assert seen["maps"] and not outside, outside


@pytest.mark.parametrize("arch", ["x86_64", "arm64"])
def test_monitor_runs_alone_in_a_chroot(
    tmp_path: Path, tmpfs: Path, platform: tuple[Platform, str], arch: str
) -> None:
    """Started by Lambda's way (the launcher, by its #!/bin/sh), with nothing of the host."""
    require_monitor(arch)
    state, api = platform
    state.tmp_dir = tmpfs
    root = tmp_path / "root"
    make_chroot(root, arch)
    subprocess.run(["mount", "--bind", str(tmpfs), str(root / "tmp")], check=True)
    try:
        proc = subprocess.Popen(
            in_chroot(root, ["/opt/extensions/tmp-monitor"]),
            env=lambda_env(api, qemu_prefix(arch)),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        outcome = finish(proc, state)
    finally:
        subprocess.run(["umount", "-l", str(root / "tmp")], check=False)
    check_monitor_ran(outcome, state, own_tmp=True)
    if arch == "arm64":
        assert "TMP_MONITOR_TEST_EXEC_PREFIX is set" in outcome.stderr


# ---------------------------------------------------------------------------- hostile env


def hostile_env(tmp_path: Path) -> tuple[dict[str, str], Path]:
    """Variables a function may set for itself that must not reach the monitor's runtime:
    a real (host) library to preload, a directory with a working libc of the host, a
    PYTHONPATH with a sitecustomize and packages that shadow the monitor's, the host's
    PYTHONHOME, a PYTHONSTARTUP, Powertools settings. Returns them and the marker file that
    any of the Python ones would create."""
    marker = tmp_path / "hostile-code-ran"
    fake_lib = tmp_path / "fake-lib"
    fake_lib.mkdir()
    host_libc = Path("/lib/x86_64-linux-gnu/libc.so.6").resolve()
    shutil.copy(host_libc, fake_lib / "libc.so.6")
    shutil.copy(Path("/lib/x86_64-linux-gnu/libz.so.1").resolve(), fake_lib / "libz.so.1")
    shadow = tmp_path / "shadow"
    for package in ("psutil", "tmp_monitor", "aws_lambda_powertools", "encodings"):
        (shadow / package).mkdir(parents=True)
        (shadow / package / "__init__.py").write_text(
            f"open({str(marker)!r}, 'a').write('{package}\\n'); raise SystemExit(3)\n"
        )
    (shadow / "sitecustomize.py").write_text(f"open({str(marker)!r}, 'a').write('site\\n')\n")
    startup = tmp_path / "startup.py"
    startup.write_text(f"open({str(marker)!r}, 'a').write('startup\\n')\n")
    env = {
        "LD_PRELOAD": str(fake_lib / "libz.so.1"),
        # The loader names an audit library it cannot load on stderr. The host's shell says so
        # before the launcher runs; the layer's loader, started after it, must not.
        "LD_AUDIT": str(fake_lib / "libaudit-missing.so"),
        "LD_LIBRARY_PATH": f"{fake_lib}:/opt/lib:/lib/x86_64-linux-gnu",
        "PYTHONPATH": str(shadow),
        "PYTHONHOME": "/usr",
        "PYTHONSTARTUP": str(startup),
        "PYTHONINSPECT": "1",
        "PYTHONWARNINGS": "error",
        "PYTHONSAFEPATH": "",
        "POWERTOOLS_METRICS_NAMESPACE": "Hostile",
        "POWERTOOLS_SERVICE_NAME": "hostile",
        "POWERTOOLS_METRICS_DISABLED": "true",
        "CDPATH": "/",
        "TMP_MONITOR_TEST_EXEC_PREFIX": "env",  # not an absolute path: ignored, and said so
    }
    return env, marker


def mapped_files(pid: int) -> set[str]:
    with open(f"/proc/{pid}/maps") as maps:
        return {p[5] for line in maps if len(p := line.split()) > 5 and p[5].startswith("/")}


def environ_names(pid: int) -> set[str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    return {item.split(b"=", 1)[0].decode() for item in raw.split(b"\0") if item}


@pytest.fixture
def outside_tmp() -> Iterator[Path]:
    """A work folder outside /tmp, which the monitor below sees replaced by its own tmpfs."""
    path = Path(tempfile.mkdtemp(prefix="tmp-monitor-layer-", dir="/var/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path)


@pytest.mark.parametrize("shell", [["dash"], ["busybox", "sh"], ["bash", "--posix"]])
def test_monitor_ignores_a_hostile_function_environment(
    outside_tmp: Path, platform: tuple[Platform, str], shell: list[str]
) -> None:
    """Run from an arbitrary prefix by each /bin/sh a Lambda image may have (bash on Amazon
    Linux, dash on Debian, busybox): only the layer's own libraries get loaded, none of the
    function's Python settings or code takes effect, and the monitor's documents are its own."""
    require_monitor("x86_64")
    state, api = platform
    launcher = unzip_layer("x86_64", outside_tmp / "some" / "prefix" / "opt")
    layer_root = str(outside_tmp / "some" / "prefix" / "opt") + "/"
    env, marker = hostile_env(outside_tmp)
    # The monitor gets a /tmp of its own (a tmpfs in a private mount namespace), never the
    # host's: it walks what /tmp holds, and a purge setting added here one day must not empty
    # the developer's /tmp. unshare, mount and sh run with a clean environment; `env -i` gives
    # the hostile one to the shell alone. Every step execs, so proc.pid is the monitor's.
    hostile = [f"{k}={v}" for k, v in lambda_env(api, env).items()]
    proc = subprocess.Popen(
        [
            "unshare",
            "-m",
            "sh",
            "-c",
            'mount -t tmpfs -o size=16m tmpfs /tmp && exec "$@"',
            "sh",
            "env",
            "-i",
            *hostile,
            *shell,
            str(launcher),
        ],
        env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    state.watch_pid = proc.pid
    try:
        if not state.waiting.wait(RUN_TIMEOUT_S):
            proc.kill()
            pytest.fail(f"the monitor never asked for an event:\n{proc.communicate()[1]}")
        # Registered and waiting for its first event: everything it loads is loaded.
        maps = mapped_files(proc.pid)
        names = environ_names(proc.pid)
    finally:
        outcome = finish(proc, state)
    check_monitor_ran(outcome, state, own_tmp=False)
    assert not marker.exists(), marker.read_text()
    outside = {p for p in maps | state.maps_seen if not p.startswith(layer_root)}
    assert not outside, outside  # at start, and at every event of its life
    assert f"{layer_root}tmp-monitor/runtime/lib/libc.so.6" in maps
    assert not {n for n in names if n.startswith(("LD_", "PYTHON", "POWERTOOLS_"))}, names
    launcher_said = outcome.stderr.find("tmp-monitor: ignoring TMP_MONITOR_TEST_EXEC_PREFIX")
    assert launcher_said >= 0, outcome.stderr
    assert "ld.so" not in outcome.stderr[launcher_said:], outcome.stderr
    assert os.environ.get("LD_PRELOAD") is None  # the test's own process was not changed
