"""The searcher against a real Optuna journal study, without Tune: PRUNED for stopped and
diverged trials, no crash on a trial Optuna already finished, orphans told FAIL on resume,
and the OptunaSearch internals it relies on still exist."""

from __future__ import annotations

import pickle

import pytest
from optuna.trial import TrialState
from ray import tune
from ray.tune.search.optuna import OptunaSearch

from sweeps.common import DIVERGED_PENALTY
from sweeps.search import PruneAwareOptunaSearch, _Private, study_storage


def _searcher(tmp_path, name="s"):
    s = PruneAwareOptunaSearch(
        metric="mpjpe",
        mode="min",
        time_attr="step",
        max_t=60,
        study_name=name,
        storage=study_storage(tmp_path),
    )
    s.set_search_properties("mpjpe", "min", {"x": tune.uniform(0.0, 1.0)})
    return s


def test_the_optuna_internals_we_use_still_exist(tmp_path):
    """Fails loudly if a Ray upgrade renames what sweeps/search.py reads (_Private)."""
    s = _searcher(tmp_path)
    s.suggest("a")
    assert _Private.study(s) is not None and _Private.trial(s, "a") is not None
    assert set(_Private.known_trials(s)) == {"a"} and _Private.completed(s) == set()
    assert _Private.is_running(s, _Private.trial(s, "a"))
    for name in ("_ot_study", "_ot_trials", "_completed_trials"):
        assert name in OptunaSearch(metric="m", mode="min").__dict__


def test_stopped_diverged_complete_and_told_twice(tmp_path):
    s = _searcher(tmp_path)
    for tid in "abc":
        s.suggest(tid)
    s.on_trial_result("a", {"step": 20, "mpjpe": 50.0})
    s.on_trial_complete("a", {"step": 40, "mpjpe": 45.0})  # ASHA stopped it at 40
    s.on_trial_result("b", {"step": 20, "mpjpe": 40.0})
    s.on_trial_complete("b", {"step": 25, "mpjpe": float("nan"), "diverged": 1})
    s.on_trial_complete("c", {"step": 60, "mpjpe": 30.0})
    s.on_trial_complete("c", {"step": 60, "mpjpe": 30.0})  # again: no exception
    trials = {t.number: t for t in _Private.study(s).get_trials()}
    a, b, c = (trials[_Private.trial(s, t).number] for t in "abc")
    assert a.state == TrialState.PRUNED and a.intermediate_values == {20: 50.0, 40: 45.0}
    assert b.state == TrialState.PRUNED and b.intermediate_values[25] == DIVERGED_PENALTY
    assert c.state == TrialState.COMPLETE and c.value == 30.0


def test_a_trial_finished_before_a_driver_crash_is_not_told_again(tmp_path):
    s = _searcher(tmp_path)
    s.suggest("a")
    saved = tmp_path / "searcher.pkl"
    s.save(str(saved))  # Tune's last state save: "a" still running
    s.on_trial_complete("a", {"step": 60, "mpjpe": 30.0})  # told, then the driver dies
    s.suggest("b")  # asked after the save: unknown to the saved state
    restored = _searcher(tmp_path)
    restored.restore(str(saved))  # --resume: Tune reruns "a" from its checkpoint
    restored.on_trial_result("a", {"step": 20, "mpjpe": 31.0})
    restored.on_trial_complete("a", {"step": 60, "mpjpe": 29.0})  # UpdateFinishedTrialError before
    states = {t.number: t.state for t in _Private.study(restored).get_trials()}
    assert states[0] == TrialState.COMPLETE
    assert states[1] == TrialState.FAIL  # the orphan "b"


def test_the_journal_study_pickles(tmp_path):
    s = _searcher(tmp_path)
    s.suggest("a")
    clone = pickle.loads(pickle.dumps(s))
    assert len(_Private.study(clone).get_trials()) == 1


@pytest.mark.parametrize("n, want", [(10, 2), (32, 8), (4, 2)])
def test_tpe_startup_scales_with_the_trials(n, want):
    from sweeps.search import startup_trials
    from sweeps.spec import load_spec

    spec, _ = load_spec("cpu")
    assert startup_trials(spec, n) == want
