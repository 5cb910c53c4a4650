"""One training run: ``python -m handpose.train --config-name NAME_OR_PATH [KEY=VALUE ...]``.

``train(cfg, hook)`` is the library entry point; the CLI and the Ray Tune trainable are its
two thin callers. Read it top to bottom: setup, (resume), loop, validate + checkpoint.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig

from handpose.checkpoint import load_checkpoint, save_checkpoint, set_rng_state
from handpose.config import load_config, to_yaml, val_step, validate
from handpose.data import (
    TrainStream,
    ValStream,
    build_train_stream,
    build_val_stream,
    ensure_dataset,
)
from handpose.errors import run_cli
from handpose.evaluate import evaluate_stream, train_eval_stream
from handpose.losses import compute_losses
from handpose.model import PoseNet, build_model, param_groups
from handpose.schedules import get_lr_scale, get_progressive_dropout
from handpose.tracking import LOG, Tracker, format_train_line, setup_logging

# hook(metrics, checkpoint_dir): called after every validation
ValidationHook = Callable[[dict[str, Any], Path], None]


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or inf; the run stops (a sweep records the trial as errored)."""


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def autocast(cfg: DictConfig, device: torch.device):
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(cfg.TRAIN.mixed_precision)
    return torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)


def to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v
            for k, v in batch.items()}


def make_run_dir(cfg: DictConfig) -> Path:
    name = cfg.GENERAL.run_name or time.strftime("%Y%m%d-%H%M%S")
    run_dir = Path(cfg.GENERAL.output_dir) / name
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


def dropout_at(cfg: DictConfig, step: int) -> float:
    g = cfg.GENERAL
    return get_progressive_dropout(step, g.total_step, g.dropout_warmup_step,
                                   cfg.MODEL.handec.dropout, g.dropout_schedule,
                                   g.dropout_ramp_step)


def train_step(cfg: DictConfig, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
               batch: dict[str, Any], device: torch.device) -> dict[str, torch.Tensor]:
    """One optimizer step on ``batch`` (forward under autocast, clipped backward); returns
    the losses (``compute_losses``)."""
    with autocast(cfg, device):
        pred = model(batch["img"], batch["K"])
    losses = compute_losses(pred, batch, cfg.LOSS)
    optimizer.zero_grad(set_to_none=True)
    losses["total"].backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.TRAIN.grad_clip)
    optimizer.step()
    return losses


@dataclass
class RunState:
    """What one run carries from step to step (built in :func:`train`)."""

    cfg: DictConfig
    run_dir: Path
    device: torch.device
    model: PoseNet
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    train_stream: TrainStream
    val_stream: ValStream
    gap_stream: ValStream | None  # fixed train subset for gap_mpjpe (None: off)
    tracker: Tracker
    step: int = 0


def train(cfg: DictConfig, hook: ValidationHook | None = None, run_dir: Path | None = None,
          aim_extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Train one run; returns the last validation metrics.

    Resumes exactly from ``GENERAL.resume_path`` (a checkpoint or run folder) if set.
    ``hook(metrics, checkpoint_dir)`` is called after every validation; ``aim_extra`` is
    stored on the Aim run (e.g. the sweep's searched values).
    """
    validate(cfg)
    g = cfg.GENERAL
    device = pick_device(g.device)
    seed_everything(g.seed)
    ensure_dataset(cfg)
    run_dir = Path(run_dir) if run_dir is not None else make_run_dir(cfg)
    run_dir.mkdir(parents=True, exist_ok=True)
    setup_logging(run_dir)
    (run_dir / "config.yaml").write_text(to_yaml(cfg))

    model = build_model(cfg).to(device)
    optimizer = torch.optim.AdamW(param_groups(model, cfg), weight_decay=cfg.TRAIN.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: get_lr_scale(
        s, g.total_step, cfg.TRAIN.warmup_step, cfg.TRAIN.min_lr_ratio))
    train_stream = build_train_stream(cfg)
    step, aim_hash, resume_step = 0, None, None
    if g.resume_path:
        ckpt = load_checkpoint(g.resume_path)
        model.load_state_dict(ckpt["model"])
        state = ckpt["state"]
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        train_stream.load_state_dict(state["data"])
        set_rng_state(state["rng"])
        step, aim_hash = state["step"], state.get("aim_hash")
        resume_step = step
        LOG.info(f"resumed from {ckpt['dir']} at step {step}")
    forward = torch.compile(model) if cfg.TRAIN.compile else model
    run = RunState(cfg, run_dir, device, model, optimizer, scheduler, train_stream,
                   build_val_stream(cfg), train_eval_stream(cfg),
                   Tracker(cfg, run_dir, aim_hash, aim_extra, resume_step), step)
    LOG.info(f"run folder {run_dir} | pid {os.getpid()} | device {device} | "
             f"{sum(p.numel() for p in model.parameters()) / 1e6:.2f}M params")

    sums: dict[str, torch.Tensor] = defaultdict(lambda: torch.zeros((), device=device))
    count, metrics, t0 = 0, {}, time.time()
    try:
        while run.step < g.total_step:
            rate = dropout_at(cfg, run.step)
            model.set_dropout_rate(rate)
            model.train()
            batch = to_device(next(train_stream), device)
            losses = train_step(cfg, forward, optimizer, batch, device)
            scheduler.step()
            run.step += 1
            step = run.step
            for k, v in losses.items():
                sums[k] += v.detach().float()
            count += 1

            if step % g.aim_log_step == 0 or step % g.log_step == 0:
                avg = {k: (v / count).item() for k, v in sums.items()}
                if not math.isfinite(avg["total"]):
                    raise NonFiniteLossError(f"non-finite loss at step {step}: {avg}")
                lr = scheduler.get_last_lr()[-1]
                run.tracker.track(step, "train", {**avg, "lr": lr, "dropout_rate": rate},
                                  to_jsonl=step % g.log_step == 0)
                if step % g.log_step == 0:
                    LOG.info(format_train_line(step, g.total_step, lr, rate, avg) +
                             f" {count * cfg.TRAIN.sample_per_device / (time.time() - t0):.1f}"
                             " samples/s")
                    sums.clear()
                    count, t0 = 0, time.time()

            if step % val_step(cfg) == 0 or step == g.total_step:
                metrics = validate_and_checkpoint(run, rate, losses, hook)
    finally:
        run.tracker.close()
    return metrics


def validate_and_checkpoint(run: RunState, rate: float, losses: dict[str, torch.Tensor],
                            hook: ValidationHook | None) -> dict[str, Any]:
    """Validate at ``run.step`` (dropout ``rate``, last train ``losses``), write the metrics
    everywhere, save a checkpoint, call the hook. Returns the metrics."""
    cfg, step = run.cfg, run.step
    with autocast(cfg, run.device):
        metrics = evaluate_stream(run.model, run.val_stream, run.device, cfg.LOSS)
        if run.gap_stream is not None:
            train_eval = evaluate_stream(run.model, run.gap_stream, run.device, cfg.LOSS)
            metrics["train_mpjpe"] = train_eval["mpjpe"]
            metrics["gap_mpjpe"] = metrics["mpjpe"] - train_eval["mpjpe"]
    metrics.update(step=step, dropout_rate=rate, bad_samples=run.train_stream.bad_samples,
                   **{f"train_{k}": v.item() for k, v in losses.items()})
    run.tracker.track(step, "val", metrics, to_jsonl=True)
    LOG.info(f"val {step}/{cfg.GENERAL.total_step} mpjpe={metrics['mpjpe']:.2f}mm "
             f"mpjpe_rel={metrics['mpjpe_rel']:.2f}mm pa_mpjpe={metrics['pa_mpjpe']:.2f}mm "
             f"rte={metrics['rte']:.2f}mm n={metrics['num_samples']} "
             f"fingerprint={metrics['val_fingerprint']}")
    state = {"optimizer": run.optimizer.state_dict(), "scheduler": run.scheduler.state_dict(),
             "data": run.train_stream.state_dict(), "aim_hash": run.tracker.aim_hash}
    ckpt = save_checkpoint(run.run_dir / "checkpoints", step, cfg, run.model, state,
                           cfg.GENERAL.keep_checkpoints)
    if hook is not None:
        hook(metrics, ckpt)
    return metrics


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config-name", "--config", required=True,
                        help="config name in configs/ or a YAML path (e.g. best_config.yaml)")
    parser.add_argument("overrides", nargs="*", help="KEY=VALUE overrides, e.g. TRAIN.lr=1e-4")
    args = parser.parse_args(argv)
    cfg = load_config(args.config_name, args.overrides)
    metrics = train(cfg)
    LOG.info(f"done: mpjpe={metrics.get('mpjpe', float('nan')):.2f}mm")
    return 0


if __name__ == "__main__":
    run_cli(main)
