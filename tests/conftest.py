"""Fixtures of every test folder: a throwaway HOME, a small synthetic data set (made once
per session) and one local Ray (started on first use, shut down at the end of the session).

Tests load the real configs (configs/stage1-tiny.yaml) and shrink them with the overrides of
tests/helpers.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import REPO

os.environ.setdefault("RAY_DEDUP_LOGS", "0")


@pytest.fixture(scope="session", autouse=True)
def throwaway_home(tmp_path_factory):
    """Ray 2.60 writes an auth token under $HOME/.ray: the session runs with a throwaway
    HOME (subprocesses inherit it), never the user's; restored at the end."""
    mp = pytest.MonkeyPatch()
    mp.setenv("HOME", str(tmp_path_factory.mktemp("home")))
    yield
    mp.undo()


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> Path:
    """256 train / 64 val synthetic samples, generated once via the public CLI."""
    out = tmp_path_factory.mktemp("synthetic")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "handpose.data.synthetic",
            "--out",
            str(out),
            "--train",
            "256",
            "--val",
            "64",
            "--seed",
            "0",
        ],
        check=True,
        cwd=REPO,
        stderr=subprocess.DEVNULL,
    )
    return out


@pytest.fixture(scope="session")
def local_ray():
    """One local Ray (2 CPUs, no dashboard) for the tests that run Tune in this process,
    started by the first that asks and shut down at the end of the session.
    ``address="local"``: a Ray of its own, never one found on this machine. A sweep ``main``
    called in-process uses it (``connect_ray``); the CLI in a subprocess starts its own.
    tests/deploy/test_multinode.py keeps its own Ray: a multi-node cluster of ``ray start``
    processes with token authentication (tests/deploy/ray_cluster.py), not this process's."""
    import ray  # here, not at the top: collecting the tests needs no Ray

    ray.init(
        address="local",
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        # application metrics reach the node's endpoint within 1 s, not 10 (test_telemetry)
        _system_config={"metrics_report_interval_ms": 1000},
    )
    yield
    ray.shutdown()


_EXIT_STATUS: list[int] = []


def pytest_sessionfinish(session, exitstatus):
    _EXIT_STATUS.append(int(exitstatus))


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    """Leave with pytest's own exit status, skipping the interpreter's teardown: that teardown
    can segfault after the summary is printed (native objects of Aim/RocksDB, Ray and torch
    that tests opened in this process), turning a finished run's status into 139. Nothing
    is skipped but destructors at exit."""
    if _EXIT_STATUS:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(_EXIT_STATUS[0])
