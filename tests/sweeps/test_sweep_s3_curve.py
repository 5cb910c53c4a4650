"""With ``s3://`` storage, a retried trial's curve is whole: each checkpoint the trial hands
Tune carries its ``metrics.jsonl``, a retry on another node starts from that copy, and the
summary reads the latest checkpoint's copy where the run folder is out of its reach. A real
S3 API: moto's server, in this process."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pyarrow.fs
import pytest
from ray import tune

from sweeps.results.summary import trial_curve
from sweeps.run.curve_copy import restore_curve
from sweeps.run.trainable import CheckpointGate, _reporting_hook
from tests.deploy.ray_cluster import free_ports

TRIAL = "sw/handpose_trial_aaaaaaaa_1_x=0.1_2026-12-07_05-00-01"


@pytest.fixture
def s3(monkeypatch) -> Iterator[pyarrow.fs.S3FileSystem]:
    """A bucket ``sweeps`` on a moto S3 server on a free port, as pyarrow (Tune) reaches it."""
    import boto3
    from moto.server import ThreadedMotoServer

    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(key, "testing")
    (port,) = free_ports(1)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        url = f"http://127.0.0.1:{port}"
        boto3.client("s3", endpoint_url=url, region_name="us-east-1").create_bucket(Bucket="sweeps")
        yield pyarrow.fs.S3FileSystem(
            endpoint_override=url, access_key="testing", secret_key="testing", region="us-east-1"
        )
    finally:
        server.stop()


def _validate(run_dir: Path, step: int, mpjpe: float) -> Path:
    """What ``train`` leaves at a validation: a val line and ``checkpoints/checkpoint-<step>``."""
    with open(run_dir / "metrics.jsonl", "a") as f:
        f.write(json.dumps({"step": step, "split": "train", "total": 1.0}) + "\n")
        f.write(json.dumps({"step": step, "split": "val", "mpjpe": mpjpe}) + "\n")
    ckpt = run_dir / "checkpoints" / f"checkpoint-{step:06d}"
    ckpt.mkdir(parents=True)
    (ckpt / "state.pt").write_bytes(b"x")
    return ckpt


def _hook(run_dir: Path, s3: pyarrow.fs.S3FileSystem, handed: list[str]):
    """The trial's reporting hook, Tune's upload of each checkpoint to S3 in its place."""

    def report(metrics: dict, checkpoint: tune.Checkpoint | None) -> None:
        if checkpoint is not None:
            dest = f"sweeps/{TRIAL}/checkpoint_{len(handed):06d}"
            pyarrow.fs.copy_files(checkpoint.path, dest, destination_filesystem=s3)
            handed.append(dest)

    return _reporting_hook(report, CheckpointGate(0.0, 100), run_dir, "node", {"step": 0}, None)


def test_a_retried_trials_curve_is_whole_from_its_s3_checkpoint(tmp_path, s3):
    handed: list[str] = []
    first = tmp_path / "node-a" / "run"  # the first attempt's run folder, on its node
    first.mkdir(parents=True)
    hook = _hook(first, s3, handed)
    for step, mpjpe in ((10, 50.0), (20, 40.0)):
        hook({"step": step, "mpjpe": mpjpe}, _validate(first, step, mpjpe))
    # the node dies; the retry lands on another node and resumes from the latest checkpoint
    resumed = tune.Checkpoint(handed[-1], filesystem=s3).to_directory(str(tmp_path / "dl"))
    retry = tmp_path / "node-b" / "run"
    retry.mkdir(parents=True)
    restore_curve(Path(resumed), retry)
    hook = _hook(retry, s3, handed)
    hook({"step": 30, "mpjpe": 35.0}, _validate(retry, 30, 35.0))

    # Tune's copy of the results lost steps 10 and 20 (its sync before the retry was older)
    tune_rows = pd.DataFrame({"step": [30], "mpjpe": [35.0]})
    latest = tune.Checkpoint(handed[-1], filesystem=s3)
    curve = trial_curve(tune_rows, "mpjpe", str(tmp_path / "elsewhere" / "run"), latest)
    assert curve == [[10, 50.0], [20, 40.0], [30, 35.0]]
