"""A retried trial's curve in ``summary.json`` keeps every validation, with any
``keep_checkpoints``, although Tune's own results of that trial lose some (real Tune)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf
from ray import tune

from handpose.tracking import Tracker
from sweeps.results.summary import collect_trials
from sweeps.run.spec import PresetCfg, SweepSpec

CRASH_AFTER = 30  # the first attempt dies after reporting this step (with its checkpoint)
TOTAL = 40


def _scripted_trial(config: dict[str, Any]) -> None:
    """Validates every 10 steps to ``TOTAL``: ``metrics.jsonl`` through the real ``Tracker``,
    then a report with a checkpoint; the first attempt dies after step ``CRASH_AFTER``."""
    run_dir = Path(config["runs"]) / tune.get_context().get_trial_id()
    run_dir.mkdir(parents=True, exist_ok=True)
    ckpt = tune.get_checkpoint()
    start = None
    if ckpt is not None:
        with ckpt.as_directory() as d:
            start = int((Path(d) / "step").read_text())
    tracker = Tracker(OmegaConf.create({"AIM": {"enabled": False}}), run_dir, resume_step=start)
    for step in range((start or 0) + 10, TOTAL + 1, 10):
        mpjpe = 100.0 - step
        tracker.track(step, "val", {"mpjpe": mpjpe}, to_jsonl=True)
        ckpt_dir = run_dir / f"ckpt-{step}"
        ckpt_dir.mkdir()
        (ckpt_dir / "step").write_text(str(step))
        metrics = {"step": step, "mpjpe": mpjpe, "run_dir": str(run_dir)}
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(str(ckpt_dir)))
        time.sleep(1)  # Tune's copy to the sweep folder (a thread) ends before the next line
        if step == CRASH_AFTER and start is None:
            time.sleep(2)  # the driver registers this checkpoint: the retry resumes from it
            os._exit(1)  # the worker process dies
    tracker.close()


def test_retried_trial_curve_has_every_validation_with_keep_checkpoints_2(
    tmp_path, monkeypatch, local_ray
):
    # Tune snapshots its state (and copies the trial's result.json to the sweep folder) only
    # when forced: with num_to_keep=2, after every second checkpoint of a trial (steps 20, 40)
    monkeypatch.setenv("TUNE_GLOBAL_CHECKPOINT_S", "100000")  # read by the driver's Tune
    results = tune.Tuner(
        tune.with_resources(_scripted_trial, {"cpu": 1}),
        param_space={"runs": str(tmp_path / "runs")},
        tune_config=tune.TuneConfig(metric="mpjpe", mode="min"),
        run_config=tune.RunConfig(
            name="curves",
            storage_path=str(tmp_path / "res"),
            failure_config=tune.FailureConfig(max_failures=1),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
            verbose=0,
        ),
    ).fit()
    (result,) = results
    assert result.error is None and result.metrics["step"] == TOTAL
    # the retry got back the sweep folder's result.json of step 20: Tune lost step 30
    assert list(result.metrics_dataframe["step"]) == [10, 20, 40], (
        "Tune kept every result of the retried trial: this test no longer reproduces the loss "
        "sweeps.results.summary.trial_curve makes up for (a Ray upgrade?)"
    )
    spec = SweepSpec("t", "mpjpe", "min", PresetCfg(), {}, [])
    record = {"trial_index": {}, "sentinels": set(), "stopped": set()}
    (trial,) = collect_trials(results, spec, TOTAL, record)
    assert trial["status"] == "COMPLETED"
    assert trial["curve"] == [[10, 90.0], [20, 80.0], [30, 70.0], [40, 60.0]]
