"""How each --runtime starts: its command, its own environment variables, the runtime client
files placed in /var/runtime (AWS's awslambdaric for Python, our client for Node.js) and the
interpreter placed in /var/lang, as on Lambda (Debian's python3.11 and its standard library, the
machine's Node.js), so that the environment reads them itself (see langimage.py)."""

from __future__ import annotations

import importlib.util
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

NAMES = ("python3.11", "nodejs20.x", "provided", "provided.al2023", "provided.al2")
RUNTIME_DIR = "/var/runtime"
_HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Runtime:
    name: str
    argv: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)
    files: tuple[tuple[Path, str], ...] = ()  # (host path, path relative to /var/runtime)
    lang_files: tuple[tuple[Path, str], ...] = ()  # (host path, path relative to /var/lang)
    execution_env: str = ""  # AWS_EXECUTION_ENV; custom runtimes have none
    version: str = ""  # as INIT_START shows it


class UnknownRuntime(ValueError):
    pass


def _module_files(names: tuple[str, ...]) -> tuple[tuple[Path, str], ...]:
    """The installed files of these top-level modules, to copy into /var/runtime."""
    files: list[tuple[Path, str]] = []
    for name in names:
        spec = importlib.util.find_spec(name)
        if spec is None:
            raise UnknownRuntime(f"python3.11 needs the module {name}, which is not installed")
        if spec.submodule_search_locations:
            source = Path(next(iter(spec.submodule_search_locations)))
        elif spec.origin:
            source = Path(spec.origin)
        else:
            raise UnknownRuntime(f"cannot locate the files of module {name}")
        files.append((source, source.name))
    return tuple(files)


def python_lang() -> tuple[tuple[Path, str], ...]:
    """Debian's interpreter: the venv's is a link to it. Placed at /var/lang/bin, it finds its
    standard library in /var/lang/lib/python3.11 (sys.prefix /var/lang); the few libraries its
    extension modules load (libssl, libsqlite3, libffi, ...) come from the host's /lib."""
    binary, stdlib = Path("/usr/bin/python3.11"), Path("/usr/lib/python3.11")
    if not (binary.is_file() and (stdlib / "os.py").is_file()):
        raise UnknownRuntime(
            "python3.11 needs Debian's /usr/bin/python3.11 and its /usr/lib/python3.11"
        )
    return ((binary, "bin/python3.11"), (stdlib, "lib/python3.11"))


def python311(handler: str) -> Runtime:
    return Runtime(
        name="python3.11",
        argv=("/var/lang/bin/python3.11", "-m", "awslambdaric", handler),
        env={
            # As Lambda's python3.11: the function, then layers, then the runtime client.
            "PYTHONPATH": ":".join(
                (
                    "/var/task",
                    "/opt/python/lib/python3.11/site-packages",
                    "/opt/python",
                    RUNTIME_DIR,
                )
            ),
        },
        # awslambdaric's C client (runtime_client) and its pure-Python dependencies.
        files=_module_files(
            ("awslambdaric", "runtime_client", "simplejson", "snapshot_restore_py")
        ),
        lang_files=python_lang(),
        execution_env="AWS_Lambda_python3.11",
        version="python:3.11.sandbox",
    )


def nodejs20(handler: str) -> Runtime:
    node = shutil.which("node")
    if node is None:
        raise UnknownRuntime("nodejs20.x needs Node.js (`node` on PATH), which is not installed")
    client = _HERE / "runtimes" / "node_runtime.mjs"
    return Runtime(
        name="nodejs20.x",
        argv=("/var/lang/bin/node", f"{RUNTIME_DIR}/node_runtime.mjs"),
        env={
            "NODE_PATH": ":".join(
                (
                    "/opt/nodejs/node20/node_modules",
                    "/opt/nodejs/node_modules",
                    f"{RUNTIME_DIR}/node_modules",
                    RUNTIME_DIR,
                    "/var/task",
                )
            ),
        },
        files=((client, "node_runtime.mjs"),),
        lang_files=((Path(node).resolve(), "bin/node"),),
        execution_env="AWS_Lambda_nodejs20.x",
        version="nodejs:20.sandbox",
    )


def provided(name: str, function_dir: Path) -> Runtime:
    # Lambda looks for the bootstrap in the function, then in the layers.
    bootstrap = "/var/task/bootstrap" if (function_dir / "bootstrap").exists() else "/opt/bootstrap"
    return Runtime(name=name, argv=(bootstrap,), version="provided:al2023.sandbox")


def resolve(name: str, handler: str, function_dir: Path) -> Runtime:
    if name == "python3.11":
        return python311(handler)
    if name == "nodejs20.x":
        return nodejs20(handler)
    if name in ("provided", "provided.al2", "provided.al2023"):
        return provided(name, function_dir)
    raise UnknownRuntime(f"unknown runtime {name!r}; choose one of {', '.join(NAMES)}")
