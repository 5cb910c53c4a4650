"""The sweep report of a 300-trial scripted sweep: top-k lines and a band, tables cut to
--rows plus the baseline, the low fidelity said plainly, importance with intervals; in bounded
time."""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

import optuna

from sweeps.reporting.page import write_report
from sweeps.reporting.study import MIN_FINISHED
from tests.sweeps.report_helpers import (
    FINGERPRINT,
    SPACE,
    TOTAL,
    check_page,
    fake_trials,
    journal,
    read_csv,
)


def make_big_sweep(root: Path, n: int, seed: int = 0) -> Path:
    """A sweep folder of ``n`` scripted trials (rungs at steps 20 and 40 of 60): summary.json
    with the baseline, sentinels (every 5th trial) and the summary's own fidelity check,
    one minimal run folder per trial (val lines only) and the journal study. Rung MPJPE
    barely predicts final MPJPE, so the fidelity check is low."""
    from sweeps.results.fidelity import rung_fidelity

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
                "fidelity": rung_fidelity(trials, [20, 40], TOTAL),
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
    page = write_report([sweep], rows=20, lines=10).read_text(encoding="utf-8")
    seconds = time.perf_counter() - start
    assert seconds < 60, seconds  # a generous bound (it must hold at 1000 trials); ~5 s idle
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
    warning = fid.split('<p class="warn">')[1].split("</p>")[0]
    assert "early stopping may have discarded winners among" in warning
    report = json.loads((out / "report.json").read_text())
    imp = report["importance"]
    assert imp["n_finished"] >= MIN_FINISHED and imp["resamples"] >= 50
    top, *others = imp["rows"]  # ~100 full-budget trials: the interval clears the rest
    assert top["parameter"] == "LOSS.lambda_trans" and top["p5"] > max(r["p95"] for r in others)
    assert "UNFINISHED" in {r["status"] for r in report["leaderboard"]}
