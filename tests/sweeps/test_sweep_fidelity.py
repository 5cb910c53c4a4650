"""What the summary says about a sweep: rank correlation of rungs with the final MPJPE,
validation noise, and the best trial against the baseline."""

from __future__ import annotations

import random

import pytest

from sweeps.results.fidelity import (
    best_vs_baseline,
    rung_fidelity,
    spearman,
    validation_noise,
    value_at,
)
from sweeps.run.rungs import rungs
from sweeps.run.scheduler import SweepASHA


def _trial(tid, curve, status="COMPLETED"):
    return {
        "trial_id": tid,
        "status": status,
        "curve": [[s, v] for s, v in curve],
        "mpjpe": curve[-1][1],
        "last_step": curve[-1][0],
    }


def test_spearman_matches_hand_computed_values():
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    # ranks x = 1 2 3 4, y = 2 1 4 3: d^2 = 4 -> 1 - 6*4/(4*15) = 0.6
    assert spearman([1, 2, 3, 4], [2, 1, 4, 3]) == pytest.approx(0.6)
    assert spearman([1, 2], [1, 2]) is None and spearman([1, 1, 1], [1, 2, 3]) is None


def test_fidelity_flags_a_rung_that_ranks_trials_unlike_the_end():
    good = [_trial(f"t{i}", [(100, 50 + i), (200, 40 + i)]) for i in range(4)]
    f = rung_fidelity(good, [100, 200], 200)
    assert f["per_rung"] == [{"step": 100, "n": 4, "spearman": pytest.approx(1.0)}]
    assert not f["low"] and "ranked them like their final MPJPE" in f["message"]
    flipped = [_trial(f"t{i}", [(100, 50 - i), (200, 40 + i)]) for i in range(4)]
    stopped = _trial("s", [(100, 10.0)], status="STOPPED_EARLY")  # not full budget: unused
    f = rung_fidelity(flipped + [stopped], [100, 200], 200)
    assert f["low"] and f["n_full"] == 4
    assert "early stopping may have discarded winners" in f["message"]
    assert "too few" in rung_fidelity(good[:2], [100, 200], 200)["message"]


def test_best_against_baseline_and_noise():
    base = _trial("base", [(1, 60.0), (2, 61.0), (3, 59.0), (4, 60.0)])
    best = _trial("best", [(1, 50.0), (2, 51.0), (3, 49.0), (4, 58.0)])
    noise = validation_noise([base, best])
    assert noise == pytest.approx((1.0 + 22.3333**0.5) / 2)  # stds of the last 3
    v = best_vs_baseline(best, base, noise)
    assert v["diff_mm"] == pytest.approx(-2.0) and not v["beyond_noise"]
    assert "within the validation noise" in v["sentence"] and "--confirm" in v["sentence"]
    far = _trial("far", [(1, 30.0), (2, 30.0), (3, 30.0), (4, 30.0)])
    v = best_vs_baseline(far, base, 1.0)
    assert v["beyond_noise"] and "better than the baseline beyond" in v["sentence"]
    same = best_vs_baseline(base, base, 1.0)
    assert same["diff_mm"] == 0.0 and "is the baseline" in same["sentence"]


def test_value_at_is_the_first_value_at_or_after_the_rung():
    curve = [[250, 9.0], [500, None], [750, 7.0], [1000, 6.0]]
    assert value_at(curve, 250) == 9.0  # a rung on a validation step
    assert value_at(curve, 300) == 7.0  # not 9.0 (the last one before); 500 has no value
    assert value_at(curve, 100) == 9.0 and value_at(curve, 1001) is None
    assert value_at([[300, 5.0], [200, 8.0]], 150) == 8.0  # by step, not list order


class _Trial:
    def __init__(self, trial_id: str) -> None:
        self.trial_id, self.config = trial_id, {}


def test_value_at_is_what_asha_records_at_each_rung(tmp_path):
    """Milestones off the validation steps (300, 600; validations every 250 steps) move to
    the validations after them (500, 750): the value SweepASHA (Ray's _Bracket.on_result)
    records for a trial at a rung is value_at that rung's step."""
    asha = SweepASHA(
        ready_step=None,
        sentinels=set(),
        state_path=tmp_path / "s.jsonl",
        val_every=250,
        metric="mpjpe",
        mode="min",
        time_attr="step",
        max_t=1000,
        grace_period=300,
        reduction_factor=2,
        stop_last_trials=False,
    )
    assert rungs(300, 2, 1000, 250) == [500, 750]
    rng = random.Random(0)
    curves = {}
    for i in range(12):
        trial = _Trial(f"t{i}")
        curves[trial.trial_id] = [[s, rng.uniform(20.0, 80.0)] for s in (250, 500, 750, 1000)]
        asha.on_trial_add(None, trial)
        for step, value in curves[trial.trial_id]:
            if asha.on_trial_result(None, trial, {"step": step, "mpjpe": value}) == SweepASHA.STOP:
                break
    recorded = dict(asha._brackets[0]._rungs)
    assert list(recorded) == [750, 500]  # Ray's order: descending
    assert len(recorded[500]) == 12 and len(recorded[750]) >= 2
    for milestone, values in recorded.items():
        for tid, v in values.items():
            assert -v == value_at(curves[tid], milestone), (milestone, tid)
