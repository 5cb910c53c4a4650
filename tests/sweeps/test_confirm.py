"""Multi-seed confirmation (sweeps/results/confirm.py): the paired statistics on hand-made numbers,
the choice of configurations, the CLI's bad input, and one real confirmation on a local Ray."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import ray
from omegaconf import OmegaConf

from handpose.config import load_config
from handpose.errors import UserError
from sweeps.results.confirm import (
    BETTER,
    NOISE,
    confirmation_rows,
    paired_stats,
    run_confirmation,
    select_candidates,
    winner_sentence,
)
from sweeps.results.fidelity import WORSE, t_critical_95
from sweeps.run.spec import SPEC_PATH, load_spec
from tests.helpers import REPO, tiny_overrides


@pytest.mark.parametrize(
    "df, expected",
    [(1, 12.7062), (2, 4.3027), (9, 2.2622), (10, 2.2281), (30, 2.0423), (120, 1.9799)],
)
def test_t_critical_values(df, expected):
    assert t_critical_95(df) == pytest.approx(expected, abs=1e-4)


def test_clearly_better():
    s = paired_stats([40.0, 41.0, 39.5], [45.0, 46.2, 44.6])  # diffs -5.0, -5.2, -5.1
    assert s["n"] == 3 and s["diff_mean"] == pytest.approx(-5.1)
    assert s["diff_std"] == pytest.approx(0.1)
    half = 4.3027 * 0.1 / math.sqrt(3)
    assert s["diff_ci95"] == pytest.approx([-5.1 - half, -5.1 + half], abs=1e-4)
    assert s["mpjpe_mean"] == pytest.approx(40.1667, abs=1e-4)
    assert s["mpjpe_std"] == pytest.approx(0.7638, abs=1e-4)  # ddof=1
    assert s["verdict"] == BETTER


def test_clearly_worse():
    s = paired_stats([45.0, 46.2, 44.6], [40.0, 41.0, 39.5])
    assert s["diff_mean"] == pytest.approx(5.1) and s["diff_ci95"][0] > 0
    assert s["verdict"] == WORSE


def test_within_noise_even_with_a_lower_mean():
    # mean 2 mm lower, but the seeds disagree: the interval straddles 0
    s = paired_stats([40.0, 50.0, 35.0], [45.0, 44.0, 42.0])  # diffs -5, +6, -7
    assert s["diff_mean"] == pytest.approx(-2.0)
    lo, hi = s["diff_ci95"]
    assert lo < 0 < hi
    assert s["verdict"] == NOISE


def test_fewer_than_two_seeds_rejected(tmp_path):
    with pytest.raises(UserError, match="at least 2"):
        paired_stats([40.0], [41.0])
    with pytest.raises(UserError, match="--seeds 1"):
        run_confirmation(tmp_path, top_k=1, seeds=1)  # before reading the (empty) folder


def test_cli_bad_input_is_one_line_exit_2(tmp_path):
    for args in (["--seeds", "1"], ["--top", "1"]):  # S < 2; not a sweep folder
        res = subprocess.run(
            [sys.executable, "sweeps/confirm.py", str(tmp_path), *args],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert res.returncode == 2, res.stderr
        assert len(res.stderr.strip().splitlines()) == 1 and res.stderr.startswith("error: ")
    assert "summary.json" in res.stderr


def _trial(trial_id: str, status: str, mpjpe: float | None, **overrides) -> dict:
    return {
        "trial_id": trial_id,
        "status": status,
        "mpjpe": mpjpe,
        "overrides": overrides,
        "last_step": 1200,
        "val_fingerprint": "f",
    }


def test_candidates_prefer_full_budget_and_keep_the_baseline_once():
    spec, cfg = load_spec("cpu", SPEC_PATH)
    baseline = spec.points_to_evaluate[0]
    summary = {
        "trials": [  # sorted best first, as summary.json
            _trial("early", "STOPPED_EARLY", 30.0, **{"MODEL.handec.dropout": 0.0}),
            _trial("base", "COMPLETED", 40.0, **baseline),  # the recipe, found again by the sweep
            _trial("other", "COMPLETED", 41.0, **{"MODEL.handec.dropout": 0.3}),
            _trial("third", "COMPLETED", 42.0, **{"MODEL.handec.dropout": 0.2}),
            _trial("broken", "ERROR", None),
        ]
    }
    candidates, same, winner = select_candidates(summary, cfg, baseline, top_k=2)
    assert [c.name for c in candidates] == ["baseline", "other"]
    assert same == ["base"] and winner == "base"
    assert candidates[0].sweep_mpjpe == 40.0 and candidates[1].overrides == {
        "MODEL.handec.dropout": 0.3
    }
    assert "baseline recipe itself" in winner_sentence(winner, {}, same)


def test_report_pairs_by_seed_and_flags_missing_runs():
    spec, cfg = load_spec("cpu", SPEC_PATH)
    summary = {
        "trials": [
            _trial("a", "COMPLETED", 40.0, **{"MODEL.handec.dropout": 0.3}),
            _trial("b", "COMPLETED", 41.0, **{"MODEL.handec.dropout": 0.2}),
        ]
    }
    candidates, _, winner = select_candidates(summary, cfg, spec.points_to_evaluate[0], 2)
    seeds = [1000, 1001, 1002]
    finals = {"baseline": [45.0, 46.2, 44.6], "a": [40.0, 41.0, 39.5], "b": [41.0, 40.0, None]}
    done = {
        (name, s): {"mpjpe": v}
        for name, vals in finals.items()
        for s, v in zip(seeds, vals, strict=True)
        if v is not None
    }
    rows = {r["config"]: r for r in confirmation_rows(candidates, seeds, done)}
    assert rows["baseline"]["verdict"] == "reference" and rows["baseline"]["diff_mean"] == 0
    assert rows["a"]["verdict"] == BETTER and rows["a"]["per_seed"] == finals["a"]
    assert rows["b"]["per_seed"] == [41.0, 40.0, None] and rows["b"]["n"] == 2
    assert rows["b"]["diff_mean"] == pytest.approx(((41 - 45) + (40 - 46.2)) / 2)
    sentence = winner_sentence(winner, rows["a"], [])
    assert sentence.startswith("The sweep winner a is better than the baseline recipe")
    assert "over 3 seeds" in sentence
    done.pop(("b", 1001))
    row_b = confirmation_rows(candidates, seeds, done)[2]
    assert row_b["verdict"].startswith("undetermined") and row_b["diff_ci95"] is None


def _fake_sweep(sweep: Path, data_dir: Path) -> None:
    """A finished sweep's folder: its spec, state (tiny base config) and summary."""
    sweep.mkdir(parents=True)
    spec = {
        "metric": "mpjpe",
        "mode": "min",
        "presets": {
            "tiny": {
                "base_config": "stage1-tiny",
                "resources": {"cpu": 1},
                "max_failures": 0,
                "scheduler": {"grace_period": 1},
                "space": {
                    "MODEL.handec.dropout": {"type": "float", "low": 0.0, "high": 0.4},
                    "LOSS.lambda_trans": {"type": "float", "low": 0.005, "high": 0.5, "log": True},
                },
                "points_to_evaluate": [{"MODEL.handec.dropout": 0.1, "LOSS.lambda_trans": 0.05}],
            }
        },
    }
    OmegaConf.save(spec, sweep / "spec.yaml")
    base = load_config(
        "stage1-tiny", [*tiny_overrides(data_dir, sweep / "out", steps=8), "AIM.enabled=false"]
    )
    OmegaConf.save(
        {
            "preset": "tiny",
            "spec": str(sweep / "spec.yaml"),
            "num_samples": 2,
            "base": OmegaConf.to_container(base, resolve=True),
        },
        sweep / "sweep_state.yaml",
    )
    trials = [
        _trial(
            "trial_b",
            "STOPPED_EARLY",
            40.0,
            **{"MODEL.handec.dropout": 0.0, "LOSS.lambda_trans": 0.01},
        ),
        _trial(
            "trial_a", "COMPLETED", 50.0, **{"MODEL.handec.dropout": 0.3, "LOSS.lambda_trans": 0.2}
        ),
    ]
    (sweep / "summary.json").write_text(
        json.dumps(
            {"metric": "mpjpe", "mode": "min", "best": {"trial_id": "trial_a"}, "trials": trials}
        )
    )


@pytest.mark.slow
def test_confirmation_end_to_end(data_dir, tmp_path, local_ray):
    sweep = tmp_path / "sweep"
    _fake_sweep(sweep, data_dir)
    report = run_confirmation(sweep, top_k=1, seeds=2)
    assert ray.is_initialized()  # the fixture's Ray is left running
    saved = json.loads((sweep / "confirm.json").read_text())
    assert saved == json.loads(json.dumps(report))
    assert saved["seeds"] == [1000, 1001] and saved["val_seed"] == 42 and saved["failed"] == []
    rows = saved["rows"]
    assert [r["config"] for r in rows] == ["baseline", "trial_a"]  # full-budget trial first
    for r in rows:
        assert len(r["per_seed"]) == 2 and all(v > 0 for v in r["per_seed"])
        assert r["per_seed"][0] != r["per_seed"][1]  # the training seed changes the result
    assert len(saved["val_fingerprints"]) == 1 and saved["comparable"]
    assert saved["winner"] == "trial_a" and "trial_a" in saved["sentence"]
    assert saved["winner_within_noise"] == (rows[1]["verdict"] == NOISE)
    # every (config, seed) ran once, with its values and seed, in the sweep's confirm folder
    runs = [OmegaConf.load(p) for p in (sweep / "confirm" / "runs").glob("*/config.yaml")]
    got = sorted((c.LOSS.lambda_trans, c.MODEL.handec.dropout, c.GENERAL.seed) for c in runs)
    assert got == [(0.05, 0.1, 1000), (0.05, 0.1, 1001), (0.2, 0.3, 1000), (0.2, 0.3, 1001)]
