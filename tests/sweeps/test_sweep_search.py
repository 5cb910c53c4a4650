"""The searcher against a real Optuna journal study, without Tune: PRUNED for stopped and
diverged trials, no crash on a trial Optuna already finished, orphans told FAIL on resume,
the objective's name and each trial's Ray trial id in the study, and the OptunaSearch
internals it relies on still exist."""

from __future__ import annotations

import pickle

import optuna
import pytest
from optuna.trial import TrialState
from ray import tune
from ray.tune.search.optuna import OptunaSearch

from sweeps.run.search import DIVERGED_PENALTY, PruneAwareOptunaSearch, _Private
from sweeps.run.study_file import RAY_TRIAL_ID, study_storage


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
    """Fails loudly if a Ray upgrade renames what sweeps/run/search.py reads (_Private)."""
    s = _searcher(tmp_path)
    s.suggest("a")
    assert _Private.study(s) is not None and _Private.trial(s, "a") is not None
    assert set(_Private.known_trials(s)) == {"a"} and _Private.completed(s) == set()
    assert _Private.stored(s, _Private.trial(s, "a")).state == TrialState.RUNNING
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


def _read_study(tmp_path, name="s") -> optuna.Study:
    """The study as a reader of the journal sees it (optuna-dashboard, the report)."""
    return optuna.load_study(study_name=name, storage=study_storage(tmp_path))


def test_the_study_names_its_metric_and_each_trial_its_ray_trial(tmp_path):
    """Every trial carries its Ray trial id: told COMPLETE, PRUNED and FAIL, orphaned by a
    driver crash (told FAIL on resume) and asked after the resume."""
    s = _searcher(tmp_path)
    for tid in ("t-done", "t-stopped", "t-error"):
        s.suggest(tid)
    s.on_trial_complete("t-done", {"step": 60, "mpjpe": 30.0})
    s.on_trial_complete("t-stopped", {"step": 20, "mpjpe": 45.0})  # ASHA stopped it
    s.on_trial_complete("t-error", error=True)
    saved = tmp_path / "searcher.pkl"
    s.save(str(saved))  # Tune's last state save
    s.suggest("t-orphan")  # asked, then the driver dies
    restored = _searcher(tmp_path)
    restored.restore(str(saved))  # --resume
    restored.suggest("t-after")
    restored.on_trial_complete("t-after", {"step": 40, "mpjpe": 35.0})
    study = _read_study(tmp_path)
    assert study.metric_names == ["mpjpe"]
    got = [(t.user_attrs.get(RAY_TRIAL_ID), t.state) for t in study.get_trials()]
    assert got == [
        ("t-done", TrialState.COMPLETE),
        ("t-stopped", TrialState.PRUNED),
        ("t-error", TrialState.FAIL),
        ("t-orphan", TrialState.FAIL),
        ("t-after", TrialState.PRUNED),
    ]


def test_a_resumed_study_from_before_the_names_gets_them(tmp_path):
    """A study Ray's plain OptunaSearch wrote (no objective name, no Ray trial ids) gets both
    when the sweep resumes: the name on restore, a running trial's id when first seen."""
    old = OptunaSearch(metric="mpjpe", mode="min", study_name="s", storage=study_storage(tmp_path))
    old.set_search_properties("mpjpe", "min", {"x": tune.uniform(0.0, 1.0)})
    old.suggest("a")
    saved = tmp_path / "searcher.pkl"
    old.save(str(saved))
    assert _read_study(tmp_path).metric_names is None
    restored = _searcher(tmp_path, name="other")  # a study of its own until restored
    restored.restore(str(saved))
    restored.on_trial_result("a", {"step": 20, "mpjpe": 40.0})
    study = _read_study(tmp_path)
    assert study.metric_names == ["mpjpe"]
    assert [t.user_attrs for t in study.get_trials()] == [{RAY_TRIAL_ID: "a"}]


def test_the_journal_study_pickles(tmp_path):
    s = _searcher(tmp_path)
    s.suggest("a")
    clone = pickle.loads(pickle.dumps(s))
    assert len(_Private.study(clone).get_trials()) == 1


@pytest.mark.parametrize("n, want", [(10, 2), (32, 8), (4, 2)])
def test_tpe_startup_scales_with_the_trials(n, want):
    from sweeps.run.search import startup_trials
    from sweeps.run.spec import load_spec

    spec, _ = load_spec("cpu")
    assert startup_trials(spec, n) == want


def _count_reads(monkeypatch, s) -> list[int]:
    """Counts the searcher's reads of a trial's state from the study storage."""
    storage, calls = _Private.study(s)._storage, [0]
    real = storage.get_trial

    def counted(trial_id):
        calls[0] += 1
        return real(trial_id)

    monkeypatch.setattr(storage, "get_trial", counted)
    return calls


def test_the_study_state_is_read_once_per_trial_not_per_result(tmp_path, monkeypatch):
    """The searcher reads a trial's state from the study once per trial, not on every
    result (each read replays the journal: O(results))."""
    s = _searcher(tmp_path)
    for tid in "ab":
        s.suggest(tid)
    reads = _count_reads(monkeypatch, s)
    for step in range(1, 21):
        for tid in "ab":
            s.on_trial_result(tid, {"step": step, "mpjpe": 100.0 - step})
    assert reads[0] == 2
    trials = {t.number: t for t in _Private.study(s).get_trials()}
    assert len(trials[_Private.trial(s, "a").number].intermediate_values) == 20


def test_a_restored_searcher_reads_a_trial_told_before_the_crash_again(
    tmp_path, monkeypatch, caplog
):
    """The saved searcher had read "a" as RUNNING; "a" was told COMPLETE after that save. The
    restored one must read it again (once), then neither report nor tell it."""
    s = _searcher(tmp_path)
    for tid in "ac":
        s.suggest(tid)
    s.on_trial_result("a", {"step": 20, "mpjpe": 40.0})
    s.on_trial_result("c", {"step": 20, "mpjpe": 50.0})
    saved = tmp_path / "searcher.pkl"
    s.save(str(saved))  # Tune's last state save: "a" read and still running
    s.on_trial_complete("a", {"step": 60, "mpjpe": 30.0})  # told, then the driver dies
    restored = _searcher(tmp_path)
    restored.restore(str(saved))
    reads = _count_reads(monkeypatch, restored)
    for step, value in ((40, 35.0), (60, 29.0)):  # Tune reruns "a" from its checkpoint
        restored.on_trial_result("a", {"step": step, "mpjpe": value})
        restored.on_trial_result("c", {"step": step, "mpjpe": value + 10})
    assert reads[0] == 2  # one read per trial (Optuna's tell reads on its own)
    with caplog.at_level("WARNING", logger="sweeps.run.search"):
        restored.on_trial_complete("a", {"step": 60, "mpjpe": 29.0})
        restored.on_trial_complete("c", {"step": 60, "mpjpe": 39.0})
    assert not caplog.records  # "a" not told again
    trials = {t.number: t for t in _Private.study(restored).get_trials()}
    a, c = (trials[_Private.trial(restored, t).number] for t in "ac")
    assert a.state == TrialState.COMPLETE and a.value == 30.0
    assert a.intermediate_values == {20: 40.0, 60: 30.0}  # nothing after the crash
    assert c.state == TrialState.COMPLETE and c.value == 39.0
    assert c.intermediate_values == {20: 50.0, 40: 45.0, 60: 39.0}
