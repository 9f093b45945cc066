"""Profile the monitor where the benchmark shows its cost: py-spy on its process, from the host.

    python bench/profile.py {sampling,post_runtime,purge} [--memory MB] [--rate HZ]
    python bench/profile.py importtime [--memory MB]
    python bench/profile.py {sampling,post_runtime,purge} --cprofile [--memory MB]

The first three run the benchmark's function for that row in lambda-sandbox with the built
layer, find the monitor among the sandbox's descendants (its host pid) and record it with
py-spy (non-blocking, so the profiler does not stop it), then print where its samples fall:
the functions with the most samples of their own, and with the most including what they call.
py-spy cannot read every build of the layer's interpreter (it needs to find its version); then
--cprofile runs the monitor under cProfile instead (a copy of the layer with Debian's _lsprof
module and probes/profile_bootstrap.py), which slows it but shows where its main thread spends
its time. `importtime` runs the layer's interpreter with -X importtime (a copy of the layer
whose launcher adds the flag) and prints the imports that cost the monitor's start the most.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import layers  # noqa: E402
from bench.common import FUNCTIONS, MIB  # noqa: E402

SCENARIOS = {
    "sampling": ("python_sleep", {"seconds": 1.0}, {}, 10),
    "post_runtime": ("python_files", {"files": 1000}, {}, 60),
    "purge": (
        "python_fill",
        {"files": 1000, "bytes": 100 * MIB},
        {"TMP_MONITOR_PURGE": "always"},
        30,
    ),
    "importtime": ("node_noop", {}, {}, 3),
}


def _children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry))
    return found


def find_monitor(sandbox_pid: int, timeout_s: float = 20.0) -> int | None:
    """The host pid of the monitor's interpreter among the sandbox command's descendants."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        todo, seen = [sandbox_pid], []
        while todo:
            pid = todo.pop()
            seen.append(pid)
            todo += _children(pid)
        for pid in seen:
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if b"/opt/tmp-monitor/" in cmdline and b"python" in cmdline:
                return pid
        time.sleep(0.01)
    return None


def summarize(raw: Path, top: int = 25) -> str:
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        frames = [f.split(" (")[0] + " (" + f.split(" (")[-1] for f in stack.split(";")]
        total += n
        own[frames[-1]] += n
        for frame in set(frames):
            inclusive[frame] += n
    out = [f"{total} samples"]
    for title, counter in (("own", own), ("including callees", inclusive)):
        out.append(f"\n-- most samples, {title}:")
        out += [f"{100 * n / total:5.1f} %  {frame}" for frame, n in counter.most_common(top)]
    return "\n".join(out)


LSPROF = Path("/usr/lib/python3.11/lib-dynload/_lsprof.cpython-311-x86_64-linux-gnu.so")


def cprofile_layer(layer: Path, dest: Path) -> Path:
    root = layers.unpack(layer, dest)
    home = root / "tmp-monitor"
    shutil.copyfile(LSPROF, home / "runtime" / "lib" / "python3.11" / "lib-dynload" / LSPROF.name)
    (home / "bootstrap.py").rename(home / "bootstrap_monitor.py")
    shutil.copyfile(layers.PROBES / "profile_bootstrap.py", home / "bootstrap.py")
    return root


def record(scenario: str, memory: int, rate: int, invocations: int, cprof: bool) -> str:
    function, event, env, timeout = SCENARIOS[scenario]
    layer = ROOT / "dist" / "tmp-monitor-x86_64.zip"
    with tempfile.TemporaryDirectory(prefix="tmp-monitor-profile-") as scratch:
        work = Path(scratch)
        if scenario == "importtime":
            root = layers.unpack(layer, work / "layer")
            launcher = root / "extensions" / "tmp-monitor"
            text = launcher.read_text()
            launcher.write_text(text.replace("-X utf8", "-X utf8 -X importtime"))
            layer_arg = root
        elif cprof:
            layer_arg = cprofile_layer(layer, work / "layer")
        else:
            layer_arg = layer
        command = [
            sys.executable,
            "-m",
            "lambda_sandbox",
            "run",
            str(FUNCTIONS / function),
            "--handler",
            "index.handler" if function.startswith("node") else "app.handler",
            "--runtime",
            "nodejs20.x" if function.startswith("node") else "python3.11",
            "--memory",
            str(memory),
            "--timeout",
            str(timeout),
            "--invocations",
            str(invocations),
            "--event",
            json.dumps(event),
            "--layer",
            str(layer_arg),
            "--capture-dir",
            str(work / "capture"),
        ]
        for key, value in env.items():
            command += ["--env", f"{key}={value}"]
        sandbox = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if scenario == "importtime" or cprof:
            sandbox.wait()
            stderr = (work / "capture" / "extension-tmp-monitor.stderr").read_text()
            return stderr.partition("BENCH profile\n")[2] if cprof else importtime(stderr)
        pid = find_monitor(sandbox.pid)
        if pid is None:
            sandbox.kill()
            raise SystemExit("profile: the monitor's process did not appear")
        raw = work / "profile.txt"
        spy = subprocess.run(
            [
                str(Path(sys.executable).parent / "py-spy"),
                "record",
                "--pid",
                str(pid),
                "--rate",
                str(rate),
                "--nonblocking",
                "--threads",
                "--format",
                "raw",
                "--output",
                str(raw),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        sandbox.wait()
        if not raw.exists():
            raise SystemExit(f"profile: py-spy recorded nothing: {spy.stderr[-800:]}")
        return summarize(raw)


def importtime(stderr: str, top: int = 25) -> str:
    rows = []
    for line in stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            self_us, cumulative_us, name = (p.strip() for p in line.split(":", 1)[1].split("|"))
            if self_us.isdigit():
                rows.append((int(cumulative_us), int(self_us), name))
    total = sum(s for _, s, _ in rows)
    out = [f"{len(rows)} modules, {total / 1000:.1f} ms of imports in all"]
    out += [
        f"{c / 1000:8.1f} ms cumulative {s / 1000:7.1f} ms own  {n}"
        for c, s, n in sorted(rows, reverse=True)[:top]
    ]
    return "\n".join(out)


def main() -> int:
    top = argparse.ArgumentParser(prog="bench/profile.py", description=__doc__.split("\n\n")[0])
    top.add_argument("scenario", choices=sorted(SCENARIOS))
    top.add_argument("--memory", type=int, default=1769)
    top.add_argument("--rate", type=int, default=500, help="py-spy samples per second")
    top.add_argument("--invocations", type=int, default=20)
    top.add_argument("--cprofile", action="store_true", help="cProfile instead of py-spy")
    args = top.parse_args()
    print(record(args.scenario, args.memory, args.rate, args.invocations, args.cprofile))
    return 0


if __name__ == "__main__":
    sys.exit(main())
