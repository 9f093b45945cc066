"""The tools share nothing with the extension but its public names (SPEC 2), and reading a file
loads neither boto3 nor matplotlib."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

TOOLS = Path(__file__).resolve().parent.parent / "tools" / "tmp_monitor_tools"


def test_tools_import_only_the_names_of_the_extension() -> None:
    used: set[str] = set()
    for path in TOOLS.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("tmp_monitor"):
                if node.module == "tmp_monitor":
                    used |= {f"tmp_monitor.{a.name}" for a in node.names}
                elif not node.module.startswith("tmp_monitor_tools"):
                    used.add(node.module)
            elif isinstance(node, ast.Import):
                used |= {a.name for a in node.names if a.name.split(".")[0] == "tmp_monitor"}
    assert used == {"tmp_monitor.names"}


def test_reading_a_file_loads_no_aws_sdk_and_no_plotting() -> None:
    data = Path(__file__).parent / "data" / "tools" / "sandbox-no-purge.jsonl"
    code = (
        "import sys, io\n"
        "from tmp_monitor_tools import cli\n"
        f"assert cli.main(['report', {str(data)!r}], io.StringIO()) == 0\n"
        "print(sorted(m for m in ('boto3', 'botocore', 'matplotlib') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
