"""sweeps/report.py on a realistic fake sweep folder (no Ray) and on two plain run folders:
every section, valid embedded and on-disk PNGs, parseable CSV/JSON, exit code 2 on bad input,
the baseline, sentinels and the fidelity check, importance with a bootstrap interval, log
axes from the study, a 300-trial sweep in bounded time, and (when Chromium is installed) a
headless render of the page."""

from __future__ import annotations

import base64
import csv
import json
import math
import random
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.storages.journal import JournalFileBackend, JournalStorage

from handpose.errors import UserError
from sweeps.report import build_report, main
from sweeps.report_study import MIN_FINISHED, log_keys, open_study, param_importance

REPO = Path(__file__).resolve().parent.parent
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
    """The sweep's Optuna study storage, as sweeps/search.py makes it."""
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
        rows = [  # as sweeps/confirm.py writes them
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


@pytest.fixture(scope="module")
def sweep_report(tmp_path_factory) -> tuple[Path, Path]:
    sweep = make_sweep(tmp_path_factory.mktemp("sweeps"))
    assert main([str(sweep), "--top", "3"]) == 0
    return sweep, sweep / "report"


def test_sweep_report_sections_images_and_tables(sweep_report):
    sweep, out = sweep_report
    html = (out / "report.html").read_text(encoding="utf-8")
    check_page(html, out)
    assert {p.name for p in out.glob("*.png")} == {  # no importance: 2 complete trials
        "mpjpe_vs_step.png",
        "fidelity.png",
        "best_so_far.png",
        "generalisation_gap.png",
        "dropout_schedule.png",
        "train_vs_val_loss.png",
        "params_vs_mpjpe.png",
    }
    board = read_csv(out / "trials.csv")
    assert [r["id"] for r in board] == list(TRIALS)  # ranked by final MPJPE
    assert [r["role"] for r in board] == ["", "baseline", "", ""]
    assert '<tr class="base"><td class="n">2</td><td>aaaa0002</td><td>baseline</td>' in html
    for text in (
        BEST_VS_BASELINE,
        FIDELITY_MESSAGE,
        "too few finished trials (2) for importance",
        "aaaa0002 (the base config&#x27;s own values): 82.00 mm",
        "1 trials ran the full budget whatever ASHA said: aaaa0002",
        "log x axis: the keys searched with log: true",
    ):
        assert text in html, text
    assert "early stopping may have discarded winners" not in html
    assert [r["status"] for r in board] == [s for s, _, _ in TRIALS.values()]
    assert float(board[0]["mpjpe"]) == 80.0 and board[0]["LOSS.lambda_trans"] == "0.05"
    assert board[3]["error"] == "NonFiniteLossError: non-finite loss" and not board[0]["error"]
    assert "NonFiniteLossError: non-finite loss" in html
    at = read_csv(out / "mpjpe_at_steps.csv")
    assert list(at[0]) == ["id", "status", "20", "40", "60"]
    stopped = next(r for r in at if r["status"] == "STOPPED_EARLY")
    assert (stopped["40"], stopped["60"]) == ("91.0", "")  # ended early: no value at 60
    stats = {r["id"]: r for r in read_csv(out / "trial_stats.csv")}
    assert float(stats["aaaa0001"]["mpjpe_std"]) == pytest.approx(5.0)  # std(90, 85, 80)
    assert float(stats["aaaa0001"]["gap_final"]) == GAP
    assert stats["aaaa0004"]["num_val"] == "1" and stats["aaaa0004"]["gap_final"] == ""
    for text in (
        "undetermined (fewer than 2 seeds finished)",
        "is the baseline recipe",
        "per_seed",
        "[81.00, –]",
        "LOSS.lambda_trans=0.2",
    ):
        assert text in html  # the confirmation table and sentence


def test_sweep_report_json(sweep_report):
    _, out = sweep_report
    report = json.loads((out / "report.json").read_text())
    curves = report["curves"]
    assert curves["aaaa0003"]["val_mpjpe"][-1][0] == 40  # the ASHA-stopped trial ends early
    assert curves["aaaa0004"]["val_mpjpe"] == [[20, 99.0]]  # from summary.json's curve
    assert [s for s, _ in curves["aaaa0001"]["dropout_rate"]] == list(range(10, 61, 10))
    best = [p["best_mpjpe"] for p in report["best_so_far"]]
    assert best == sorted(best, reverse=True) and best[-1] == 80.0
    assert report["best_so_far"][-1]["total_steps"] == 60 + 60 + 40
    assert report["importance"]["rows"] == [] and report["importance"]["n_finished"] == 2
    assert set(report["log_keys"]) == LOG_KEYS  # from the study's distributions
    assert [(p["id"], p["role"], p["20"], p["40"]) for p in report["fidelity_points"]] == [
        ("aaaa0001", "", 90.0, 85.0),
        ("aaaa0002", "baseline", 92.0, 86.0),
    ]
    assert report["confirm"]["rows"][1]["config"] == "aaaa0002"


def test_run_folders_before_after(tmp_path):
    before, after = tmp_path / "before", tmp_path / "after"
    write_run(before, [95.0, 90.0, 88.0], dropout=0.0, warmup=0)
    write_run(after, [94.0, 87.0], dropout=0.2, warmup=20)  # still running: 2 of 3 vals
    assert main([str(before), str(after)]) == 0
    out = before / "report"
    html = (out / "report.html").read_text(encoding="utf-8")
    check_page(html, out)
    board = read_csv(out / "trials.csv")
    assert [(r["id"], r["status"]) for r in board] == [
        ("after", "UNFINISHED"),
        ("before", "COMPLETED"),
    ]
    # the config keys that differ between the runs, not the run names
    assert {k for k in board[0] if "." in k} == {
        "MODEL.handec.dropout",
        "GENERAL.dropout_warmup_step",
    }
    assert "needs a sweep folder" in html  # importance: a note, not a crash


def test_sweep_plus_run_uses_searched_keys(sweep_report, tmp_path):
    sweep, _ = sweep_report
    write_run(tmp_path / "retrain", [91.0, 84.0, 79.0], dropout=0.1, warmup=6)
    main([str(sweep), str(tmp_path / "retrain"), "--out", str(tmp_path / "rep")])
    board = read_csv(tmp_path / "rep" / "trials.csv")
    assert (board[0]["id"], board[0]["kind"]) == ("retrain", "run")
    assert board[0]["MODEL.handec.dropout"] == "0.1" and board[0]["LOSS.lambda_trans"] == ""


def test_sweep_from_before_baselines(tmp_path):
    """An older summary.json (no baseline, sentinels, rungs or fidelity) still reports."""
    sweep = make_sweep(tmp_path, confirm=False)
    summary = json.loads((sweep / "summary.json").read_text())
    for key in ("baseline", "best_vs_baseline", "sentinels", "rungs", "fidelity"):
        del summary[key]
    for t in summary["trials"]:
        del t["baseline"], t["sentinel"]
    (sweep / "summary.json").write_text(json.dumps(summary))
    html = build_report([sweep], tmp_path / "rep", lines=2, rows=3).read_text(encoding="utf-8")
    check_page(html, tmp_path / "rep")
    assert "<dt>baseline</dt>" not in html and "<dt>sentinels</dt>" not in html
    assert "no fidelity check in summary.json" in html and 'class="base"' not in html
    assert "1 more entries not shown (1 error; final MPJPE 99.00-99.00 mm)" in html


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


def test_importance_bootstrap_interval(tmp_path):
    sweep = tmp_path / "imp"
    sweep.mkdir()
    optuna.create_study(study_name="imp", storage=journal(sweep)).add_trials(fake_trials(90))
    study, _ = open_study(sweep)
    start = time.perf_counter()
    imp = param_importance(study, "")
    seconds = time.perf_counter() - start
    assert (imp.n_finished, imp.resamples) == (30, 200) and seconds < 10
    assert [r["parameter"] for r in imp.rows][0] == "LOSS.lambda_trans"
    assert {r["parameter"] for r in imp.rows} == set(SPACE)
    for r in imp.rows:
        assert 0.0 <= r["p5"] <= r["median"] <= r["p95"] <= 1.0
    # 30 trials: the top 10% PED-ANOVA looks at are 3 trials; the whiskers say so
    assert max(r["p95"] - r["p5"] for r in imp.rows) > 0.2
    assert "30 trials that ran the full budget" in imp.note and "60 stopped early" in imp.note
    assert log_keys(study, sweep) == LOG_KEYS
    again = param_importance(open_study(sweep)[0], "")
    assert again.rows == imp.rows  # seeded: the same report twice


def test_importance_too_few_and_old_sqlite_study(tmp_path):
    sweep = tmp_path / "old"
    sweep.mkdir()  # a sweep from before the journal: optuna.db
    optuna.create_study(study_name="old", storage=f"sqlite:///{sweep}/optuna.db").add_trials(
        fake_trials(3 * (MIN_FINISHED - 1))
    )
    study, where = open_study(sweep)
    assert study is not None and "optuna.db" in where
    imp = param_importance(study, where)
    assert imp.rows == [] and imp.note.startswith(
        f"too few finished trials ({MIN_FINISHED - 1}) for importance"
    )
    empty = tmp_path / "none"
    empty.mkdir()
    study, why = open_study(empty)
    assert study is None and param_importance(study, why).note == why
    assert "no Optuna study (optuna.journal)" in why


def test_log_keys_from_spec_when_no_study(tmp_path):
    state = {
        "preset": "smoke",
        "spec": str(REPO / "configs/sweep/dropout_warmup.yaml"),
        "num_samples": 4,
        "base": {},
    }
    (tmp_path / "sweep_state.yaml").write_text(yaml.safe_dump(state))
    assert log_keys(None, tmp_path) == {
        "LOSS.lambda_trans",
        "LOSS.lambda_theta",
        "LOSS.lambda_shape",
        "LOSS.lambda_rel",
        "LOSS.lambda_img",
    }
    state["spec"] = str(tmp_path / "gone.yaml")  # a moved spec: linear axes, no error
    (tmp_path / "sweep_state.yaml").write_text(yaml.safe_dump(state))
    assert log_keys(None, tmp_path) is None
    assert log_keys(None, tmp_path / "elsewhere") is None


def make_big_sweep(root: Path, n: int, seed: int = 0) -> Path:
    """A sweep folder of ``n`` scripted trials (rungs at steps 20 and 40 of 60): summary.json
    with the baseline, sentinels (every 5th trial) and the summary's own fidelity check,
    one minimal run folder per trial (val lines only) and the journal study. Rung MPJPE
    barely predicts final MPJPE, so the fidelity check is low."""
    from sweeps.fidelity import fidelity

    sweep = root / "big"
    (sweep / "runs").mkdir(parents=True)
    study_trials = fake_trials(n, seed, prune_every=1)  # values only; states below
    rng = random.Random(seed)
    trials, frozen = [], []
    for i, ft in enumerate(study_trials):
        tid = f"t{i:05d}"
        final = ft.value
        curve = [150 + rng.uniform(0, 60), final + rng.uniform(0, 10), final]  # step 20: noise
        sentinel, baseline = i % 5 == 0, i == 7
        status = (
            "ERROR"
            if i % 97 == 3
            else "UNFINISHED"
            if i % 89 == 4
            else "COMPLETED"
            if sentinel or baseline or i % 4 == 1
            else "STOPPED_EARLY"
        )
        curve = (
            curve[: 1 + (i % 2)]
            if status in ("STOPPED_EARLY", "UNFINISHED")
            else (curve[:1] if status == "ERROR" else curve)
        )
        run_dir = sweep / "runs" / f"handpose_trial_{tid}"
        run_dir.mkdir()
        (run_dir / "metrics.jsonl").write_text(
            "".join(
                json.dumps(
                    {
                        "step": 20 * (k + 1),
                        "split": "val",
                        "mpjpe": v,
                        "val_fingerprint": FINGERPRINT,
                    }
                )
                + "\n"
                for k, v in enumerate(curve)
            )
        )
        trials.append(
            {
                "trial_id": tid,
                "status": status,
                "overrides": ft.params,
                "last_step": 20 * len(curve),
                "mpjpe": curve[-1],
                "best_mpjpe": min(curve),
                "val_fingerprint": FINGERPRINT,
                "path": str(sweep / f"trial_{tid}"),
                "run_dir": str(run_dir),
                "curve": [[20 * (k + 1), v] for k, v in enumerate(curve)],
                "error": "NonFiniteLossError: non-finite loss" if status == "ERROR" else None,
                "sentinel": sentinel or baseline,
                "baseline": baseline,
            }
        )
        frozen.append(
            optuna.trial.create_trial(
                params=ft.params,
                distributions=SPACE,
                value=final if status == "COMPLETED" else None,
                state=optuna.trial.TrialState.COMPLETE
                if status == "COMPLETED"
                else optuna.trial.TrialState.PRUNED,
            )
        )
    optuna.create_study(study_name=sweep.name, storage=journal(sweep)).add_trials(frozen)
    trials.sort(key=lambda t: t["mpjpe"])
    base = next(t for t in trials if t["baseline"])
    (sweep / "summary.json").write_text(
        json.dumps(
            {
                "metric": "mpjpe",
                "mode": "min",
                "preset": "scale",
                "total_step": TOTAL,
                "val_seed": 42,
                "best": {
                    "trial_id": trials[0]["trial_id"],
                    "mpjpe": trials[0]["mpjpe"],
                    "step": TOTAL,
                },
                "baseline": {
                    k: base[k] for k in ("trial_id", "overrides", "mpjpe", "status", "last_step")
                },
                "best_vs_baseline": None,
                "sentinels": [t["trial_id"] for t in trials if t["sentinel"]],
                "rungs": [20, 40],
                "fidelity": fidelity(trials, [20, 40], TOTAL),
                "trials": trials,
            }
        )
    )
    return sweep


def test_report_at_scale(tmp_path):
    """300 trials: top-k lines and a band, tables cut to --rows plus the baseline, the low
    fidelity said plainly, importance with intervals; in bounded time."""
    sweep = make_big_sweep(tmp_path, 300)
    start = time.perf_counter()
    page = build_report([sweep], rows=20, lines=10).read_text(encoding="utf-8")
    seconds = time.perf_counter() - start
    assert seconds < 60, seconds  # the bound for 1000 trials; ~5 s on an idle core
    out = sweep / "report"
    check_page(page, out)
    board = page.split('<section id="leaderboard">')[1].split("</section>")[0]
    base_rank = next(
        int(r["rank"]) for r in read_csv(out / "trials.csv") if r["role"] == "baseline"
    )
    assert base_rank > 20 and board.count("<tr") == 1 + 20 + 1  # header, top 20, baseline
    assert board.count('<tr class="base">') == 1 and "279 more entries not shown" in board
    assert len(read_csv(out / "trials.csv")) == 300
    fid = page.split('<section id="fidelity">')[1].split("</section>")[0]
    assert '<p class="warn">early stopping may have discarded winners' in fid
    report = json.loads((out / "report.json").read_text())
    imp = report["importance"]
    assert imp["n_finished"] >= MIN_FINISHED and imp["resamples"] >= 50
    top, *others = imp["rows"]  # ~100 full-budget trials: the interval clears the rest
    assert top["parameter"] == "LOSS.lambda_trans" and top["p5"] > max(r["p95"] for r in others)
    assert "UNFINISHED" in {r["status"] for r in report["leaderboard"]}


def test_bad_input(tmp_path):
    proc = subprocess.run(
        [sys.executable, "sweeps/report.py", str(tmp_path / "missing")],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"error: {tmp_path / 'missing'}: no such folder"]
    with pytest.raises(UserError, match="neither a sweep folder"):
        main([str(tmp_path)])
    (tmp_path / "summary.json").write_text(json.dumps({"metric": "mpjpe", "trials": []}))
    with pytest.raises(UserError, match="nothing to report"):
        main([str(tmp_path)])


@pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium not installed")
def test_renders_in_headless_chromium(sweep_report, tmp_path):
    from PIL import Image

    _, out = sweep_report
    shot = tmp_path / "shot.png"
    subprocess.run(
        [
            "chromium",
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={tmp_path / 'profile'}",
            f"--screenshot={shot}",
            "--window-size=1280,3000",
            (out / "report.html").as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    image = Image.open(shot).convert("L")
    assert image.size == (1280, 3000)
    assert len(image.getcolors(maxcolors=65536) or range(65536)) > 50  # not a blank page
