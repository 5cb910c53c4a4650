"""Helpers of the sweep report's tests (tests/sweeps/test_report*.py): fake training run folders,
a fake sweep folder with its Optuna study, scripted study trials, and the checks of the page
and its CSVs."""

from __future__ import annotations

import base64
import csv
import json
import math
import random
import re
from pathlib import Path

import optuna
import yaml
from optuna.storages.journal import JournalFileBackend, JournalStorage

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
TOTAL = 60
FINGERPRINT = "186265d23f7de34d"
SPACE = {  # configs/sweep/dropout_warmup.yaml, smoke preset (warmup scaled to 60 steps)
    "GENERAL.dropout_warmup_step": optuna.distributions.IntDistribution(0, 36),
    "GENERAL.dropout_schedule": optuna.distributions.CategoricalDistribution(
        ["step", "linear", "cosine"]
    ),
    "MODEL.handec.dropout": optuna.distributions.FloatDistribution(0.0, 0.4),
    "LOSS.lambda_trans": optuna.distributions.FloatDistribution(0.005, 0.5, log=True),
    "LOSS.lambda_theta": optuna.distributions.FloatDistribution(0.3, 10.0, log=True),
    "LOSS.lambda_shape": optuna.distributions.FloatDistribution(0.3, 10.0, log=True),
    "LOSS.lambda_rel": optuna.distributions.FloatDistribution(0.002, 0.05, log=True),
    "LOSS.lambda_img": optuna.distributions.FloatDistribution(0.0002, 0.01, log=True),
}
LOG_KEYS = {k for k, d in SPACE.items() if getattr(d, "log", False)}
# trial id -> (status, searched values, validation MPJPE (mm) at steps 20, 40, 60, ...)
TRIALS = {
    "aaaa0001": ("COMPLETED", (6, "step", 0.1, 0.05, 3.0, 3.0, 0.012, 0.002), [90.0, 85.0, 80.0]),
    "aaaa0002": ("COMPLETED", (20, "cosine", 0.3, 0.2, 1.0, 5.0, 0.03, 0.005), [92.0, 86.0, 82.0]),
    "aaaa0003": ("STOPPED_EARLY", (30, "linear", 0.05, 0.01, 0.5, 8.0, 0.01, 0.001), [95.0, 91.0]),
    "aaaa0004": ("ERROR", (10, "step", 0.2, 0.1, 2.0, 2.0, 0.02, 0.0005), [99.0]),
}
GAP = 3.0  # val minus train MPJPE (mm) in every fake validation
BEST_VS_BASELINE = "The best trial is within the validation noise of the baseline: -2.0 mm"
FIDELITY_MESSAGE = "2 trials reached the full budget: too few to tell (needs 3)"
HEADINGS = (
    "Overview",
    "Leaderboard",
    "Validation MPJPE over steps",
    "Fidelity (early stopping check)",
    "MPJPE at shared validation steps",
    "Best MPJPE so far",
    "Validation std and generalisation gap",
    "Dropout schedule",
    "Train vs validation loss",
    "Searched parameters vs final MPJPE",
    "Hyperparameter importance",
    "Confirmation (multi-seed)",
    "Data files",
)


def journal(sweep: Path) -> JournalStorage:
    """The sweep's Optuna study storage, as sweeps/run/search.py makes it."""
    return JournalStorage(JournalFileBackend(str(sweep / "optuna.journal")))


def write_run(
    run_dir: Path, curve: list[float], dropout: float, warmup: int, total: int = TOTAL
) -> None:
    """A training run folder as handpose.train leaves it: config.yaml and metrics.jsonl with
    train lines every 10 steps and val lines every 20."""
    run_dir.mkdir(parents=True)
    config = {
        "GENERAL": {
            "total_step": total,
            "run_name": run_dir.name,
            "output_dir": "out",
            "dropout_warmup_step": warmup,
            "val_seed": 42,
        },
        "MODEL": {"handec": {"dropout": dropout}},
    }
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config))
    lines = []
    for step in range(10, 20 * len(curve) + 1, 10):
        rate = dropout if step >= warmup else 0.0
        lines.append(
            {
                "step": step,
                "split": "train",
                "total": 5.0 - step / 30,
                "loss_theta": 0.1,
                "loss_shape": 1.0,
                "loss_trans": 4.0,
                "loss_rel": 30.0,
                "loss_img": 15.0,
                "lr": 1e-3,
                "dropout_rate": rate,
            }
        )
        if step % 20 == 0:
            mpjpe = curve[step // 20 - 1]
            lines.append(
                {
                    "step": step,
                    "split": "val",
                    "mpjpe": mpjpe,
                    "mpjpe_rel": mpjpe - 10,
                    "pa_mpjpe": 25.0,
                    "rte": mpjpe - 2,
                    "val_total": 4.5 - step / 40,
                    "val_loss_theta": 0.12,
                    "val_loss_shape": 1.1,
                    "val_loss_trans": 4.5,
                    "val_loss_rel": 32.0,
                    "val_loss_img": 16.0,
                    "train_mpjpe": mpjpe - GAP,
                    "gap_mpjpe": GAP,
                    "dropout_rate": rate,
                    "val_fingerprint": FINGERPRINT,
                    "num_samples": 64,
                    "train_total": 5.0 - step / 30,
                }
            )
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))


def make_sweep(root: Path, confirm: bool = True) -> Path:
    """A sweep folder like sweeps/dropout_warmup.py leaves it (4 trials, one of them known
    only by its summary curve), with its Optuna study and, optionally, confirm.json."""
    sweep = root / "fake"
    sweep.mkdir(parents=True)
    study = optuna.create_study(study_name=sweep.name, storage=journal(sweep), direction="minimize")
    trials = []
    for i, (tid, (status, values, curve)) in enumerate(TRIALS.items()):
        params = dict(zip(SPACE, values, strict=True))
        trial_dir = sweep / f"handpose_trial_{tid}_{i + 1}_GENERAL_dropout_schedule={values[1]}"
        run_dir = trial_dir / "run" if i < 2 else sweep / "runs" / f"handpose_trial_{tid}"
        if status != "ERROR":  # the errored trial left only its curve in summary.json
            write_run(run_dir, curve, values[2], values[0])
            trial_dir.mkdir(exist_ok=True)
            reports = [
                {
                    "step": 20 * (k + 1),
                    "mpjpe": v,
                    "trial_id": tid,
                    "timestamp": 1_700_000_000 + 30 * i + 10 * (k + 1),
                    "time_total_s": 10.0 * (k + 1),
                }
                for k, v in enumerate(curve)
            ]
            (trial_dir / "result.json").write_text("".join(json.dumps(r) + "\n" for r in reports))
        study.enqueue_trial(params)
        trial = study.ask(SPACE)
        for k, v in enumerate(curve):
            trial.report(v, 20 * (k + 1))
        state = {
            "COMPLETED": optuna.trial.TrialState.COMPLETE,
            "STOPPED_EARLY": optuna.trial.TrialState.PRUNED,
        }.get(status, optuna.trial.TrialState.FAIL)
        study.tell(trial, curve[-1] if status == "COMPLETED" else None, state=state)
        trials.append(
            {
                "trial_id": tid,
                "status": status,
                "overrides": params,
                "last_step": 20 * len(curve),
                "mpjpe": curve[-1],
                "best_mpjpe": min(curve),
                "mpjpe_rel": curve[-1] - 10,
                "pa_mpjpe": 25.0,
                "rte": curve[-1] - 2,
                "val_fingerprint": FINGERPRINT,
                "node_id": "n1",
                "path": str(trial_dir),
                "run_dir": str(run_dir) if i >= 2 else None,
                "curve": [[20 * (k + 1), v] for k, v in enumerate(curve)],
                "error": "NonFiniteLossError: non-finite loss" if status == "ERROR" else None,
                "baseline": tid == "aaaa0002",
                "sentinel": tid == "aaaa0002",
            }
        )
    summary = {
        "metric": "mpjpe",
        "mode": "min",
        "preset": "smoke",
        "total_step": TOTAL,
        "val_seed": 42,
        "val_fingerprints": [FINGERPRINT],
        "comparable": True,
        "best": {
            "trial_id": "aaaa0001",
            "overrides": trials[0]["overrides"],
            "mpjpe": 80.0,
            "step": TOTAL,
        },
        "baseline": {
            "trial_id": "aaaa0002",
            "overrides": trials[1]["overrides"],
            "mpjpe": 82.0,
            "status": "COMPLETED",
            "last_step": TOTAL,
        },
        "best_vs_baseline": {
            "diff_mm": -2.0,
            "noise_mm": 3.0,
            "beyond_noise": False,
            "sentence": BEST_VS_BASELINE,
        },
        "sentinels": ["aaaa0002"],
        "rungs": [20, 40],
        "fidelity": {
            "n_full": 2,
            "low": False,
            "message": FIDELITY_MESSAGE,
            "per_rung": [
                {"step": 20, "spearman": None, "n": 2},
                {"step": 40, "spearman": None, "n": 2},
            ],
        },
        "trials": trials,
    }
    (sweep / "summary.json").write_text(json.dumps(summary))
    if confirm:
        rows = [  # as sweeps/results/confirm.py writes them
            {
                "config": "baseline",
                "overrides": trials[0]["overrides"],
                "sweep_mpjpe": 80.0,
                "per_seed": [80.5, 81.0],
                "n": 2,
                "mpjpe_mean": 80.75,
                "mpjpe_std": 0.35,
                "diff_mean": 0.0,
                "diff_std": 0.0,
                "diff_ci95": [0.0, 0.0],
                "verdict": "reference",
            },
            {
                "config": "aaaa0002",
                "overrides": trials[1]["overrides"],
                "sweep_mpjpe": 82.0,
                "per_seed": [81.0, None],
                "n": 1,
                "mpjpe_mean": None,
                "mpjpe_std": None,
                "diff_mean": None,
                "diff_std": None,
                "diff_ci95": None,
                "verdict": "undetermined (fewer than 2 seeds finished)",
            },
        ]
        (sweep / "confirm.json").write_text(
            json.dumps(
                {"rows": rows, "sentence": "The sweep winner aaaa0001 is the baseline recipe."}
            )
        )
    return sweep


def check_page(html: str, out: Path) -> list[bytes]:
    """Every section heading is there; every <img> is a PNG data URI; every PNG next to the
    page is a valid, non-empty PNG and embedded. Returns the embedded PNGs."""
    for title in HEADINGS:
        assert f"<h2>{title}</h2>" in html, title
    assert "http://" not in html and "https://" not in html and "<script" not in html
    srcs = re.findall(r'<img src="([^"]*)"', html)
    pngs = []
    for src in srcs:
        assert src.startswith("data:image/png;base64,"), src[:40]
        data = base64.b64decode(src.split(",", 1)[1])
        assert data.startswith(PNG_SIGNATURE) and len(data) > 1000
        pngs.append(data)
    files = sorted(out.glob("*.png"))
    assert len(files) == len(srcs)
    for f in files:
        assert f.stat().st_size > 0 and f.read_bytes().startswith(PNG_SIGNATURE)
        assert f.read_bytes() in pngs
    return pngs


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def fake_trials(n: int, seed: int = 0, prune_every: int = 3) -> list[optuna.trial.FrozenTrial]:
    """``n`` study trials whose value (mm) depends mostly on lambda_trans (log distance to
    0.05), a little on dropout, plus noise; every ``prune_every``-th trial is complete, the
    others pruned (no value)."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        params = {
            k: (
                rng.choice(d.choices)
                if hasattr(d, "choices")
                else rng.randint(d.low, d.high)
                if isinstance(d, optuna.distributions.IntDistribution)
                else d.low * (d.high / d.low) ** rng.random()
                if d.log
                else rng.uniform(d.low, d.high)
            )
            for k, d in SPACE.items()
        }
        value = (
            80
            + 20 * abs(math.log(params["LOSS.lambda_trans"] / 0.05))
            + 5 * params["MODEL.handec.dropout"]
            + rng.gauss(0, 0.5)
        )
        done = i % prune_every == 0
        out.append(
            optuna.trial.create_trial(
                params=params,
                distributions=SPACE,
                value=value if done else None,
                intermediate_values={20: value + 3},
                state=optuna.trial.TrialState.COMPLETE if done else optuna.trial.TrialState.PRUNED,
            )
        )
    return out
