"""Shared fixtures: root check and the layer the sandbox tests attach."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

DIST = Path(__file__).resolve().parent.parent / "dist"


def pytest_sessionstart(session: pytest.Session) -> None:
    if os.geteuid() != 0:
        raise pytest.UsageError(
            "the test suite needs root: the sandbox creates cgroups, loop devices and namespaces"
        )


@pytest.fixture(scope="session")
def dist_dir() -> Path:
    return DIST


@pytest.fixture(scope="session")
def monitor_layer() -> Path:
    """The layer a user would attach: dist/tmp-monitor-x86_64.zip, as ./build.sh builds it."""
    zip_path = DIST / "tmp-monitor-x86_64.zip"
    if not zip_path.is_file():
        pytest.fail(f"{zip_path} is missing: run ./build.sh layer (./build.sh test does)")
    return zip_path
