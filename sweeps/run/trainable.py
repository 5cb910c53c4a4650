"""The Tune trainable: a thin adapter over ``handpose.train.train``.

It builds the trial's config from the base config + searched values, resumes from Tune's
checkpoint if there is one, and hands every validation (metrics + checkpoint) to Tune.
The model and data are built inside ``train``, in the trial's process.

One copy of each checkpoint: once Tune has persisted a reported checkpoint, the run
folder's copy is deleted (Tune keeps the latest; exact resume needs nothing else). A
validation less than ``checkpoint_interval_s`` after the last handed checkpoint (the
spec's, ``CheckpointGate``) is reported without its checkpoint, which is
deleted: a retry resumes from the last one handed and replays the rest.

Data-parallel trials (``resources.workers`` > 1): ``ddp_trial`` runs a Ray Train
``TorchTrainer`` inside the Tune trial; its workers (which may sit on different nodes)
each run ``train`` on their rank, rank 0's metrics reach Tune (``TuneReportCallback``) and
Ray Train keeps the checkpoint (the latest, ``checkpoint-<step>``) in
``<sweep>/train/<trial>``. A worker that dies is replaced and the group resumes from that
checkpoint (``max_failures``); Tune stopping the trial stops its workers.
A loss that becomes NaN/inf ends the trial at once, without retries: it reports
``diverged`` with the reason and returns (the summary calls it ERROR, the searcher tells
Optuna PRUNED with a penalty so TPE avoids the region).
"""

from __future__ import annotations

import contextlib
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray
import torch
from ray import tune

from handpose.config import load_config
from handpose.distributed import world
from handpose.train import NonFiniteLossError, ValidationHook, train
from sweeps.run.curve_copy import attach_curve, restore_curve
from sweeps.run.spec import ResourcesCfg
from sweeps.run.telemetry import TrialMetrics

# Reported at every validation (besides Tune's own fields).
REPORTED = (
    "step",
    "mpjpe",
    "mpjpe_rel",
    "pa_mpjpe",
    "rte",
    "dropout_rate",
    "val_fingerprint",
    "num_samples",
    "gap_mpjpe",
    "bad_samples",
    "val_total",
    "aim_hash",  # the trial's Aim run (summary.json keeps it)
)


class CheckpointGate:
    """Whether a trial hands Tune the checkpoint of this validation: once ``interval_s``
    seconds (wall) have passed since the trial started or since the last one it handed, and
    always at ``final_step``. Tune snapshots its whole experiment state (and copies its
    staging folder) whenever one trial has checkpointed ``keep_checkpoints`` times since the
    last snapshot: with many short trials validating a second apart, every second or two, a
    cost that grew with the square of the trials (docs/benchmarks.md section 7). A retry
    replays at most ``interval_s`` of training; 0 hands every checkpoint."""

    def __init__(self, interval_s: float, final_step: int) -> None:
        self.interval_s, self.final_step = interval_s, final_step
        self.last_s = time.monotonic()

    def __call__(self, step: int) -> bool:
        now = time.monotonic()
        if step >= self.final_step or now - self.last_s >= self.interval_s:
            self.last_s = now
            return True
        return False


def _reporting_hook(
    report_fn: Callable,
    gate: CheckpointGate,
    run_dir: Path,
    node_id: str,
    last: dict[str, int],
    exporter: TrialMetrics | None,
) -> ValidationHook:
    """``train``'s hook in a trial: the metrics to ``report_fn`` (with the checkpoint when
    ``gate`` says so) and to the ``exporter`` (the Ray dashboard's), the run folder's
    checkpoint deleted, the step kept in ``last``."""

    def report(metrics: dict[str, Any], ckpt_dir: Path | None) -> None:
        if exporter is not None:
            exporter.validation(metrics)
        out = {k: metrics[k] for k in REPORTED if k in metrics}
        out.update({k: v for k, v in metrics.items() if k.startswith("train_")})
        out.update(node_id=node_id, run_dir=str(run_dir))
        handed = ckpt_dir is not None and gate(int(metrics["step"]))
        if handed:  # the curve so far travels with it (s3://: the driver reads that copy)
            attach_curve(run_dir, ckpt_dir)
        report_fn(out, tune.Checkpoint.from_directory(str(ckpt_dir)) if handed else None)
        if ckpt_dir is not None:
            shutil.rmtree(ckpt_dir, ignore_errors=True)  # Ray holds its copy (or an older one)
        last["step"] = int(metrics["step"])

    return report


def _run_trial(
    searched: dict[str, Any],
    base: Mapping[str, Any],
    run_dir: Path,
    trial: dict,
    report_fn: Callable,
    checkpoint: Any,
    checkpoint_interval_s: float,
    export_metrics: bool = False,
) -> None:
    """Train the trial's config (resuming from ``checkpoint`` if any), handing every
    validation to ``report_fn(metrics, checkpoint | None)``, with its checkpoint when
    ``CheckpointGate(checkpoint_interval_s)`` says so; the run folder's checkpoint is
    deleted once reported. A diverged loss is reported as ``diverged`` and ends the trial.
    The trial's config (``base`` with the ``searched`` values) is built and
    validated here, once. With ``export_metrics`` rank 0 exports the trial's metrics
    (``sweeps/run/telemetry.py``)."""
    node_id = ray.get_runtime_context().get_node_id()
    last = {"step": 0}
    params = {**searched, "GENERAL.run_name": trial["name"], "AIM.experiment": trial["experiment"]}
    aim_extra = {
        "sweep": {"name": trial["experiment"], "trial_id": trial["id"], "searched": dict(searched)}
    }
    exporter = None
    if export_metrics and world()[0] == 0:
        exporter = TrialMetrics(trial["experiment"], trial["id"])
    resumed = checkpoint.as_directory() if checkpoint is not None else contextlib.nullcontext()
    try:
        with resumed as ckpt_dir:
            if ckpt_dir is not None:
                params["GENERAL.resume_path"] = str(ckpt_dir)
                if not (torch.distributed.is_initialized() and torch.distributed.get_rank()):
                    restore_curve(Path(ckpt_dir), run_dir)  # a retry on another node
            cfg = load_config(base, params=params, origin="the sweep's base config")
            gate = CheckpointGate(checkpoint_interval_s, cfg.GENERAL.total_step)
            hook = _reporting_hook(report_fn, gate, run_dir, node_id, last, exporter)
            logs = {"log_hook": exporter.log_step} if exporter is not None else {}
            train(cfg, hook=hook, run_dir=run_dir, aim_extra=aim_extra, **logs)
    except NonFiniteLossError as e:
        step = int(getattr(e, "step", last["step"] + 1))
        report_fn(
            {
                "step": step,
                "mpjpe": float("nan"),
                "diverged": 1,
                "error": f"NonFiniteLossError: {e}"[:500],
                "node_id": node_id,
                "run_dir": str(run_dir),
            },
            None,
        )
    finally:
        if exporter is not None:
            exporter.close()


def _trial_info() -> dict[str, str]:
    ctx = tune.get_context()
    return {
        "name": ctx.get_trial_name(),
        "id": ctx.get_trial_id(),
        "experiment": ctx.get_experiment_name(),
        "dir": ctx.get_trial_dir(),
    }


def _run_dir(runs_dir: str | None, trial: dict[str, str]) -> Path:
    return Path(runs_dir) / trial["name"] if runs_dir else Path(trial["dir"]) / "run"


def handpose_trial(
    config: dict[str, Any],
    base: Mapping[str, Any],
    runs_dir: str | None,
    checkpoint_interval_s: float = 0.0,
    export_metrics: bool = False,
) -> None:
    """One sweep trial. ``config``: searched values keyed by config key; ``base``: the
    sweep's base config (validated, paths absolute; a plain dict of one works too);
    ``runs_dir``: the shared folder for the trial's run folder (None: Tune's trial folder on
    this node); ``checkpoint_interval_s``: the least wall time between checkpoints handed to
    Tune; ``export_metrics``: the trial's metrics to Ray's metrics agent."""
    cpus = int(ray.get_runtime_context().get_assigned_resources().get("CPU", 1))
    torch.set_num_threads(max(1, cpus))
    trial = _trial_info()

    def report_fn(metrics: dict[str, Any], checkpoint: Any) -> None:
        tune.report(metrics, checkpoint=checkpoint)

    _run_trial(
        config,
        base,
        _run_dir(runs_dir, trial),
        trial,
        report_fn,
        tune.get_checkpoint(),
        checkpoint_interval_s,
        export_metrics,
    )


def _ddp_worker(loop: dict[str, Any]) -> None:
    """One Ray Train worker of a data-parallel trial (the process group is initialised)."""
    import ray.train

    torch.set_num_threads(max(1, int(loop["cpu"])))
    rank = ray.train.get_context().get_world_rank()

    def report_fn(metrics: dict[str, Any], checkpoint: Any) -> None:
        # every rank reports (Ray Train synchronises them); rank 0 carries the checkpoint.
        # Its folder is named by its step (checkpoint-<step>), not by the time: a group that
        # dies after rank 0's upload but before Ray Train registered it leaves that folder
        # behind, and the restarted group's report of the same step replaces it.
        ckpt = checkpoint if rank == 0 else None
        name = Path(checkpoint.path).name if ckpt is not None else None
        ray.train.report(metrics, checkpoint=ckpt, checkpoint_dir_name=name)

    _run_trial(
        loop["searched"],
        loop["base"],
        Path(loop["run_dir"]),
        loop["trial"],
        report_fn,
        ray.train.get_checkpoint(),
        loop["checkpoint_interval_s"],
        loop["export_metrics"],
    )


@dataclass(frozen=True)
class WorkerGroup:
    """The Ray Train worker group of a data-parallel trial: ``resources.workers`` workers of
    ``resources.cpu`` CPUs and ``resources.gpu`` GPUs each, restarted up to ``max_failures``
    times, its checkpoints in ``train_dir/<trial>``."""

    resources: ResourcesCfg
    max_failures: int
    train_dir: str


def ddp_trial(
    config: dict[str, Any],
    base: Mapping[str, Any],
    runs_dir: str | None,
    checkpoint_interval_s: float,
    group: WorkerGroup,
    export_metrics: bool = False,
) -> None:
    """A data-parallel sweep trial: a ``TorchTrainer`` of the ``group``'s workers training
    the trial's config; rank 0 reports to Tune. Ray Train keeps the trial's checkpoint in
    ``group.train_dir/<trial>``: a retried trial (or a ``--resume``) continues from it."""
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer
    from ray.tune.integration.ray_train import TuneReportCallback

    trial = _trial_info()
    r = group.resources
    loop = {
        "searched": dict(config),
        "base": base,
        "trial": trial,
        "cpu": r.cpu,
        "run_dir": str(_run_dir(runs_dir, trial)),
        "checkpoint_interval_s": checkpoint_interval_s,
        "export_metrics": export_metrics,
    }
    resources = {"CPU": r.cpu, **({"GPU": r.gpu} if r.gpu else {})}
    TorchTrainer(
        _ddp_worker,
        train_loop_config=loop,
        scaling_config=ScalingConfig(
            num_workers=r.workers, use_gpu=r.gpu > 0, resources_per_worker=resources
        ),
        run_config=RunConfig(
            name=trial["name"],
            storage_path=group.train_dir,
            failure_config=FailureConfig(max_failures=group.max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=1),
            callbacks=[TuneReportCallback()],
        ),
    ).fit()
