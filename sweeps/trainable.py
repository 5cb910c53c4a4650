"""The Tune trainable: a thin adapter over ``handpose.train.train``.

It builds the trial's config from the base config + searched values, resumes from Tune's
checkpoint if there is one, and hands every validation (metrics + checkpoint) to Tune.
The model and data are built inside ``train``, in the trial's process.

One copy of each checkpoint: once Tune has persisted a reported checkpoint, the run
folder's copy is deleted (Tune keeps the latest; exact resume needs nothing else).
A loss that becomes NaN/inf ends the trial at once, without retries: it reports
``diverged`` with the reason and returns (the summary calls it ERROR, the searcher tells
Optuna PRUNED with a penalty so TPE avoids the region).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import ray
import torch
from ray import tune

from handpose.train import NonFiniteLossError, train
from sweeps.spec import trial_config

# Reported at every validation (besides Tune's own fields).
REPORTED = ("step", "mpjpe", "mpjpe_rel", "pa_mpjpe", "rte", "dropout_rate", "val_fingerprint",
            "num_samples", "gap_mpjpe", "bad_samples", "val_total")


def handpose_trial(config: dict[str, Any], base: dict[str, Any], runs_dir: str | None) -> None:
    """One sweep trial. ``config``: searched values keyed by config key; ``base``: the
    sweep's resolved base config (a small dict; paths already absolute); ``runs_dir``: the
    shared folder for the trial's run folder (None: Tune's trial folder on this node)."""
    cfg = trial_config(base, config)
    ctx = tune.get_context()
    cfg.GENERAL.run_name = ctx.get_trial_name()
    cfg.AIM.experiment = ctx.get_experiment_name()
    cpus = int(ray.get_runtime_context().get_assigned_resources().get("CPU", 1))
    torch.set_num_threads(max(1, cpus))
    node_id = ray.get_runtime_context().get_node_id()
    run_dir = Path(runs_dir) / ctx.get_trial_name() if runs_dir else Path(
        ctx.get_trial_dir()) / "run"
    last = {"step": 0}

    def report(metrics: dict[str, Any], ckpt_dir: Path) -> None:
        out = {k: metrics[k] for k in REPORTED if k in metrics}
        out.update({k: v for k, v in metrics.items() if k.startswith("train_")})
        out.update(node_id=node_id, run_dir=str(run_dir))
        tune.report(out, checkpoint=tune.Checkpoint.from_directory(str(ckpt_dir)))
        shutil.rmtree(ckpt_dir, ignore_errors=True)  # Tune holds its copy now
        last["step"] = int(metrics["step"])

    aim_extra = {"sweep": {"name": ctx.get_experiment_name(), "trial_id": ctx.get_trial_id(),
                           "searched": dict(config)}}
    checkpoint = tune.get_checkpoint()
    try:
        if checkpoint is None:
            train(cfg, hook=report, run_dir=run_dir, aim_extra=aim_extra)
            return
        with checkpoint.as_directory() as ckpt_dir:
            cfg.GENERAL.resume_path = str(ckpt_dir)
            train(cfg, hook=report, run_dir=run_dir, aim_extra=aim_extra)
    except NonFiniteLossError as e:
        step = int(getattr(e, "step", last["step"] + 1))
        tune.report({"step": step, "mpjpe": float("nan"), "diverged": 1,
                     "error": f"NonFiniteLossError: {e}"[:500], "node_id": node_id,
                     "run_dir": str(run_dir)})
