"""examples/template.yaml: valid for cfn-lint, and consistent with the layer names, the monitor's
configuration variables and the dashboard that `tmp-monitor dashboard` builds."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cfnlint.decode import decode

from tmp_monitor import names
from tmp_monitor_tools import dashboard

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "examples" / "template.yaml"
CFN_LINT = Path(sys.executable).parent / "cfn-lint"


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    body, problems = decode(str(TEMPLATE))
    assert not problems, problems
    assert body is not None
    return dict(body)


def resources(template: dict[str, Any], kind: str) -> dict[str, Any]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == kind}


def test_cfn_lint_passes() -> None:
    done = subprocess.run(
        [str(CFN_LINT), str(TEMPLATE)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_one_layer_per_architecture_from_the_built_zips(template: dict[str, Any]) -> None:
    assert template["Transform"] == "AWS::Serverless-2016-10-31"
    layers = resources(template, "AWS::Serverless::LayerVersion")
    by_arch = {
        tuple(v["Properties"]["CompatibleArchitectures"]): v["Properties"] for v in layers.values()
    }
    assert set(by_arch) == {("x86_64",), ("arm64",)}
    for (arch,), props in by_arch.items():
        assert props["ContentUri"] == f"../dist/tmp-monitor-{arch}.zip"
        assert (
            TEMPLATE.parent / props["ContentUri"]
        ).resolve() == ROOT / "dist" / f"tmp-monitor-{arch}.zip"
        assert props["LicenseInfo"] == "MIT-0"
        assert "CompatibleRuntimes" not in props  # an extension for any runtime


def test_the_example_function_has_the_layer_and_valid_monitor_variables(
    template: dict[str, Any],
) -> None:
    (fn,) = resources(template, "AWS::Serverless::Function").values()
    props = fn["Properties"]
    code = TEMPLATE.parent / props["CodeUri"]
    module, export = props["Handler"].split(".")
    assert f"export const {export} =" in (code / f"{module}.mjs").read_text()
    assert props["Runtime"].startswith("nodejs")
    x86 = next(
        k for k, v in resources(template, "AWS::Serverless::LayerVersion").items()
        if v["Properties"]["CompatibleArchitectures"] == ["x86_64"]
    )  # fmt: skip
    assert props["Architectures"] == ["x86_64"]
    assert props["Layers"] == [{"Ref": x86}]
    variables = props["Environment"]["Variables"]
    known = {v for k, v in vars(names).items() if k.startswith("ENV_")}
    monitor = {k for k in variables if k.startswith("TMP_MONITOR_")}
    assert monitor and monitor <= known
    assert variables[names.ENV_NAMESPACE] == {"Ref": "Namespace"}
    assert template["Parameters"]["Namespace"]["Default"] == names.DEFAULT_NAMESPACE


def test_dashboard_body_is_what_dashboard_py_builds_for_the_template(
    template: dict[str, Any],
) -> None:
    (fn,) = resources(template, "AWS::Serverless::Function").values()
    variables = fn["Properties"]["Environment"]["Variables"]
    (board,) = resources(template, "AWS::CloudWatch::Dashboard").values()
    body = json.loads(board["Properties"]["DashboardBody"]["Fn::Sub"])
    expected = dashboard.build_body(
        dashboard.Config(
            function_name="${TmpWriterFunction}",
            region="${AWS::Region}",
            namespace="${Namespace}",
            dimensions=tuple(variables[names.ENV_DIMENSIONS].split(",")),
            metrics=variables[names.ENV_METRICS],
            memory_size_mb=fn["Properties"]["MemorySize"],
        )
    )
    assert body == expected, (
        "examples/template.yaml's DashboardBody is not what dashboard.py builds: put the output of "
        "the command in the comment above TmpMonitorDashboard there, indented, under the !Sub"
    )
    assert "TmpWriterFunction" in template["Resources"]


def test_alarms_watch_core_metrics_of_the_function(template: dict[str, Any]) -> None:
    (fn,) = resources(template, "AWS::Serverless::Function").values()
    alarms = {
        v["Properties"]["MetricName"]: v["Properties"]
        for v in resources(template, "AWS::CloudWatch::Alarm").values()
    }
    assert set(alarms) == {names.TMP_SHARE_OF_MAX_MEMORY, names.MAX_MEMORY_USED_MB}
    core = {n for n, (_, c) in (names.REPORT_METRICS).items() if c}
    assert set(alarms) <= core
    for alarm in alarms.values():
        assert alarm["Namespace"] == {"Ref": "Namespace"}
        assert alarm["Dimensions"] == [
            {"Name": "FunctionName", "Value": {"Ref": "TmpWriterFunction"}}
        ]
        assert alarm["Statistic"] == "Maximum"
    near = alarms[names.MAX_MEMORY_USED_MB]["Threshold"]
    assert near == int(0.9 * fn["Properties"]["MemorySize"])
