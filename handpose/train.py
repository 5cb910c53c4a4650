"""One training run: ``python -m handpose.train --config-name NAME_OR_PATH [KEY=VALUE ...]``.

``train(cfg, hook)`` is the library entry point; the CLI and the Ray Tune trainable are its
two thin callers. Read it top to bottom: setup, (resume), loop, validate + checkpoint.

Data-parallel: when ``torch.distributed`` is initialised (``torchrun --nproc_per_node N -m
handpose.train ...``, or a Ray Train worker), each rank trains on its part of the train
stream (``TRAIN.sample_per_device`` per rank) through DDP; rank 0 alone validates and
writes (run folder, checkpoints, console, Aim) while the others wait (docs/internals.md).
"""

from __future__ import annotations

import argparse
import gc
import math
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from omegaconf import DictConfig
from torch.nn.parallel import DistributedDataParallel

from handpose.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from handpose.config import is_validated, load_config, to_yaml, val_step, validate
from handpose.data import (
    TrainStream,
    ValStream,
    build_train_stream,
    build_val_stream,
    ensure_dataset,
)
from handpose.distributed import init_distributed, mean_over_ranks, pick_device, world
from handpose.ema import WeightAverage
from handpose.errors import UserError, run_cli
from handpose.evaluate import evaluate_stream, train_eval_stream
from handpose.losses import compute_losses
from handpose.model import PoseNet, build_model, param_groups
from handpose.schedules import get_lr_scale, get_progressive_dropout
from handpose.tracking import LOG, LossWindow, Tracker, format_train_line, setup_logging

# hook(metrics, checkpoint_dir): called on every rank after every validation, with the same
# metrics (with the run's Aim run hash, ``aim_hash``, when Aim is on); checkpoint_dir is the
# saved checkpoint on rank 0 and None on the other ranks
ValidationHook = Callable[[dict[str, Any], "Path | None"], None]


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or inf; the run stops (a sweep records the trial as errored)."""


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def autocast(mixed_precision: str, device: torch.device) -> torch.autocast:
    """Autocast on ``device`` for ``TRAIN.mixed_precision`` (``bf16``, ``fp16``; ``no``:
    disabled)."""
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(mixed_precision)
    return torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)


def to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    return {
        k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()
    }


def make_run_dir(output_dir: str, run_name: str | None) -> Path:
    """``GENERAL.output_dir/GENERAL.run_name`` (no name: the local time, ``%Y%m%d-%H%M%S``),
    created."""
    name = run_name or time.strftime("%Y%m%d-%H%M%S")
    run_dir = Path(output_dir) / name
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


def dropout_at(cfg: DictConfig, step: int) -> float:
    g = cfg.GENERAL
    return get_progressive_dropout(
        step,
        g.dropout_warmup_step,
        cfg.MODEL.handec.dropout,
        g.dropout_schedule,
        g.dropout_ramp_step,
    )


def train_step(
    cfg: DictConfig,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    batch: dict[str, Any],
    device: torch.device,
) -> dict[str, torch.Tensor]:
    """One optimizer step on ``batch`` (forward under autocast, clipped backward); returns
    the losses (``compute_losses``)."""
    with autocast(cfg.TRAIN.mixed_precision, device):
        pred = model(batch["img"], batch["K"])
    losses = compute_losses(pred, batch, cfg.LOSS)
    optimizer.zero_grad(set_to_none=True)
    losses["total"].backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.TRAIN.grad_clip)
    optimizer.step()
    return losses


def window_means(window: LossWindow, step: int) -> dict[str, float]:
    """Mean losses of ``window`` over its steps and the ranks; a NaN/inf total raises."""
    avg = mean_over_ranks(window.take())
    if not math.isfinite(avg["total"]):
        raise NonFiniteLossError(f"non-finite loss at step {step}: {avg}")
    return avg


@dataclass(kw_only=True)
class RunState:
    """What one run carries from step to step (built in :func:`train`). On ranks other
    than 0 of a data-parallel run, ``run_dir``, ``val_stream`` and ``gap_stream`` are None
    and ``tracker`` records nothing."""

    cfg: DictConfig
    run_dir: Path | None
    device: torch.device
    model: PoseNet  # the module itself (validated, saved); DDP wraps it for training
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    train_stream: TrainStream
    val_stream: ValStream | None
    gap_stream: ValStream | None  # fixed train subset for gap_mpjpe (None: off)
    tracker: Tracker
    ema: WeightAverage | None = None  # rank 0, TRAIN.ema_decay > 0
    step: int = 0
    rank: int = 0
    world_size: int = 1

    @property
    def validated(self) -> PoseNet:
        """The weights validated and saved as ``model.pt``: the average if there is one."""
        return self.ema.module if self.ema is not None else self.model


def train(
    cfg: DictConfig,
    hook: ValidationHook | None = None,
    run_dir: Path | None = None,
    aim_extra: dict[str, Any] | None = None,
    log_hook: Callable[[dict[str, float]], None] = lambda row: None,
) -> dict[str, Any]:
    """Train one run; returns the last validation metrics (on every rank).

    Resumes exactly from ``GENERAL.resume_path`` (a checkpoint or run folder) if set.
    ``hook(metrics, checkpoint_dir)`` runs after each validation (:data:`ValidationHook`),
    ``log_hook(row)`` on every rank at each log step (``step``, ``samples_per_s``, the jsonl
    row); ``aim_extra`` goes on the Aim run. Data-parallel if ``torch.distributed`` is set up.

    ``cfg`` from :func:`handpose.config.load_config` is validated already; any other (made
    by hand) is validated here.
    """
    if not is_validated(cfg):
        validate(cfg)
    g = cfg.GENERAL
    rank, world_size = world()
    main = rank == 0
    device = pick_device(g.device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    seed_everything(g.seed)
    if int(os.environ.get("LOCAL_RANK", rank)) == 0:  # one process per node
        ensure_dataset(cfg)
    if main:
        run_dir = Path(run_dir) if run_dir is not None else make_run_dir(g.output_dir, g.run_name)
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.yaml").write_text(to_yaml(cfg))
    else:
        run_dir = None
    setup_logging(run_dir)
    if world_size > 1:
        dist.barrier()  # the data set exists

    model = build_model(cfg).to(device)
    if rank:
        torch.manual_seed(g.seed + rank)  # its own dropout masks (rank 0: as one process)
    optimizer = torch.optim.AdamW(
        param_groups(model, cfg.TRAIN.lr, cfg.TRAIN.backbone_lr),
        weight_decay=cfg.TRAIN.weight_decay,
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda s: get_lr_scale(s, g.total_step, cfg.TRAIN.warmup_step, cfg.TRAIN.min_lr_ratio),
    )
    train_stream = build_train_stream(cfg, rank, world_size)
    step, aim_hash, resume_step = 0, None, None
    ema = WeightAverage(model, cfg.TRAIN.ema_decay) if main and cfg.TRAIN.ema_decay else None
    if g.resume_path:
        ckpt = load_checkpoint(g.resume_path)
        state = ckpt["state"]
        model.load_state_dict(state.get("train_model", ckpt["model"]))
        if ema is not None:  # model.pt holds the average (or the weights, if it was off)
            ema.module.load_state_dict(ckpt["model"])
        saved_world = state.get("world_size", 1)
        if saved_world != world_size:
            raise UserError(
                f"GENERAL.resume_path={g.resume_path}: written by {saved_world} "
                f"processes, resumed by {world_size} (exact resume needs the same)"
            )
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        train_stream.load_state_dict(state["data"] if main else state["data_ranks"][rank])
        set_rng_state(state["rng"] if main else state["rng_ranks"][rank])
        step, aim_hash = state["step"], state.get("aim_hash")
        resume_step = step
        LOG.info(f"resumed from {ckpt['dir']} at step {step}")
    ddp = (
        DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)
        if world_size > 1
        else model
    )
    forward = torch.compile(ddp) if cfg.TRAIN.compile else ddp
    run = RunState(
        cfg=cfg,
        run_dir=run_dir,
        device=device,
        model=model,
        optimizer=optimizer,
        scheduler=scheduler,
        train_stream=train_stream,
        val_stream=build_val_stream(cfg) if main else None,
        gap_stream=train_eval_stream(cfg) if main else None,
        tracker=Tracker(cfg, run_dir, aim_hash, aim_extra, resume_step),
        ema=ema,
        step=step,
        rank=rank,
        world_size=world_size,
    )
    LOG.info(
        f"run folder {run_dir} | pid {os.getpid()} | device {device} | "
        f"{world_size} process(es) | "
        f"{sum(p.numel() for p in model.parameters()) / 1e6:.2f}M params"
    )

    aim_window, log_window = LossWindow(), LossWindow()  # every aim_log_step, log_step steps
    metrics, t0 = {}, time.time()
    try:
        while run.step < g.total_step:
            rate = dropout_at(cfg, run.step)
            model.set_dropout_rate(rate)
            model.train()
            batch = to_device(next(train_stream), device)
            losses = train_step(cfg, forward, optimizer, batch, device)
            scheduler.step()
            if ema is not None:
                ema.update()
            run.step += 1
            step, lr = run.step, scheduler.get_last_lr()[-1]
            aim_window.add(losses)
            log_window.add(losses)

            if step % g.aim_log_step == 0:
                avg = {**window_means(aim_window, step), "lr": lr, "dropout_rate": rate}
                run.tracker.track(step, "train", avg, to_jsonl=False)
            if step % g.log_step == 0:
                samples = log_window.count * cfg.TRAIN.sample_per_device * world_size
                avg = window_means(log_window, step)
                row = {**avg, "lr": lr, "dropout_rate": rate}
                run.tracker.track(step, "train", row, to_jsonl=True, to_aim=False)
                row["samples_per_s"] = samples / (time.time() - t0)
                LOG.info(format_train_line(step, g.total_step, lr, rate, avg, row["samples_per_s"]))
                log_hook({"step": step, **row})
                t0 = time.time()

            if step % val_step(cfg) == 0 or step == g.total_step:
                metrics = validate_and_checkpoint(run, rate, losses, hook)
    finally:
        run.tracker.close()
    return metrics


def validate_and_checkpoint(
    run: RunState, rate: float, losses: dict[str, torch.Tensor], hook: ValidationHook | None
) -> dict[str, Any]:
    """At ``run.step`` (dropout ``rate``, last train ``losses``): rank 0 validates, writes
    the metrics everywhere and saves a checkpoint (with every rank's data position and RNG
    state) while the other ranks wait; then the hook runs on every rank. Returns the
    metrics (the same on every rank)."""
    cfg, step = run.cfg, run.step
    data_ranks, rng_ranks = [run.train_stream.state_dict()], [None]
    if run.world_size > 1:
        data_ranks, rng_ranks = [None] * run.world_size, [None] * run.world_size
        dist.all_gather_object(data_ranks, run.train_stream.state_dict())
        dist.all_gather_object(rng_ranks, rng_state())
    train_losses = mean_over_ranks(losses)
    metrics, ckpt = {}, None
    if run.rank == 0:
        with autocast(cfg.TRAIN.mixed_precision, run.device):
            metrics = evaluate_stream(run.validated, run.val_stream, run.device, cfg.LOSS)
            if run.gap_stream is not None:
                train_eval = evaluate_stream(run.validated, run.gap_stream, run.device, cfg.LOSS)
                metrics["train_mpjpe"] = train_eval["mpjpe"]
                metrics["gap_mpjpe"] = metrics["mpjpe"] - train_eval["mpjpe"]
        run.tracker.track(step, "val", metrics, to_jsonl=False)  # Aim: the measured values
        metrics.update(
            step=step,
            dropout_rate=rate,
            bad_samples=run.train_stream.bad_samples,
            **{f"train_{k}": v for k, v in train_losses.items()},
        )
        run.tracker.track(step, "val", metrics, to_jsonl=True, to_aim=False)
        if run.tracker.aim_hash is not None:  # for the hook (a sweep reports it), not the sinks
            metrics["aim_hash"] = run.tracker.aim_hash
        LOG.info(
            f"val {step}/{cfg.GENERAL.total_step} mpjpe={metrics['mpjpe']:.2f}mm "
            f"mpjpe_rel={metrics['mpjpe_rel']:.2f}mm pa_mpjpe={metrics['pa_mpjpe']:.2f}mm"
            f" rte={metrics['rte']:.2f}mm n={metrics['num_samples']} "
            f"fingerprint={metrics['val_fingerprint']}"
        )
        state = {
            "optimizer": run.optimizer.state_dict(),
            "scheduler": run.scheduler.state_dict(),
            "data": data_ranks[0],
            "aim_hash": run.tracker.aim_hash,
            "world_size": run.world_size,
        }
        if run.world_size > 1:
            state.update(data_ranks=data_ranks, rng_ranks=rng_ranks)
        if run.ema is not None:
            state["train_model"] = run.model.state_dict()
        ckpt = save_checkpoint(
            run.run_dir / "checkpoints",
            step,
            cfg,
            run.validated,
            state,
            cfg.GENERAL.keep_checkpoints,
        )
    if run.world_size > 1:
        shared = [metrics]
        dist.broadcast_object_list(shared, src=0)  # the other ranks wait here
        metrics = shared[0]
    if hook is not None:
        hook(metrics, ckpt)
    return metrics


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--config-name",
        "--config",
        required=True,
        help="config name in configs/ or a YAML path (e.g. best_config.yaml)",
    )
    parser.add_argument("overrides", nargs="*", help="KEY=VALUE overrides, e.g. TRAIN.lr=1e-4")
    args = parser.parse_args(argv)
    cfg = load_config(args.config_name, args.overrides)
    joined = init_distributed(cfg.GENERAL.device)
    try:
        metrics = train(cfg)
    finally:
        if joined:
            # free the DDP model (hooks make reference cycles) while the group still exists:
            # gloo's threads must not be torn down at interpreter exit (a rank can abort
            # there: "terminate called without an active exception")
            gc.collect()
            dist.destroy_process_group()
    LOG.info(f"done: mpjpe={metrics.get('mpjpe', float('nan')):.2f}mm")
    return 0


if __name__ == "__main__":
    run_cli(main)
