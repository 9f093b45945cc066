"""Shared fixtures: root check and the layer the sandbox tests attach."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from layers import DIST, built_layer_zip, dev_layer_dir

ROOT = Path(__file__).resolve().parent.parent


def pytest_sessionstart(session: pytest.Session) -> None:
    if os.geteuid() != 0:
        raise pytest.UsageError(
            "the test suite needs root: the sandbox creates cgroups, loop devices and namespaces"
        )


@pytest.fixture(scope="session")
def monitor_layer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The layer a user would attach: dist/tmp-monitor-x86_64.zip, built by ./build.sh."""
    zip_path = built_layer_zip()
    if zip_path is not None:
        return zip_path
    # Until the layer build lands, a layer that runs the package from the source tree.
    return dev_layer_dir(tmp_path_factory.mktemp("dev-layer"))


@pytest.fixture(scope="session")
def dist_dir() -> Path:
    return DIST
