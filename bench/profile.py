"""Profile the monitor where the benchmark shows its cost, inside lambda-sandbox.

    python bench/profile.py {sampling,post_runtime,purge} [--memory MB] [--invocations N]
    python bench/profile.py importtime [--memory MB]

The first three run the benchmark's function for that row with a copy of the built layer in
which the monitor runs under cProfile (thread CPU time, main thread: where it samples, walks,
purges and writes documents; probes/profile_bootstrap.py, with Debian's _lsprof module, which
the layer leaves out), and print its profile by own and by cumulative time. The profiler slows
every call, so read the shares, not the times. py-spy cannot be used: it cannot tell the
version of the layer's interpreter. `importtime` runs the layer's interpreter with
-X importtime (a copy of the layer whose launcher adds the flag) and prints the imports that
cost the monitor's start the most.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
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


LSPROF = Path("/usr/lib/python3.11/lib-dynload/_lsprof.cpython-311-x86_64-linux-gnu.so")


def cprofile_layer(layer: Path, dest: Path) -> Path:
    root = layers.unpack(layer, dest)
    home = root / "tmp-monitor"
    shutil.copyfile(LSPROF, home / "runtime" / "lib" / "python3.11" / "lib-dynload" / LSPROF.name)
    (home / "bootstrap.py").rename(home / "bootstrap_monitor.py")
    shutil.copyfile(layers.PROBES / "profile_bootstrap.py", home / "bootstrap.py")
    return root


def record(scenario: str, memory: int, invocations: int) -> str:
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
        else:
            layer_arg = cprofile_layer(layer, work / "layer")
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
        subprocess.run(command, capture_output=True, check=False)
        stderr = (work / "capture" / "extension-tmp-monitor.stderr").read_text()
        if scenario == "importtime":
            return importtime(stderr)
        return (
            stderr.partition("BENCH profile\n")[2] or f"no profile; the monitor's stderr: {stderr}"
        )


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
    top.add_argument("--invocations", type=int, default=20)
    args = top.parse_args()
    print(record(args.scenario, args.memory, args.invocations))
    return 0


if __name__ == "__main__":
    sys.exit(main())
