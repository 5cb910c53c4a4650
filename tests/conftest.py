"""Shared fixtures: a small synthetic data set (made once per session) and tiny configs.

Tests load the real configs (configs/stage1-tiny.yaml) and shrink them with overrides.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest

REPO = Path(__file__).resolve().parent.parent
T = TypeVar("T")
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


def data_overrides(data_dir: Path) -> list[str]:
    return [
        f"DATA.synthetic.dir={data_dir}",
        f"DATA.train.source=[{data_dir}/train-*.tar]",
        f"DATA.val.source=[{data_dir}/val-*.tar]",
    ]


# a fresh model instead of the preset's pretrained weights (weights/: 4 + 2 layers)
SCRATCH = ("MODEL.backbone.checkpoint=null", "MODEL.handec.checkpoint=null")
# what the tests check is the pipeline, not the model: a 1-layer backbone and decoder from
# scratch keep each step cheap (suite time)
SMALL_MODEL = ("MODEL.backbone.depth=1", "MODEL.handec.num_layer=1", *SCRATCH)


def tiny_overrides(data_dir: Path, out_dir: Path, steps: int = 8) -> list[str]:
    """A run of ``steps`` steps with validation every ``steps // 2`` on the test data."""
    return data_overrides(data_dir) + [
        f"GENERAL.output_dir={out_dir}",
        f"GENERAL.total_step={steps}",
        f"GENERAL.checkpoint_step={steps // 2}",
        f"GENERAL.log_step={steps // 2}",
        "GENERAL.aim_log_step=2",
        "GENERAL.dropout_warmup_step=2",
        "TRAIN.warmup_step=2",
        "TRAIN.sample_per_device=8",
        "DATA.val.max_samples=32",
        "DATA.train_eval_samples=16",
        "DATA.val_batch_size=16",
        *SMALL_MODEL,
        f"AIM.server_url={out_dir}/aim",
    ]


def sweep_cmd(spec: Path, storage: Path, name: str, data_dir: Path, *extra: str) -> list[str]:
    """``python sweeps/dropout_warmup.py --smoke`` of ``spec`` on 2 CPUs, the test data and
    :data:`SMALL_MODEL`; ``extra``: more flags and KEY=VALUE overrides."""
    return [
        sys.executable,
        "sweeps/dropout_warmup.py",
        "--smoke",
        "--spec",
        str(spec),
        "--storage",
        str(storage),
        "--name",
        name,
        "--num-cpus",
        "2",
        *extra,
        *data_overrides(data_dir),
        *SMALL_MODEL,
    ]


def wait_for(pred: Callable[[], T | None], timeout_s: float, what: str) -> T:
    """Poll ``pred`` every 0.2 s until it returns something truthy (returned); fail after
    ``timeout_s`` seconds."""
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        got = pred()
        if got:
            return got
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


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
