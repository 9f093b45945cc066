"""The isolation layer of lambda-sandbox, against real namespaces, cgroups and ext4 images."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from lambda_sandbox import preflight, runtimes
from lambda_sandbox.host import HostError, HostSpec, Proc, Sandbox

PY = "/var/lang/bin/python3.11"
# What the python3.11 runtime puts in /var/lang, for the tests that run Python in there.
PY_LANG = {"lang_files": runtimes.python_lang(), "lang_name": "python3.11"}
ENV = {"PATH": "/var/lang/bin:/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}
MIB = 1 << 20


@pytest.fixture(scope="module", autouse=True)
def machine() -> None:
    try:
        preflight.check()
    except HostError as exc:
        pytest.fail(f"these tests need a machine that can run environments: {exc}")


@pytest.fixture
def function_dir(tmp_path: Path) -> Path:
    d = tmp_path / "function"
    d.mkdir()
    (d / "app.py").write_text("def handler(event, context):\n    return 1\n")
    return d


@pytest.fixture
def sandbox(function_dir: Path) -> Iterator[Sandbox]:
    with Sandbox.create(HostSpec(function_dir, memory_mb=1769, **PY_LANG)) as sb:
        yield sb


def communicate(proc: Proc, timeout: float = 60) -> tuple[int | None, str, str]:
    """Both pipes read to end of file (in parallel, so neither can fill up), then the status."""
    out: list[bytes] = []
    reader = threading.Thread(target=lambda: out.append(proc.stdout.read()))
    reader.start()
    err = proc.stderr.read()
    reader.join(timeout)
    return proc.wait(timeout), out[0].decode(), err.decode()


def run_py(sb: Sandbox, code: str, timeout: float = 60) -> tuple[int | None, str, str]:
    return communicate(sb.spawn([PY, "-S", "-c", code], ENV, cwd="/tmp"), timeout)


def test_process_sees_only_its_environment(sandbox: Sandbox) -> None:
    sleeper = sandbox.spawn(["sleep", "60"], ENV, name="sleeper")
    status, out, err = run_py(
        sandbox,
        "import os, json\n"
        "pids = sorted(int(p) for p in os.listdir('/proc') if p.isdigit())\n"
        "comm = {p: open(f'/proc/{p}/comm').read().strip() for p in pids}\n"
        "ppid = [l for l in open('/proc/self/status') if l.startswith('PPid')][0].split()[1]\n"
        "print(json.dumps({'pids': pids, 'comm': comm, 'self': os.getpid(), 'ppid': ppid}))",
    )
    assert status == 0, err
    seen = json.loads(out)
    # init (PID 1), the sleeper and this process: nothing of the host
    assert len(seen["pids"]) == 3, seen
    assert seen["pids"][0] == 1
    assert sorted(seen["comm"].values())[1:] == ["python3.11", "sleep"]
    assert seen["comm"]["1"].startswith("python")  # nsinit
    assert seen["ppid"] == "1"  # forked by the environment's init, as under Lambda's
    assert sleeper.pid != seen["self"]  # Proc.pid is the host's pid, not the namespace's
    assert Path(f"/proc/{sleeper.pid}/cmdline").read_bytes().split(b"\0")[0] == b"sleep"
    sleeper.signal(signal.SIGTERM)
    assert sleeper.wait(10) == -signal.SIGTERM


def test_init_is_outside_the_cgroups_and_children_inside(sandbox: Sandbox) -> None:
    proc = sandbox.spawn(["sleep", "60"], ENV)
    for controller in ("memory", "cpu", "freezer"):
        procs = Path(f"/sys/fs/cgroup/{controller}{sandbox.cgroup}/cgroup.procs").read_text()
        assert [int(p) for p in procs.split()] == [proc.pid], controller
    assert sandbox.init_pid not in [proc.pid]
    assert f":memory:{sandbox.cgroup}\n" in Path(f"/proc/{proc.pid}/cgroup").read_text()
    assert f":memory:{sandbox.cgroup}\n" not in Path(f"/proc/{sandbox.init_pid}/cgroup").read_text()
    sandbox.kill_all()
    assert proc.wait(10) == -signal.SIGKILL


def test_runs_as_unprivileged_user_with_exactly_the_given_env(sandbox: Sandbox) -> None:
    status, out, err = communicate(
        sandbox.spawn(["sh", "-c", "id -u; id -g; id -G; env"], {"PATH": "/usr/bin:/bin", "X": "1"})
    )
    assert status == 0, err
    lines = out.splitlines()
    assert lines[:3] == ["993", "990", "990"]
    assert sorted(lines[3:]) == sorted(["PATH=/usr/bin:/bin", "X=1", "PWD=/"])


def test_exec_failure_raises_the_childs_error(sandbox: Sandbox) -> None:
    with pytest.raises(FileNotFoundError):
        sandbox.spawn(["/var/task/no-such-bootstrap"], ENV)
    with pytest.raises(PermissionError):
        sandbox.spawn(["/var/task/app.py"], ENV)  # not executable
    # the environment goes on
    assert communicate(sandbox.spawn(["true"], ENV))[0] == 0


WRITE_PROBE = """
import errno, json, os, sys
result = {}
for d in sys.argv[1:]:
    try:
        with open(os.path.join(d, 'probe'), 'w') as f:
            f.write('x')
        os.unlink(os.path.join(d, 'probe'))
        result[d] = 'ok'
    except OSError as exc:
        result[d] = errno.errorcode[exc.errno]
print(json.dumps(result))
"""


def test_only_tmp_and_efs_are_writable(function_dir: Path, tmp_path: Path) -> None:
    efs = tmp_path / "efs"
    efs.mkdir()
    os.chown(efs, 993, 990)
    layer = tmp_path / "layer"
    (layer / "extensions").mkdir(parents=True)
    spec = HostSpec(
        function_dir,
        layers=(layer,),
        runtime_files=((function_dir / "app.py", "bootstrap.py"),),
        memory_mb=1769,
        efs=((efs, "/mnt/data"),),
        **PY_LANG,
    )
    places = [
        "/tmp", "/mnt/data", "/", "/opt", "/opt/extensions", "/var/task", "/var/runtime",
        "/var/tmp", "/var", "/var/lang/bin", "/etc", "/root", "/usr/bin", "/mnt", "/dev",
        "/run", "/home", "/sys/fs/cgroup/memory",
    ]  # fmt: skip
    with Sandbox.create(spec) as sb:
        status, out, err = communicate(sb.spawn([PY, "-S", "-c", WRITE_PROBE, *places], ENV))
        assert status == 0, err
        result = json.loads(out)
        assert result.pop("/tmp") == "ok"
        assert result.pop("/mnt/data") == "ok"
        assert {d: r for d, r in result.items() if r not in ("EROFS", "EACCES")} == {}
        status, _, err = communicate(sb.spawn(["sh", "-c", "echo hi > /mnt/data/kept"], ENV))
        assert status == 0, err
    assert (efs / "kept").read_text() == "hi\n"  # the host folder itself, as EFS would keep it
    assert (efs / "kept").stat().st_uid == 993


def test_code_and_layers_are_visible_read_only(tmp_path: Path, function_dir: Path) -> None:
    import zipfile

    first = tmp_path / "first.zip"
    with zipfile.ZipFile(first, "w") as zf:
        info = zipfile.ZipInfo("extensions/ext")
        info.external_attr = 0o100755 << 16
        zf.writestr(info, "#!/bin/sh\necho first\n")
        zf.writestr("lib/common.txt", "first")
    second = tmp_path / "second"
    (second / "lib").mkdir(parents=True)
    (second / "lib" / "common.txt").write_text("second\n")
    spec = HostSpec(
        function_dir,
        layers=(first, second),
        runtime_files=((function_dir / "app.py", "lib/rt.py"),),
        memory_mb=1769,
        **PY_LANG,
    )
    with Sandbox.create(spec) as sb:
        status, out, err = communicate(
            sb.spawn(
                [
                    "sh",
                    "-c",
                    "cat /opt/lib/common.txt; /opt/extensions/ext; "
                    "cat /var/runtime/lib/rt.py /var/task/app.py | wc -l; "
                    "getent hosts sandbox.localdomain; /var/lang/bin/python3.11 -c 'print(7)'",
                ],
                ENV,
            )
        )
    assert status == 0, err
    lines = out.split()
    assert lines[:3] == ["second", "first", "4"]  # later layers override earlier ones
    assert lines[3] == "127.0.0.1"  # sandbox.localdomain, where listeners are reached
    assert lines[-1] == "7"


def test_tmp_looks_like_lambdas(sandbox: Sandbox) -> None:
    status, out, err = run_py(
        sandbox,
        "import os, json\n"
        "s = os.statvfs('/tmp')\n"
        "st = os.stat('/tmp')\n"
        "print(json.dumps({'frsize': s.f_frsize, 'blocks': s.f_blocks, 'bfree': s.f_bfree,"
        " 'bavail': s.f_bavail, 'files': s.f_files, 'ffree': s.f_ffree, 'uid': st.st_uid,"
        " 'entries': os.listdir('/tmp')}))",
    )
    assert status == 0, err
    s = json.loads(out)
    total = s["blocks"] * s["frsize"] / MIB
    not_available = (s["blocks"] - s["bavail"]) * s["frsize"] / MIB
    # Lambda, 512 MB: 525.8 MiB total, about 12 MiB not available on an empty /tmp
    assert 520 < total < 530, total
    assert 9 < not_available < 14, not_available
    assert (s["blocks"] - s["bfree"]) * s["frsize"] < MIB  # nothing really used
    assert s["ffree"] >= 100_000
    assert s["uid"] == 993
    assert s["entries"] == []  # no lost+found


def test_tmp_holds_100000_files(sandbox: Sandbox) -> None:
    status, out, err = run_py(
        sandbox,
        "import os\n"
        "for i in range(100):\n"
        "    os.mkdir(f'/tmp/d{i}')\n"
        "    for j in range(1000):\n"
        "        os.close(os.open(f'/tmp/d{i}/{j}', os.O_CREAT | os.O_WRONLY))\n"
        "print(sum(len(os.listdir(f'/tmp/d{i}')) for i in range(100)))",
    )
    assert status == 0, err
    assert int(out) == 100_000


# Without a journal, ext4 skips every recently freed inode when it allocates one, scanning the
# bitmap again each time: recreating files after deleting them took 70 times the system CPU time
# of the first creation (55 s for 30,000). It shows once a block group's inodes (about 26,000
# here) are used, hence 30,000; with the journal, Lambda's likely default, both take the same.
RECREATE = """
import os, resource
def create():
    start = resource.getrusage(resource.RUSAGE_SELF).ru_stime
    for i in range(30000):
        fd = os.open(f"/tmp/f{i}", os.O_CREAT | os.O_WRONLY)
        os.write(fd, b"x" * 100)
        os.close(fd)
    return resource.getrusage(resource.RUSAGE_SELF).ru_stime - start
first = create()
for i in range(30000):
    os.unlink(f"/tmp/f{i}")
print(first, create())
"""


def test_recreating_deleted_files_in_tmp_costs_no_more_than_the_first_time(
    sandbox: Sandbox,
) -> None:
    status, out, err = run_py(sandbox, RECREATE, timeout=300)
    assert status == 0, err
    first, again = map(float, out.split())
    assert again < 5 * max(first, 0.05), (first, again)


def test_tmp_writes_raise_max_memory_not_rss(sandbox: Sandbox) -> None:
    before = sandbox.max_memory_bytes()
    status, out, err = run_py(
        sandbox,
        "import os\n"
        "with open('/tmp/blob', 'wb') as f:\n"
        "    for _ in range(20):\n"
        "        f.write(b'x' * (1 << 20))\n"
        "    f.flush()\n"
        "    os.fsync(f.fileno())  # written back through the loop device: must not count twice\n"
        "print([l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1])",
    )
    assert status == 0, err
    rss_kib = int(out)
    grown = (sandbox.max_memory_bytes() - before) / MIB
    assert 20 <= grown < 20 + rss_kib / 1024 + 4, grown
    assert rss_kib < 16 * 1024


def test_runtime_image_is_built_once_reused_and_rebuilt_when_cut_short(
    function_dir: Path, tmp_path: Path
) -> None:
    work = tmp_path / "work"  # a cache of its own: the shared one may be in use right now
    spec = HostSpec(function_dir, memory_mb=1769, **PY_LANG)
    probe = "import sys, json, ssl, sqlite3; print(sys.prefix, json.__file__)"

    def prefix_and_stdlib() -> str:
        with Sandbox.create(spec, work_root=work) as sb:
            status, out, err = communicate(sb.spawn([PY, "-c", probe], ENV))
        assert status == 0, err
        return out

    expected = "/var/lang /var/lang/lib/python3.11/json/__init__.py\n"
    assert prefix_and_stdlib() == expected
    [image] = (work / "cache").glob("*.img")
    built = image.stat()
    assert prefix_and_stdlib() == expected
    assert image.stat().st_ino == built.st_ino  # reused, not rebuilt
    with image.open("r+b") as f:
        f.truncate(built.st_size // 2)  # as a copy cut short would be
    assert prefix_and_stdlib() == expected
    assert [p.name for p in (work / "cache").iterdir() if p.suffix != ".lock"] == [image.name]
    assert image.stat().st_size == built.st_size


def test_code_is_charged_to_its_reader_even_if_the_host_cached_it(function_dir: Path) -> None:
    big = function_dir / "big.bin"
    big.write_bytes(os.urandom(50 * MIB))
    assert len(big.read_bytes()) == 50 * MIB  # now in the host's page cache
    with Sandbox.create(HostSpec(function_dir, memory_mb=512)) as sb:
        before = sb.max_memory_bytes()
        status, _, err = communicate(sb.spawn(["md5sum", "/var/task/big.bin"], ENV))
        assert status == 0, err  # md5sum reads every byte with a tiny RSS
        grown = (sb.max_memory_bytes() - before) / MIB
    assert grown >= 50, grown


def cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def wait_for(predicate: Callable[[], bool], timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_freeze_stops_and_thaw_resumes(sandbox: Sandbox) -> None:
    busy = sandbox.spawn(["sh", "-c", "while :; do :; done"], ENV)
    assert wait_for(lambda: cpu_ticks(busy.pid) > 0)
    sandbox.freeze()
    frozen_at = cpu_ticks(busy.pid)
    time.sleep(0.5)
    assert cpu_ticks(busy.pid) == frozen_at
    assert busy.poll() is None
    sandbox.thaw()
    assert wait_for(lambda: cpu_ticks(busy.pid) > frozen_at)
    sandbox.freeze()
    sandbox.kill_all()  # frozen processes die too
    assert busy.wait(10) == -signal.SIGKILL


def test_cpu_is_limited_in_proportion_to_memory(function_dir: Path) -> None:
    memory_mb = 442  # a quarter of the 1,769 MB that give one vCPU
    with Sandbox.create(HostSpec(function_dir, memory_mb=memory_mb)) as sb:
        quota = int(Path(f"/sys/fs/cgroup/cpu{sb.cgroup}/cpu.cfs_quota_us").read_text())
        period = int(Path(f"/sys/fs/cgroup/cpu{sb.cgroup}/cpu.cfs_period_us").read_text())
        assert quota == round(period * memory_mb / 1769)
        busy = sb.spawn(["sh", "-c", "while :; do :; done"], ENV)
        assert wait_for(lambda: cpu_ticks(busy.pid) > 0)
        start, ticks = time.monotonic(), cpu_ticks(busy.pid)
        time.sleep(1.0)
        used = (cpu_ticks(busy.pid) - ticks) / os.sysconf("SC_CLK_TCK")
        share = used / (time.monotonic() - start)
    assert share < 2 * memory_mb / 1769, share  # unthrottled it would be about 1.0


def test_memory_exhaustion_is_an_oom_kill(function_dir: Path) -> None:
    with Sandbox.create(HostSpec(function_dir, memory_mb=128, cpus=1.0, **PY_LANG)) as sb:
        assert sb.memory_limit_bytes() == 128 * MIB
        assert sb.oom_kills() == 0
        status, _, _ = run_py(sb, "b = b'x' * (300 << 20)")
        assert status == -signal.SIGKILL
        assert sb.oom_kills() == 1
        assert sb.max_memory_bytes() <= 128 * MIB
        assert communicate(sb.spawn(["true"], ENV))[0] == 0  # the environment itself survives
        peak = sb.max_memory_bytes()
    # still readable after close, for the REPORT of the invocation that ended the environment
    assert sb.oom_kills() == 1
    assert sb.max_memory_bytes() == peak


def _leftovers(sb_id: str) -> list[str]:
    found = []
    for controller in ("memory", "cpu", "freezer"):
        if Path(f"/sys/fs/cgroup/{controller}/lambda-sandbox/{sb_id}").exists():
            found.append(f"cgroup {controller}")
    for backing in Path("/sys/block").glob("loop*/loop/backing_file"):
        if sb_id in backing.read_text():
            found.append(f"loop {backing}")
    if sb_id in Path("/proc/self/mountinfo").read_text():
        found.append("mount")
    if Path(f"/var/tmp/lambda-sandbox/{sb_id}").exists():
        found.append("folder")
    return found


def test_nothing_left_behind_after_many_cycles(function_dir: Path) -> None:
    seen = []
    for _ in range(20):
        with Sandbox.create(HostSpec(function_dir, memory_mb=1769)) as sb:
            proc = sb.spawn(
                ["sh", "-c", "echo x > /tmp/f; sleep 60 >/dev/null 2>&1 & exec cat /tmp/f"], ENV
            )
            assert communicate(proc)[1] == "x\n"
            seen.append((sb.id, sb.init_pid, proc.pid))
    for sb_id, init_pid, pid in seen:
        assert _leftovers(sb_id) == []
        assert not Path(f"/proc/{init_pid}").exists()
        assert not Path(f"/proc/{pid}").exists()


def test_close_after_exception_and_twice(function_dir: Path) -> None:
    with pytest.raises(RuntimeError), Sandbox.create(HostSpec(function_dir)) as sb:
        sb.spawn(["sleep", "60"], ENV)
        raise RuntimeError("boom")
    sb.close()
    assert _leftovers(sb.id) == []


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM, signal.SIGINT])
def test_host_killed_leaves_nothing(function_dir: Path, sig: int) -> None:
    """The process holding the Sandbox dies without close(): nsinit cleans up by itself."""
    script = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from lambda_sandbox.host import HostSpec, Sandbox\n"
        f"sb = Sandbox.create(HostSpec(Path({str(function_dir)!r})))\n"
        "p = sb.spawn(['sleep', '600'], {'PATH': '/usr/bin:/bin'})\n"
        "print(sb.id, sb.init_pid, p.pid, flush=True)\n"
        "time.sleep(600)\n"
    )
    with subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    ) as holder:
        assert holder.stdout is not None
        sb_id, init_pid, pid = holder.stdout.readline().split()
        holder.send_signal(sig)
    assert wait_for(lambda: not _leftovers(sb_id) and not Path(f"/proc/{init_pid}").exists())
    assert not Path(f"/proc/{pid}").exists()


def test_create_removes_leftovers_of_dead_sandboxes(function_dir: Path) -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    name = f"{dead.pid}-1-0badc0de"  # a sandbox id whose process is gone
    made = [Path(f"/sys/fs/cgroup/{c}/lambda-sandbox/{name}") for c in ("memory", "cpu", "freezer")]
    for d in made:
        d.mkdir(parents=True)
    workdir = Path("/var/tmp/lambda-sandbox") / name
    workdir.mkdir(parents=True)
    (workdir / "tmp.img").write_bytes(b"x")
    Sandbox.create(HostSpec(function_dir, memory_mb=1769)).close()
    assert [d for d in [*made, workdir] if d.exists()] == []


def test_bad_spec_names_the_problem(tmp_path: Path) -> None:
    with pytest.raises(HostError, match=r"function folder .* is not a directory"):
        Sandbox.create(HostSpec(tmp_path / "missing"))
    efs = tmp_path / "efs"
    efs.mkdir()
    with pytest.raises(HostError, match="not writable by uid 993"):
        Sandbox.create(HostSpec(tmp_path, efs=((efs, "/mnt/x"),)))


def test_preflight_names_everything_missing(tmp_path: Path) -> None:
    cgroup_root = tmp_path / "cgroup"
    (cgroup_root / "memory").mkdir(parents=True)
    (cgroup_root / "memory" / "memory.limit_in_bytes").write_text("9223372036854771712\n")
    with pytest.raises(HostError) as info:
        preflight.check(
            euid=1000,
            cgroup_root=cgroup_root,
            dev=tmp_path,
            path=str(tmp_path),
            kernel_release="5.4.0",
        )
    message = str(info.value)
    for missing in ("not running as root", "cpu, freezer cgroup controller", "loop devices",
                    "mkfs.ext4", "older than 5.12"):  # fmt: skip
        assert missing in message, message
    with pytest.raises(HostError, match="no memory, cpu, freezer cgroup controller"):
        preflight.check(cgroup_root=tmp_path / "empty")
    v2 = tmp_path / "v2"
    v2.mkdir()
    (v2 / "cgroup.controllers").write_text("cpuset cpu io pids\n")
    assert preflight.problems(cgroup_root=v2) == [
        f"no memory cgroup controller under {v2} (v1 or v2)"
    ]
    preflight.check()  # this machine has everything


def test_environments_created_in_parallel_are_separate(function_dir: Path) -> None:
    results: dict[int, tuple[str, list[str]]] = {}
    started = threading.Barrier(4)

    def one(n: int) -> None:
        with Sandbox.create(HostSpec(function_dir, memory_mb=1769)) as sb:
            started.wait(60)  # all four exist at once
            proc = sb.spawn(["sh", "-c", f"echo {n} > /tmp/n; cat /tmp/n; echo /proc/[0-9]*"], ENV)
            results[n] = (sb.id, communicate(proc)[1].split())

    threads = [threading.Thread(target=one, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert sorted(results) == [0, 1, 2, 3]
    for n, (_, words) in results.items():
        assert words[0] == str(n)  # its own /tmp
        assert len(words[1:]) == 2, words  # init and this shell: nothing of the neighbours
    assert [_leftovers(sb_id) for sb_id, _ in results.values()] == [[]] * 4


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_init_killed_ends_the_environment_cleanly(function_dir: Path, sig: int) -> None:
    sb = Sandbox.create(HostSpec(function_dir, memory_mb=1769))
    proc = sb.spawn(["sleep", "600"], ENV)
    os.kill(sb.init_pid, sig)
    assert proc.wait(10) == -signal.SIGKILL  # everything in the namespace dies with its init
    with pytest.raises(HostError, match="environment is gone"):
        sb.spawn(["true"], ENV)
    sb.close()
    assert _leftovers(sb.id) == []
