"""The sandbox's pure parts: subscription validation, line formats, layer listing, env."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

from lambda_sandbox import environ, layout
from lambda_sandbox.cli import UsageError, payloads
from lambda_sandbox.lifecycle import exit_description
from lambda_sandbox.logs import Report, report_line
from lambda_sandbox.runtimes import Runtime
from lambda_sandbox.telemetry_api import Subscription, delivery_url, parse_subscription


def body(**changes: object) -> bytes:
    value: dict[str, object] = {
        "schemaVersion": "2022-12-13",
        "types": ["platform", "function"],
        "buffering": {"maxItems": 1000, "maxBytes": 262144, "timeoutMs": 25},
        "destination": {"protocol": "HTTP", "URI": "http://sandbox.localdomain:4243"},
    }
    value.update(changes)
    return json.dumps(value).encode()


def test_a_valid_subscription_is_parsed() -> None:
    assert parse_subscription("x", body()) == Subscription(
        "x",
        ("platform", "function"),
        1000,
        262144,
        25,
        "http://sandbox.localdomain:4243",
        "2022-12-13",
    )


def test_buffering_defaults_when_left_out() -> None:
    sub = parse_subscription("x", body(buffering=None))
    assert isinstance(sub, Subscription)
    assert (sub.max_items, sub.max_bytes, sub.timeout_ms) == (1000, 262144, 1000)


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        ({"schemaVersion": "2020-08-15"}, "schemaVersion"),
        ({"types": []}, "types"),
        ({"types": ["platform", "logs"]}, "types"),
        ({"buffering": {"maxItems": 10001}}, "buffering.maxItems"),
        ({"buffering": {"maxBytes": 262143}}, "buffering.maxBytes"),
        ({"buffering": {"timeoutMs": 30001}}, "buffering.timeoutMs"),
        ({"buffering": {"timeoutMs": True}}, "buffering.timeoutMs"),
        ({"destination": {"protocol": "TCP", "port": 4243}}, "destination.protocol"),
        ({"destination": {"protocol": "HTTP", "URI": "ftp://x"}}, "destination.URI"),
    ],
)
def test_invalid_subscriptions_say_what_is_wrong(change: dict[str, object], complaint: str) -> None:
    problem = parse_subscription("x", body(**change))
    assert isinstance(problem, str) and problem.startswith(complaint), problem


def test_sandbox_localdomain_is_loopback() -> None:
    assert delivery_url("http://sandbox.localdomain:4243/t") == "http://127.0.0.1:4243/t"
    assert delivery_url("http://127.0.0.1:9/") == "http://127.0.0.1:9/"


def test_report_line_as_lambda_prints_it() -> None:
    cold = Report("id-1", 12.344, 13, 128, 45, 123.456, "success")
    assert report_line(cold) == (
        "REPORT RequestId: id-1\tDuration: 12.34 ms\tBilled Duration: 13 ms\t"
        "Memory Size: 128 MB\tMax Memory Used: 45 MB\tInit Duration: 123.46 ms"
    )
    oom = Report("id-2", 90.0, 90, 128, 128, None, "error", "Runtime.OutOfMemory")
    assert report_line(oom).endswith(
        "Max Memory Used: 128 MB\tStatus: error\tError Type: Runtime.OutOfMemory"
    )


def test_exit_descriptions_as_lambda_words_them() -> None:
    assert exit_description(-9) == "signal: killed"
    assert exit_description(-15) == "signal: terminated"
    assert exit_description(1) == "exit status 1"


def test_extension_files_merge_layers_in_order(tmp_path: Path) -> None:
    first = tmp_path / "first.zip"
    with zipfile.ZipFile(first, "w") as archive:
        for name, mode in (("extensions/b-tool", 0o755), ("extensions/readme", 0o644)):
            info = zipfile.ZipInfo(name)
            info.external_attr = (0o100000 | mode) << 16
            archive.writestr(info, "#!/bin/sh\n")
        archive.writestr(zipfile.ZipInfo("extensions/sub/"), "")
    second = tmp_path / "second"
    (second / "extensions").mkdir(parents=True)
    (second / "extensions" / "a-tool").write_text("#!/bin/sh\n")
    (second / "extensions" / "a-tool").chmod(0o755)
    (second / "extensions" / "b-tool").write_text("now not executable\n")
    assert layout.extension_files((first,)) == ("b-tool",)
    assert layout.extension_files((first, second)) == ("a-tool",)


def test_extensions_get_the_narrower_environment() -> None:
    identity = environ.Identity("fn", 256, "app.handler")
    runtime = Runtime(
        "python3.11",
        ("python",),
        {"PYTHONPATH": "/var/runtime"},
        execution_env="AWS_Lambda_python3.11",
    )
    full = environ.function_env(
        identity,
        runtime,
        "127.0.0.1:9001",
        {"_SECRET": "1", "MINE": "2"},
        "2026/01/01/[$LATEST]abc",
    )
    assert full["_HANDLER"] == "app.handler" and full["AWS_EXECUTION_ENV"].endswith("python3.11")
    assert full["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == "256" and full["TZ"] == ":UTC"
    narrow = environ.extension_env(full)
    assert narrow["MINE"] == "2" and narrow["AWS_LAMBDA_RUNTIME_API"] == "127.0.0.1:9001"
    assert not {
        "_HANDLER",
        "_SECRET",
        "LAMBDA_TASK_ROOT",
        "AWS_EXECUTION_ENV",
        "AWS_LAMBDA_LOG_GROUP_NAME",
        "AWS_LAMBDA_LOG_STREAM_NAME",
    } & set(narrow)


def test_event_payloads(tmp_path: Path) -> None:
    assert payloads(None, None) == [b"{}"]
    assert payloads('{"a": 1}', 2) == [b'{"a": 1}'] * 2
    events = tmp_path / "events.json"
    events.write_text('[{"n": 1}, {"n": 2}]')
    assert payloads(f"@{events}", None) == [b'{"n": 1}', b'{"n": 2}']
    assert payloads(f"@{events}", 3) == [b'{"n": 1}', b'{"n": 2}', b'{"n": 1}']
    with pytest.raises(UsageError):
        payloads("[1,", 1)
