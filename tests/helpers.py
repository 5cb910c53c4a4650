"""Helpers shared by the test folders: the repository root, the overrides that shrink the
tiny preset to the test data set, the sweep command line, polling. Fixtures live in
conftest.py; a folder's own helpers live in that folder."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

REPO = Path(__file__).resolve().parent.parent
T = TypeVar("T")


def shard_overrides(folder: Path) -> list[str]:
    """Train and validation read the shards in ``folder`` (``train-*.tar``, ``val-*.tar``)."""
    return [f"DATA.train.source=[{folder}/train-*.tar]", f"DATA.val.source=[{folder}/val-*.tar]"]


def data_overrides(data_dir: Path) -> list[str]:
    """The test data set (the ``data_dir`` fixture) as the synthetic set and its shards."""
    return [f"DATA.synthetic.dir={data_dir}", *shard_overrides(data_dir)]


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


def wait_for(
    pred: Callable[[], T | None],
    timeout_s: float,
    what: str,
    proc: subprocess.Popen | None = None,
) -> T:
    """Poll ``pred`` every 0.2 s until it returns something truthy (returned); fail after
    ``timeout_s`` seconds, or as soon as ``proc`` (the process expected to bring it about)
    has exited, with the end of its output when it was piped."""
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        got = pred()
        if got:
            return got
        if proc is not None and proc.poll() is not None:
            out = proc.stdout.read()[-3000:] if proc.stdout else ""
            raise AssertionError(f"exit {proc.returncode} before {what}:\n{out}")
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
