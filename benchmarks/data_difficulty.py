"""Data difficulty: is the synthetic task learnable, and hard enough that dropout and loss
weights matter? The three targets of the data issue, measured on the tiny recipe.

    python benchmarks/data_difficulty.py [--parallel P] [--steps S] [--toy] [--out JSON]
                                         [--data DIR] [KEY=VALUE ...]

Trains ``configs/stage1-tiny.yaml`` to its full budget under each of ``SETTINGS`` (one
``python -m handpose.train`` process each, ``--parallel`` at a time, the cores split between
them) and reads each run's last validation from its ``metrics.jsonl``. Reports:

1. learnable: the recipe's val MPJPE over the mean-pose baseline (the mean ``joints_cam`` of
   a fixed train subset, predicted for every validation sample). Target: at most 0.5.
2. overfits: with dropout 0, val MPJPE over the same model's MPJPE on a fixed train subset
   (``train_mpjpe``, ``DATA.train_eval_samples``). Target: at least 1.15.
3. settings matter: (worst - best) / best final val MPJPE over the settings (dropout warmup,
   target dropout, ``lambda_trans``). Target: at least 0.10.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # `python benchmarks/data_difficulty.py` without an install
    sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from benchmarks.common import (  # noqa: E402
    TOY_OVERRIDES,
    base_parser,
    format_table,
    machine_info,
    ratio,
    run_checked,
    synthetic_overrides,
    write_results,
)
from handpose.config import load_config  # noqa: E402
from handpose.data import build_val_stream, ensure_dataset  # noqa: E402
from handpose.errors import run_cli  # noqa: E402
from handpose.evaluate import METRICS, train_eval_stream  # noqa: E402

NAME = "data_difficulty"
# name -> overrides; "dropout_warmup" values are fractions of the budget
SETTINGS: dict[str, dict[str, Any]] = {
    "recipe": {},
    "no_dropout": {"MODEL.handec.dropout": 0.0},
    "dropout0.3_from_start": {"MODEL.handec.dropout": 0.3, "dropout_warmup": 0.0},
    "dropout0.3_warmup0.5": {"MODEL.handec.dropout": 0.3, "dropout_warmup": 0.5},
    "lambda_trans0.005": {"LOSS.lambda_trans": 0.005},
    "lambda_trans0.5": {"LOSS.lambda_trans": 0.5},
}
TARGET_BASELINE_RATIO = 0.5
TARGET_GAP_RATIO = 1.15
TARGET_SPREAD = 0.10


def mean_pose_baseline(overrides: list[str], train_samples: int) -> dict[str, float]:
    """MPJPE (mm) on the validation set of predicting the mean ``joints_cam`` of the fixed
    train subset (``train_eval_stream`` with ``train_samples`` samples)."""
    cfg = load_config("stage1-tiny", overrides)
    ensure_dataset(cfg)
    cfg.DATA.train_eval_samples = train_samples
    mean = torch.cat([b["joints_cam"].float() for b in train_eval_stream(cfg)]).mean(0)
    names = ("mpjpe", "mpjpe_rel", "pa_mpjpe")
    errs: dict[str, list[torch.Tensor]] = {name: [] for name in names}
    for b in build_val_stream(cfg):
        gt, valid = b["joints_cam"].float(), b["joint_valid"].float()
        for name in names:
            errs[name].append(METRICS[name](mean.expand_as(gt), gt, valid))
    return {k: torch.cat(v).mean().item() for k, v in errs.items()}


def train_run(name: str, overrides: list[str], out_dir: Path, threads: int) -> dict[str, Any]:
    """``python -m handpose.train`` with ``overrides``; -> its last validation + wall time."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    wall = run_checked([sys.executable, "-m", "handpose.train", "--config-name", "stage1-tiny",
                        *overrides, f"GENERAL.output_dir={out_dir}", f"GENERAL.run_name={name}",
                        "AIM.enabled=false"], env=env)
    lines = (out_dir / name / "metrics.jsonl").read_text().splitlines()
    val = [r for r in map(json.loads, lines) if "val_fingerprint" in r][-1]
    return {"name": name, "wall_s": wall, **{k: val[k] for k in (
        "step", "mpjpe", "mpjpe_rel", "pa_mpjpe", "rte", "train_mpjpe", "val_fingerprint")}}


def setting_overrides(setting: dict[str, Any], steps: int) -> list[str]:
    out = [f"GENERAL.total_step={steps}"]
    for key, value in setting.items():
        if key == "dropout_warmup":
            out.append(f"GENERAL.dropout_warmup_step={round(value * steps)}")
        else:
            out.append(f"{key}={value}")
    return out


def main(argv: list[str] | None = None) -> int:
    p = base_parser(NAME, __doc__)
    p.add_argument("--steps", type=int, default=None,
                   help="training budget (default: the recipe's GENERAL.total_step)")
    p.add_argument("--parallel", type=int, default=2, help="runs at a time")
    p.add_argument("--baseline-samples", type=int, default=2000,
                   help="train samples (at most) whose mean pose is the baseline")
    p.add_argument("overrides", nargs="*", help="KEY=VALUE for every run")
    args = p.parse_args(argv)
    machine = machine_info()
    settings = dict(list(SETTINGS.items())[:2]) if args.toy else SETTINGS
    recipe = load_config("stage1-tiny")
    steps = 4 if args.toy else args.steps or recipe.GENERAL.total_step
    threads = max(1, (os.cpu_count() or 1) // args.parallel)
    with tempfile.TemporaryDirectory(prefix="bench-difficulty-") as tmp:
        syn = recipe.DATA.synthetic  # without --data: a set of the default size
        common = [*synthetic_overrides(args.data, Path(tmp), syn.train, syn.val),
                  *args.overrides]
        if args.toy:
            common += [*TOY_OVERRIDES, "GENERAL.checkpoint_step=2", "GENERAL.log_step=2"]
        baseline = mean_pose_baseline(common, 32 if args.toy else args.baseline_samples)
        print(f"mean-pose baseline: mpjpe={baseline['mpjpe']:.2f} mm", flush=True)
        with ThreadPoolExecutor(args.parallel) as pool:
            runs = list(pool.map(lambda kv: train_run(
                kv[0], common + setting_overrides(kv[1], steps), Path(tmp) / "runs", threads),
                settings.items()))
    by_name = {r["name"]: r for r in runs}
    finals = [r["mpjpe"] for r in runs]
    results = {
        "baseline": baseline,
        "runs": runs,
        "baseline_ratio": ratio(by_name["recipe"]["mpjpe"], baseline["mpjpe"]),
        "gap_ratio": ratio(by_name["no_dropout"]["mpjpe"], by_name["no_dropout"]["train_mpjpe"]),
        "spread": (max(finals) - min(finals)) / min(finals),
    }
    targets = [
        ("recipe val / mean-pose baseline", results["baseline_ratio"],
         f"<= {TARGET_BASELINE_RATIO}", results["baseline_ratio"] <= TARGET_BASELINE_RATIO),
        ("val / train MPJPE, dropout 0", results["gap_ratio"], f">= {TARGET_GAP_RATIO}",
         results["gap_ratio"] >= TARGET_GAP_RATIO),
        ("(worst - best) / best over settings", results["spread"], f">= {TARGET_SPREAD}",
         results["spread"] >= TARGET_SPREAD),
    ]
    results["targets_met"] = {name: bool(met) for name, _, _, met in targets}
    print(format_table(["setting", "val mpjpe", "mpjpe_rel", "pa_mpjpe", "rte", "train mpjpe",
                        "wall s"],
                       [[r["name"], r["mpjpe"], r["mpjpe_rel"], r["pa_mpjpe"], r["rte"],
                         r["train_mpjpe"], r["wall_s"]] for r in runs]))
    print()
    print(format_table(["target", "measured", "wanted", "met"],
                       [[n, v, w, "yes" if met else "NO"] for n, v, w, met in targets]))
    write_results(args.out, NAME, args, machine, results)
    return 0


if __name__ == "__main__":
    run_cli(main)
