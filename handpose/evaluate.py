"""Validation: ``python -m handpose.evaluate --checkpoint DIR [KEY=VALUE ...]``.

The last stdout line is one JSON object with ``mpjpe``, ``mpjpe_rel``, ``pa_mpjpe``, ``rte``
(mm), ``num_samples`` and ``val_fingerprint``.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from handpose.checkpoint import load_checkpoint
from handpose.config import load_config
from handpose.data import DecodeCfg, Subset, ValStream, build_val_stream, ensure_dataset
from handpose.errors import run_cli
from handpose.losses import compute_losses
from handpose.metrics import mpjpe, mpjpe_rel, pa_mpjpe, rte
from handpose.model import build_model

METRICS = {"mpjpe": mpjpe, "mpjpe_rel": mpjpe_rel, "pa_mpjpe": pa_mpjpe, "rte": rte}


@torch.no_grad()
def evaluate_stream(
    model: torch.nn.Module,
    stream: Iterable[dict[str, Any]],
    device: torch.device,
    loss_cfg: DictConfig,
) -> dict[str, Any]:
    """Mean metrics (mm) and validation losses over one full pass of ``stream``.

    ``stream`` is a validation stream: after the pass it exposes ``fingerprint`` and
    ``num_samples``. The model is put in eval mode and restored afterwards.
    """
    was_training = model.training
    model.eval()
    sums: dict[str, torch.Tensor] = {}
    n = 0
    for batch in stream:
        batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}
        pred = model(batch["img"], batch["K"])
        gt, pj, valid = batch["joints_cam"], pred["joints_cam"].float(), batch["joint_valid"]
        values = {name: fn(pj, gt, valid).sum() for name, fn in METRICS.items()}
        bsz = gt.shape[0]
        losses = compute_losses(pred, batch, loss_cfg)
        values.update({f"val_{k}": v.detach().float() * bsz for k, v in losses.items()})
        for k, v in values.items():
            sums[k] = sums.get(k, 0) + v
        n += bsz
    model.train(was_training)
    out: dict[str, Any] = {k: (v / max(n, 1)).item() for k, v in sums.items()}
    out.update(num_samples=n, val_fingerprint=stream.fingerprint)
    return out


def train_eval_stream(cfg: DictConfig) -> ValStream | None:
    """``DATA.train_eval_samples`` train samples (a fixed subset chosen with
    ``GENERAL.val_seed``) read like validation, for the generalisation gap; None when 0."""
    d = cfg.DATA
    if d.train_eval_samples <= 0:
        return None
    return ValStream(
        d.train.source,
        Subset(d.train_eval_samples, cfg.GENERAL.val_seed),
        d.val_batch_size,
        DecodeCfg.from_config(cfg),
        d.max_bad_fraction,
        what="DATA.train.source",
    )


def model_from_checkpoint(
    path: str | Path, overrides: Sequence[str] = ()
) -> tuple[torch.nn.Module, DictConfig, Path]:
    """The model of a checkpoint (or run folder's newest) on the CPU, with its saved config
    plus ``overrides``, and the checkpoint folder. The weights come from the checkpoint
    itself, not from the backbone's file."""
    ckpt = load_checkpoint(path, with_state=False)
    cfg = load_config(
        ckpt["config"], overrides, {"MODEL.backbone.checkpoint": None}, origin=str(path)
    )
    torch.manual_seed(cfg.GENERAL.seed)
    model = build_model(cfg)
    model.load_state_dict(ckpt["model"])
    return model, cfg, ckpt["dir"]


def evaluate_checkpoint(path: str | Path, overrides: Sequence[str] = ()) -> dict[str, Any]:
    model, cfg, ckpt_dir = model_from_checkpoint(path, overrides)
    ensure_dataset(cfg)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    out = evaluate_stream(model.to(device), build_val_stream(cfg), device, cfg.LOSS)
    return {"checkpoint": str(ckpt_dir), "step": _step_of(ckpt_dir), **out}


def _step_of(ckpt_dir: Path) -> int | None:
    digits = ckpt_dir.name.rsplit("-", 1)[-1]
    return int(digits) if digits.isdigit() else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True, help="checkpoint or run folder")
    parser.add_argument("overrides", nargs="*", help="KEY=VALUE, e.g. DATA.val.max_samples=100")
    args = parser.parse_args(argv)
    result = evaluate_checkpoint(args.checkpoint, args.overrides)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    run_cli(main)
