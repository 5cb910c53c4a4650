"""The sweep's scheduler: schedule-aware rungs (the constructed case where plain ASHA stops
the trial that wins at full budget), sentinels, and rungs that survive a restart through its
journal (replayed equal to the live state, a torn last line, bytes per event flat in the
number of trials)."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest
import ray
from ray import tune
from ray.tune.schedulers import ASHAScheduler, TrialScheduler

from sweeps.run.rungs import ReadyStep, load_record, pick_sentinels, read_journal, rungs
from sweeps.run.scheduler import SweepASHA, _AshaPrivate

# Scripted validation MPJPE per step (val every step; time_attr "step", max_t 8).
# LATE: dropout switches on at step 6: good early, hurt after, 3.8 mm at the end.
# EARLY: dropout on from step 0: worse early, best at the end (1.5 mm).
CURVES = {6: [8.0, 6.0, 5.0, 4.0, 3.5, 3.4, 4.0, 3.8], 0: [10.0, 9.0, 7.0, 3.9, 3.0, 2.5, 2.0, 1.5]}
READY = ReadyStep(val_every=1, warmup=0, schedule="step", ramp=0, rate=0.2)


def scripted(config):
    for step, value in enumerate(CURVES[config["GENERAL.dropout_warmup_step"]], 1):
        tune.report({"step": step, "mpjpe": value})


def _final_steps(scheduler, tmp_path) -> dict[int, int]:
    tuner = tune.Tuner(
        tune.with_resources(scripted, {"cpu": 1}),
        # LATE first, then EARLY: LATE's good early values set the rung cutoffs
        param_space={"GENERAL.dropout_warmup_step": tune.grid_search([6, 0])},
        tune_config=tune.TuneConfig(
            metric="mpjpe", mode="min", scheduler=scheduler, max_concurrent_trials=1
        ),
        run_config=tune.RunConfig(storage_path=str(tmp_path), verbose=0),
    )
    return {r.config["GENERAL.dropout_warmup_step"]: r.metrics["step"] for r in tuner.fit()}


def test_plain_asha_stops_the_full_budget_winner_schedule_aware_does_not(local_ray, tmp_path):
    asha = dict(time_attr="step", max_t=8, grace_period=2, reduction_factor=2)
    plain = _final_steps(ASHAScheduler(**asha), tmp_path / "plain")
    assert plain == {6: 8, 0: 2}  # the eventual winner (1.5 mm) stopped at the first rung
    ours = SweepASHA(
        ready_step=READY, sentinels=set(), state_path=tmp_path / "s.jsonl", val_every=2, **asha
    )
    assert _final_steps(ours, tmp_path / "ours") == {6: 8, 0: 8}


def test_ready_step_is_the_first_validation_after_a_full_interval_at_the_target():
    ready = ReadyStep(val_every=100, warmup=120, schedule="step", ramp=0, rate=0.1)
    assert ready({}) == 300  # target at 120, held through 120..220, next validation 300
    assert ready({"GENERAL.dropout_warmup_step": 0}) == 100
    assert ready({"GENERAL.dropout_warmup_step": 200}) == 300
    assert ready({"MODEL.handec.dropout": 0.0}) == 0  # no dropout: nothing to wait for
    linear = {"GENERAL.dropout_schedule": "linear", "GENERAL.dropout_ramp_step": 300}
    assert ready(linear) == 600  # 120 + 300 ramp, + 100


def test_sentinels_and_rungs():
    assert rungs(300, 2, 1200, 100) == [300, 600, 1200]
    assert rungs(20, 3, 60, 20) == [20, 60]
    # the cpu preset: milestones 75, 150, 300, 600 with validation every 50
    assert rungs(75, 2, 600, 50) == [100, 150, 300, 600]
    assert rungs(20, 2, 60, 50) == [50]  # 20 and 40 both compare at step 50
    assert rungs(20, 2, 80, 50) == [50, 80]  # the last step validates
    s = pick_sentinels(10, 0.2, 2, seed=0)
    assert 0 in s and len(s) == 3 and s == pick_sentinels(10, 0.2, 2, seed=0)
    assert len(pick_sentinels(100, 0.2, 2, seed=1)) == 21
    assert pick_sentinels(4, 0.0, 0, seed=0) == {0}
    assert pick_sentinels(2, 0.5, 5, seed=0) == {0, 1}


class _Trial:
    def __init__(self, trial_id: str, config: dict) -> None:
        self.trial_id, self.config = trial_id, config


def _make(path: Path) -> SweepASHA:
    return SweepASHA(
        ready_step=None,
        sentinels={1},
        state_path=path,
        val_every=2,
        metric="mpjpe",
        mode="min",
        time_attr="step",
        max_t=8,
        grace_period=2,
        reduction_factor=2,
    )


def _state(s: SweepASHA) -> dict:
    """What the journal must bring back: Ray's rungs and stop count, and ours."""
    rungs_ = [(m, dict(r)) for b in s._brackets for m, r in b._rungs]
    return dict(rungs=rungs_, n=s._num_stopped, i=s.trial_index, s=s.sentinels, x=s.stopped)


def _script(s: SweepASHA, num_trials: int, seed: int = 0) -> None:
    """``num_trials`` fake trials one after another, results at steps 2, 4, 8 (the rungs)
    until the scheduler stops them; MPJPE drawn at random, falling with the step."""
    rng = random.Random(seed)
    for i in range(num_trials):
        trial = _Trial(f"trial_{i:05d}", {})
        s.on_trial_add(None, trial)
        for step in (2, 4, 8):
            result = {"step": step, "mpjpe": rng.uniform(10.0, 20.0) / step}
            if s.on_trial_result(None, trial, result) == TrialScheduler.STOP:
                break
        s.on_trial_complete(None, trial, result)


def test_the_asha_internals_we_use_still_exist(tmp_path):
    """Fails loudly if a Ray upgrade renames or removes what sweeps/run/scheduler.py reads
    (_AshaPrivate): names the attribute and the Ray version."""
    s = _make(tmp_path / "state.jsonl")
    where = f"Ray {ray.__version__}: sweeps/run/scheduler.py _AshaPrivate reads"
    for name in ("_brackets", "_trial_info", "_num_stopped", "_time_attr", "_max_t"):
        assert name in s.__dict__, f"{where} ASHAScheduler.{name}, which this Ray lacks"
    for bracket in s._brackets:
        assert "_rungs" in bracket.__dict__, f"{where} _Bracket._rungs, which this Ray lacks"
    assert _AshaPrivate.time_attr(s) == "step" and _AshaPrivate.max_t(s) == 8
    assert _AshaPrivate.num_stopped(s) == 0
    trials = [_Trial(f"t{i}", {}) for i in range(3)]
    for t in trials:
        s.on_trial_add(None, t)
        assert _AshaPrivate.knows(s, t.trial_id), f"{where} _trial_info: trial ids as keys"
    for t, mpjpe in zip(trials, (1.0, 5.0, 9.0), strict=True):  # t1: a sentinel
        s.on_trial_result(None, t, {"step": 2, "mpjpe": mpjpe})
    milestones = [[m for m, _ in bracket] for bracket in _AshaPrivate.rungs(s)]
    assert milestones == [[8, 4, 2]], f"{where} _Bracket._rungs as [(milestone, dict)]"
    assert dict(_AshaPrivate.rungs(s)[0])[2] == {"t0": -1.0, "t1": -5.0, "t2": -9.0}, (
        f"{where} _Bracket._rungs as {{trial id: metric x -1 (mode min)}} per milestone"
    )
    assert _AshaPrivate.num_stopped(s) == 2, f"{where} _num_stopped as Ray's count of stops"
    _AshaPrivate.forget(s, "t2")
    assert not _AshaPrivate.knows(s, "t2")


def test_rungs_sentinels_and_stops_survive_a_restart(tmp_path):
    first = _make(tmp_path / "state.jsonl")
    trials = [_Trial(f"t{i}", {}) for i in range(3)]
    for t in trials:
        first.on_trial_add(None, t)
    assert first.on_trial_result(None, trials[0], {"step": 2, "mpjpe": 1.0}) == "CONTINUE"
    # t1 is a sentinel: worse, but it goes on
    assert first.on_trial_result(None, trials[1], {"step": 2, "mpjpe": 5.0}) == "CONTINUE"
    assert first.on_trial_result(None, trials[2], {"step": 2, "mpjpe": 9.0}) == TrialScheduler.STOP
    restarted = _make(tmp_path / "state.jsonl")  # what --resume builds: state on first use
    restarted.on_trial_add(None, trials[0])
    assert restarted.sentinels == {"t1"} and restarted.stopped == {"t2"}
    assert restarted.trial_index == {"t0": 0, "t1": 1, "t2": 2}
    ((_, rung2),) = [(m, r) for m, r in restarted._brackets[0]._rungs if m == 2]
    assert rung2 == {"t0": -1.0, "t1": -5.0, "t2": -9.0}
    assert restarted._num_stopped == 2  # Ray counts the sentinel's overruled stop too
    new = _Trial("t3", {})
    restarted.on_trial_add(None, new)
    assert restarted.on_trial_result(None, new, {"step": 2, "mpjpe": 7.0}) == TrialScheduler.STOP
    record = load_record(tmp_path / "state.jsonl")  # what the summary reads
    assert record == {
        "trial_index": {f"t{i}": i for i in range(4)},
        "sentinels": {"t1"},
        "stopped": {"t2", "t3"},
    }
    assert load_record(tmp_path / "none.jsonl")["trial_index"] == {}


def test_restore_from_the_journal_equals_the_live_state(tmp_path):
    live = _make(tmp_path / "state.jsonl")
    _script(live, 40)
    assert live._num_stopped >= len(live.stopped) > 0
    assert all(r for _, r in live._brackets[0]._rungs)  # every rung holds values
    restored = _make(tmp_path / "state.jsonl")
    restored.on_trial_add(None, _Trial("trial_00000", {}))  # known: nothing new written
    assert _state(restored) == _state(live)


def test_a_torn_last_line_is_dropped_and_cut_before_the_next_append(tmp_path):
    path = tmp_path / "state.jsonl"
    live = _make(path)
    _script(live, 12)
    whole = path.read_bytes()
    with open(path, "ab") as f:
        f.write(b'{"rung":4,"trial":"trial_0')  # the driver killed mid-write
    restored = _make(path)
    restored._restore_once()  # what the first call from Tune does
    assert _state(restored) == _state(live)
    restored.on_trial_add(None, _Trial("after", {}))
    assert path.read_bytes().startswith(whole + b'{"add":"after"')  # torn text cut off
    assert len(read_journal(path)[0]) == whole.count(b"\n") + 1
    garbled = tmp_path / "garbled.jsonl"  # the newline made it to disk, the text did not
    garbled.write_bytes(whole + b'{"add":\x00\x00\n')
    assert read_journal(garbled) == (read_journal(path)[0][:-1], len(whole))
    garbled.write_bytes(whole + b"not json\n{}\n")  # a bad line before the last: an error
    with pytest.raises(ValueError, match="not a JSON line"):
        read_journal(garbled)


def _bytes_written_by_this_thread() -> int:
    with open("/proc/thread-self/io") as f:  # Linux: what write() calls were handed
        return next(int(line.split()[1]) for line in f if line.startswith("wchar:"))


@pytest.mark.skipif(not os.path.exists("/proc/thread-self/io"), reason="Linux /proc only")
def test_bytes_written_per_trial_do_not_grow_with_the_number_of_trials(tmp_path):
    per_trial = {}
    for n in (10, 200):
        s = _make(tmp_path / f"state_{n}.jsonl")
        before = _bytes_written_by_this_thread()
        _script(s, n)
        per_trial[n] = (_bytes_written_by_this_thread() - before) / n
    # a few events of ~70 bytes per trial, however many trials the sweep has (a state saved
    # whole at each decision would grow with the sweep)
    assert per_trial[200] < 1.3 * per_trial[10], per_trial
    assert per_trial[200] < 400, per_trial


def test_milestones_move_to_validation_steps_and_decide_as_ray_does(tmp_path):
    """The cpu preset's rungs (grace 75, validation every 50): SweepASHA's milestones are the
    steps whose MPJPE it compares (100, not 75), and every decision equals plain ASHA's on
    the same results."""
    asha = dict(metric="mpjpe", mode="min", time_attr="step", max_t=600, grace_period=75)
    plain = ASHAScheduler(reduction_factor=2, stop_last_trials=False, **asha)
    ours = SweepASHA(
        ready_step=None,
        sentinels=set(),
        state_path=tmp_path / "s.jsonl",
        val_every=50,
        reduction_factor=2,
        stop_last_trials=False,
        **asha,
    )
    assert [m for m, _ in _AshaPrivate.rungs(ours)[0]] == [600, 300, 150, 100]
    assert [m for m, _ in plain._brackets[0]._rungs] == [600, 300, 150, 75]
    rng = random.Random(0)
    decisions = 0
    for i in range(30):
        trial = _Trial(f"t{i}", {})
        ours.on_trial_add(None, trial)
        plain.on_trial_add(None, trial)
        for step in range(50, 601, 50):
            result = {"step": step, "mpjpe": rng.uniform(40.0, 80.0) - step / 20}
            action = ours.on_trial_result(None, trial, result)
            assert action == plain.on_trial_result(None, trial, result), (i, step)
            decisions += action == TrialScheduler.STOP
            if action == TrialScheduler.STOP:
                break
    assert decisions > 5
    assert {m: len(r) for m, r in _AshaPrivate.rungs(ours)[0]}[100] == 30
