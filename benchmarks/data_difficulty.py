"""Data difficulty: does the tiny recipe learn the hand (fingers included) from its
pretrained backbone, and is the task hard enough that dropout and loss weights matter? The
targets of issue 17, measured on the tiny recipe at its full budget, several seeds each.

    python benchmarks/data_difficulty.py [--parallel P] [--seeds N] [--steps S] [--toy]
                                         [--settings NAME ...] [--out JSON] [--data DIR]
                                         [KEY=VALUE ...]

Trains ``configs/stage1-tiny.yaml`` under each of ``SETTINGS`` with ``GENERAL.seed`` 0..N-1
(one ``python -m handpose.train`` process each, ``--parallel`` at a time, the cores split
between them: 1 thread each on 2 cores) and reads each run's last validation from its
``metrics.jsonl``. Means and sample std over seeds; reports:

1. fingers: the recipe's val PA-MPJPE over the mean pose's. Target: at most 0.6.
2. overall: the recipe's val MPJPE over the mean-pose baseline (the mean ``joints_cam`` of a
   fixed train subset, predicted for every validation sample). Target: at most 0.5.
3. overfits: with dropout 0, val MPJPE over the same model's MPJPE on a fixed train subset
   (``train_mpjpe``, ``DATA.train_eval_samples``). Target: at least 1.15.
4. knobs matter: for each of ``KNOBS`` (target dropout, warmup step, ``lambda_trans``), the
   range of the settings' mean final val MPJPE over the pooled seed-to-seed std. Target:
   more than 3.
5. time: the recipe's wall seconds per run at 1 thread (``--parallel`` = cores). Target:
   at most 180.
"""

from __future__ import annotations

import json
import os
import statistics
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
    "dropout0.3": {"MODEL.handec.dropout": 0.3},
    "dropout0.3_from_start": {"MODEL.handec.dropout": 0.3, "dropout_warmup": 0.0},
    "dropout0.3_warmup0.5": {"MODEL.handec.dropout": 0.3, "dropout_warmup": 0.5},
    "lambda_trans0.005": {"LOSS.lambda_trans": 0.005},
    "lambda_trans0.5": {"LOSS.lambda_trans": 0.5},
}
# searched knob -> the settings that vary it (the others at the recipe's values)
KNOBS: dict[str, tuple[str, ...]] = {
    "target dropout": ("no_dropout", "recipe", "dropout0.3"),
    "warmup step": ("dropout0.3_from_start", "dropout0.3", "dropout0.3_warmup0.5"),
    "lambda_trans": ("lambda_trans0.005", "recipe", "lambda_trans0.5"),
}
TARGET_PA_RATIO = 0.6
TARGET_BASELINE_RATIO = 0.5
TARGET_GAP_RATIO = 1.15
TARGET_KNOB_EFFECT = 3.0
TARGET_TRIAL_S = 180.0
STATS = ("mpjpe", "mpjpe_rel", "pa_mpjpe", "rte", "train_mpjpe", "wall_s")


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
    wall = run_checked(
        [
            sys.executable,
            "-m",
            "handpose.train",
            "--config-name",
            "stage1-tiny",
            *overrides,
            f"GENERAL.output_dir={out_dir}",
            f"GENERAL.run_name={name}",
            "AIM.enabled=false",
        ],
        env=env,
    )
    lines = (out_dir / name / "metrics.jsonl").read_text().splitlines()
    val = [r for r in map(json.loads, lines) if "val_fingerprint" in r][-1]
    return {
        "name": name,
        "wall_s": wall,
        **{
            k: val[k]
            for k in (
                "step",
                "mpjpe",
                "mpjpe_rel",
                "pa_mpjpe",
                "rte",
                "train_mpjpe",
                "val_fingerprint",
            )
        },
    }


def setting_overrides(setting: dict[str, Any], steps: int, seed: int) -> list[str]:
    out = [f"GENERAL.total_step={steps}", f"GENERAL.seed={seed}"]
    for key, value in setting.items():
        if key == "dropout_warmup":
            out.append(f"GENERAL.dropout_warmup_step={round(value * steps)}")
        else:
            out.append(f"{key}={value}")
    return out


def summarise(runs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """setting -> mean and sample std (0 for one seed) of ``STATS`` over its seeds."""
    out: dict[str, dict[str, Any]] = {}
    for name in dict.fromkeys(r["setting"] for r in runs):
        mine = [r for r in runs if r["setting"] == name]
        out[name] = {"seeds": [r["seed"] for r in mine]}
        for k in STATS:
            xs = [r[k] for r in mine]
            out[name][k] = statistics.fmean(xs)
            out[name][f"{k}_std"] = statistics.stdev(xs) if len(xs) > 1 else 0.0
    return out


def knob_effects(summary: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """knob -> range of its settings' mean val MPJPE, the pooled seed std, their ratio."""
    out = {}
    for knob, names in KNOBS.items():
        have = [summary[n] for n in names if n in summary]
        if len(have) < 2:
            continue
        means = [s["mpjpe"] for s in have]
        pooled = statistics.fmean([s["mpjpe_std"] ** 2 for s in have]) ** 0.5
        spread = max(means) - min(means)
        out[knob] = {
            "settings": [n for n in names if n in summary],
            "means": means,
            "range": spread,
            "pooled_std": pooled,
            "ratio": spread / pooled if pooled > 0 else None,
        }
    return out


def main(argv: list[str] | None = None) -> int:
    p = base_parser(NAME, __doc__)
    p.add_argument(
        "--steps",
        type=int,
        default=None,
        help="training budget (default: the recipe's GENERAL.total_step)",
    )
    p.add_argument("--parallel", type=int, default=2, help="runs at a time")
    p.add_argument("--seeds", type=int, default=3, help="training seeds per setting")
    p.add_argument(
        "--settings",
        nargs="+",
        choices=list(SETTINGS),
        default=list(SETTINGS),
        help="settings to run (recipe and no_dropout are always run)",
    )
    p.add_argument(
        "--baseline-samples",
        type=int,
        default=2000,
        help="train samples (at most) whose mean pose is the baseline",
    )
    p.add_argument("overrides", nargs="*", help="KEY=VALUE for every run")
    args = p.parse_args(argv)
    machine = machine_info()
    names = list(dict.fromkeys(["recipe", "no_dropout", *args.settings]))
    settings = {n: SETTINGS[n] for n in (names[:2] if args.toy else names)}
    seeds = list(range(1 if args.toy else args.seeds))
    recipe = load_config("stage1-tiny")
    steps = 4 if args.toy else args.steps or recipe.GENERAL.total_step
    threads = max(1, (os.cpu_count() or 1) // args.parallel)
    jobs = [(n, s) for s in seeds for n in settings]
    progress = args.out.with_suffix(".runs.jsonl")
    progress.parent.mkdir(parents=True, exist_ok=True)
    progress.write_text("")
    with tempfile.TemporaryDirectory(prefix="bench-difficulty-") as tmp:
        syn = recipe.DATA.synthetic  # without --data: a set of the default size
        common = [*synthetic_overrides(args.data, Path(tmp), syn.train, syn.val), *args.overrides]
        if args.toy:
            common += [*TOY_OVERRIDES, "GENERAL.checkpoint_step=2", "GENERAL.log_step=2"]
        baseline = mean_pose_baseline(common, 32 if args.toy else args.baseline_samples)
        print(
            f"mean-pose baseline: mpjpe={baseline['mpjpe']:.2f} mm "
            f"pa_mpjpe={baseline['pa_mpjpe']:.2f} mm",
            flush=True,
        )

        def one(job: tuple[str, int]) -> dict[str, Any]:
            name, seed = job
            r = train_run(
                f"{name}-seed{seed}",
                common + setting_overrides(settings[name], steps, seed),
                Path(tmp) / "runs",
                threads,
            )
            print(
                f"{r['name']}: val {r['mpjpe']:.1f} pa {r['pa_mpjpe']:.1f} train "
                f"{r['train_mpjpe']:.1f} mm, {r['wall_s']:.0f} s",
                flush=True,
            )
            r = {**r, "setting": name, "seed": seed}
            with progress.open("a") as fh:  # each run as it ends: a cut-short job keeps them
                fh.write(json.dumps(r) + "\n")
            return r

        with ThreadPoolExecutor(args.parallel) as pool:
            runs = list(pool.map(one, jobs))
    summary = summarise(runs)
    rec, nod = summary["recipe"], summary["no_dropout"]
    knobs = knob_effects(summary)
    results = {
        "steps": steps,
        "threads_per_run": threads,
        "seeds": seeds,
        "baseline": baseline,
        "runs": runs,
        "summary": summary,
        "knobs": knobs,
        "pa_ratio": ratio(rec["pa_mpjpe"], baseline["pa_mpjpe"]),
        "baseline_ratio": ratio(rec["mpjpe"], baseline["mpjpe"]),
        "gap_ratio": ratio(nod["mpjpe"], nod["train_mpjpe"]),
        "recipe_wall_s": rec["wall_s"],
    }
    targets = [
        (
            "recipe val PA / mean-pose PA",
            results["pa_ratio"],
            f"<= {TARGET_PA_RATIO}",
            results["pa_ratio"] <= TARGET_PA_RATIO,
        ),
        (
            "recipe val / mean-pose baseline",
            results["baseline_ratio"],
            f"<= {TARGET_BASELINE_RATIO}",
            results["baseline_ratio"] <= TARGET_BASELINE_RATIO,
        ),
        (
            "val / train MPJPE, dropout 0",
            results["gap_ratio"],
            f">= {TARGET_GAP_RATIO}",
            results["gap_ratio"] >= TARGET_GAP_RATIO,
        ),
        *[
            (
                f"{k}: range / seed std",
                v["ratio"],
                f"> {TARGET_KNOB_EFFECT}",
                v["ratio"] is not None and v["ratio"] > TARGET_KNOB_EFFECT,
            )
            for k, v in knobs.items()
        ],
        (
            f"recipe wall s ({threads} thread(s))",
            rec["wall_s"],
            f"<= {TARGET_TRIAL_S:.0f}",
            threads == 1 and rec["wall_s"] <= TARGET_TRIAL_S,
        ),
    ]
    results["targets_met"] = {name: bool(met) for name, _, _, met in targets}
    print(
        format_table(
            [
                "setting",
                "seeds",
                "val mpjpe",
                "std",
                "mpjpe_rel",
                "pa_mpjpe",
                "rte",
                "train mpjpe",
                "wall s",
            ],
            [
                [
                    n,
                    len(s["seeds"]),
                    s["mpjpe"],
                    s["mpjpe_std"],
                    s["mpjpe_rel"],
                    s["pa_mpjpe"],
                    s["rte"],
                    s["train_mpjpe"],
                    s["wall_s"],
                ]
                for n, s in summary.items()
            ],
        )
    )
    print()
    print(
        format_table(
            ["target", "measured", "wanted", "met"],
            [[n, v, w, "yes" if met else "NO"] for n, v, w, met in targets],
        )
    )
    write_results(args.out, NAME, args, machine, results)
    return 0


if __name__ == "__main__":
    run_cli(main)
