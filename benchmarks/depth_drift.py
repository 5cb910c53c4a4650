"""Depth drift: how much of the tiny recipe's validation MPJPE, step by step, is one global
root-depth offset that moves between validations.

    python -m benchmarks.depth_drift [--seeds N] [--val-every V] [--steps S] [--toy]
                                     [--out JSON] [--data DIR] [KEY=VALUE ...]

Trains the tiny recipe (``configs/stage1-tiny.yaml`` + KEY=VALUE) once per seed in this
process, validating and keeping a checkpoint every ``--val-every`` steps, then reads every
checkpoint back on the validation stream and splits its error: MPJPE, root-relative MPJPE
and RTE (mm, as the sweep reports them), the mean *signed* root-depth error
``depth_bias_mm`` (prediction minus truth along the camera's z: negative = too near), the
root's image-plane error ``root_xy_mm``, and ``hand_size_ratio``, the predicted hand's mean
joint distance from the wrist over the truth's (the scale that depth trades against).
``mpjpe_validated`` is what training itself logged at that step: the two MPJPEs agree.
"""

from __future__ import annotations

import itertools
import statistics
import tempfile
from pathlib import Path
from typing import Any

import torch

import handpose.train
from benchmarks.common import (
    TOY_OVERRIDES,
    base_parser,
    format_table,
    machine_info,
    synthetic_overrides,
    write_results,
)
from handpose.config import load_config
from handpose.data import build_val_stream
from handpose.errors import UserError, run_cli
from handpose.evaluate import model_from_checkpoint
from handpose.metrics import mpjpe, mpjpe_rel, rte
from handpose.tracking import load_metrics

NAME = "depth_drift"


@torch.no_grad()
def depth_errors(ckpt_dir: Path) -> dict[str, float]:
    """The validation error of one checkpoint, split as the module docstring says (mm)."""
    model, cfg, _ = model_from_checkpoint(ckpt_dir)
    model.eval()
    sums: dict[str, float] = {}
    n = 0
    for batch in build_val_stream(cfg):
        pred = model(batch["img"], batch["K"])
        gt, joints, valid = batch["joints_cam"], pred["joints_cam"], batch["joint_valid"]
        root_err = pred["trans"] - gt[:, 0]
        size = (joints - joints[:, :1]).norm(dim=-1).mean(-1) / (gt - gt[:, :1]).norm(dim=-1).mean(
            -1
        )
        values = {
            "mpjpe": mpjpe(joints, gt, valid).sum(),
            "mpjpe_rel": mpjpe_rel(joints, gt, valid).sum(),
            "rte": rte(joints, gt, valid).sum(),
            "depth_bias_mm": root_err[:, 2].sum(),
            "root_xy_mm": root_err[:, :2].norm(dim=-1).sum(),
            "hand_size_ratio": size.sum(),
        }
        for k, v in values.items():
            sums[k] = sums.get(k, 0.0) + float(v)
        n += gt.shape[0]
    return {k: v / n for k, v in sums.items()}


def seed_summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """One seed's curve: the largest rise of MPJPE between validations, what the depth bias
    did over it, and how MPJPE follows |depth bias| over all validations (Pearson r)."""
    rises = [(b["mpjpe"] - a["mpjpe"], a, b) for a, b in itertools.pairwise(rows)]
    rise, a, b = max(rises, key=lambda r: r[0])
    mp = [r["mpjpe"] for r in rows]
    bias = [abs(r["depth_bias_mm"]) for r in rows]
    return {
        "largest_rise_mm": rise,
        "rise_at_step": b["step"],
        "depth_bias_before_after_mm": [a["depth_bias_mm"], b["depth_bias_mm"]],
        "mpjpe_rel_before_after_mm": [a["mpjpe_rel"], b["mpjpe_rel"]],
        "pearson_mpjpe_abs_depth_bias": statistics.correlation(mp, bias),
    }


def main(argv: list[str] | None = None) -> int:
    p = base_parser(NAME, __doc__)
    p.add_argument("--seeds", type=int, default=3, help="training seeds 0, 1, ...")
    p.add_argument("--val-every", type=int, default=25, help="steps between validations")
    p.add_argument("--steps", type=int, default=None, help="budget (default: the recipe's)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (a trial's CPUs)")
    p.add_argument("overrides", nargs="*", help="KEY=VALUE overrides of the tiny recipe")
    args = p.parse_args(argv)
    extra = list(args.overrides)
    if args.toy:
        args.seeds, args.val_every, args.steps = 1, 4, 12
        extra = [*TOY_OVERRIDES, "GENERAL.log_step=4", *extra]
    if min(args.seeds, args.val_every, args.threads) < 1:
        raise UserError("--seeds, --val-every and --threads must be >= 1")
    machine = machine_info()
    torch.set_num_threads(args.threads)
    runs: dict[int, list[dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-depth-") as tmp_name:
        tmp = Path(tmp_name)
        data = synthetic_overrides(args.data, tmp, *((64, 32) if args.toy else (2000, 256)))
        for seed in range(args.seeds):
            steps = [f"GENERAL.total_step={args.steps}"] if args.steps else []
            cfg = load_config(
                "stage1-tiny",
                [
                    *data,
                    *extra,
                    *steps,
                    f"GENERAL.seed={seed}",
                    f"GENERAL.checkpoint_step={args.val_every}",
                    "GENERAL.keep_checkpoints=1000",
                    f"GENERAL.output_dir={tmp}",
                    f"GENERAL.run_name=seed{seed}",
                    "AIM.enabled=false",
                ],
            )
            handpose.train.train(cfg)
            run_dir = tmp / f"seed{seed}"
            logged = {r["step"]: r["mpjpe"] for r in load_metrics(run_dir)[1]}
            runs[seed] = []
            for ckpt in sorted((run_dir / "checkpoints").glob("checkpoint-*")):
                step = int(ckpt.name.rsplit("-", 1)[-1])
                runs[seed].append(
                    {"step": step, "mpjpe_validated": logged.get(step), **depth_errors(ckpt)}
                )
    cols = ["mpjpe", "mpjpe_rel", "rte", "depth_bias_mm", "root_xy_mm", "hand_size_ratio"]
    for seed, rows in runs.items():
        print(f"\nseed {seed}")
        print(format_table(["step", *cols], [[r["step"], *(r[c] for c in cols)] for r in rows]))
    summary = {seed: seed_summary(rows) for seed, rows in runs.items() if len(rows) > 2}
    for seed, s in summary.items():
        before, after = s["depth_bias_before_after_mm"]
        print(
            f"seed {seed}: MPJPE rises most at step {s['rise_at_step']} ("
            f"{s['largest_rise_mm']:+.1f} mm) while the depth bias goes {before:+.1f} -> "
            f"{after:+.1f} mm; Pearson r(MPJPE, |depth bias|) = "
            f"{s['pearson_mpjpe_abs_depth_bias']:.2f}"
        )
    write_results(
        args.out,
        NAME,
        args,
        machine,
        {"setup": {"overrides": extra}, "runs": runs, "summary": summary},
    )
    return 0


if __name__ == "__main__":
    run_cli(main)
