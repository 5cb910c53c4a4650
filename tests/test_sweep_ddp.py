"""Data-parallel trials: with ``resources.workers: 2`` every trial is a Ray Train
TorchTrainer of 2 gloo workers inside Tune; the sweep completes, rank 0's metrics reach Tune
and the summary, and every trial validates on the one fixed stream."""

from __future__ import annotations

import json

import pytest
import ray
import yaml

from sweeps.dropout_warmup import main
from sweeps.spec import SPEC_PATH

from .conftest import data_overrides

pytestmark = pytest.mark.slow


def test_two_worker_trials_complete_with_one_fingerprint(data_dir, tmp_path):
    raw = yaml.safe_load(SPEC_PATH.read_text())
    preset = raw["presets"]["smoke"]
    # 2 workers x 0.9 CPU (+ 0.01 for the trial itself) on 2 CPUs: one trial at a time
    preset.update(
        num_samples=2,
        max_concurrent=1,
        resources={"cpu": 0.9, "gpu": 0, "workers": 2},
        space={"MODEL.handec.dropout": {"type": "choice", "values": [0.1, 0.2]}},
    )
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(raw))
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        code = main(
            [
                "--smoke",
                "--spec",
                str(spec),
                "--storage",
                str(tmp_path / "res"),
                "--name",
                "ddp",
                "GENERAL.total_step=40",
                *data_overrides(data_dir),
            ]
        )
    finally:
        ray.shutdown()
    assert code == 0
    sweep = tmp_path / "res" / "ddp"
    summary = json.loads((sweep / "summary.json").read_text())
    assert [t["status"] for t in summary["trials"]] == ["COMPLETED", "COMPLETED"]
    assert summary["comparable"] and len(summary["val_fingerprints"]) == 1
    for t in summary["trials"]:
        assert [s for s, _ in t["curve"]] == [20, 40]
        log = (sweep / "runs" / f"ddp_trial_{t['trial_id']}" / "log.txt").read_text()
        assert "| 2 process(es) |" in log, log[:2000]  # really data-parallel
