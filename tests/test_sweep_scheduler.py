"""The sweep's scheduler: schedule-aware rungs (the constructed case where plain ASHA stops
the trial that wins at full budget), sentinels, and rungs that survive a restart."""

from __future__ import annotations

import pytest
import ray
from ray import tune
from ray.tune.schedulers import ASHAScheduler, TrialScheduler

from sweeps.scheduler import ReadyStep, SweepASHA, pick_sentinels, rungs

# Scripted validation MPJPE per step (val every step; time_attr "step", max_t 8).
# LATE: dropout switches on at step 6: good early, hurt after, 3.8 mm at the end.
# EARLY: dropout on from step 0: worse early, best at the end (1.5 mm).
CURVES = {6: [8.0, 6.0, 5.0, 4.0, 3.5, 3.4, 4.0, 3.8], 0: [10.0, 9.0, 7.0, 3.9, 3.0, 2.5, 2.0, 1.5]}
READY = ReadyStep(val_every=1, warmup=0, schedule="step", ramp=0, rate=0.2)


def scripted(config):
    for step, value in enumerate(CURVES[config["GENERAL.dropout_warmup_step"]], 1):
        tune.report({"step": step, "mpjpe": value})


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


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
    ours = SweepASHA(ready_step=READY, sentinels=set(), state_path=tmp_path / "s.pkl", **asha)
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
    assert rungs(300, 2, 1200) == [300, 600, 1200]
    assert rungs(20, 3, 60) == [20, 60]
    s = pick_sentinels(10, 0.2, 2, seed=0)
    assert 0 in s and len(s) == 3 and s == pick_sentinels(10, 0.2, 2, seed=0)
    assert len(pick_sentinels(100, 0.2, 2, seed=1)) == 21
    assert pick_sentinels(4, 0.0, 0, seed=0) == {0}
    assert pick_sentinels(2, 0.5, 5, seed=0) == {0, 1}


class _Trial:
    def __init__(self, trial_id: str, config: dict) -> None:
        self.trial_id, self.config = trial_id, config


def test_rungs_sentinels_and_stops_survive_a_restart(tmp_path):
    def make():
        return SweepASHA(
            ready_step=None,
            sentinels={1},
            state_path=tmp_path / "state.pkl",
            metric="mpjpe",
            mode="min",
            time_attr="step",
            max_t=8,
            grace_period=2,
            reduction_factor=2,
        )

    first = make()
    trials = [_Trial(f"t{i}", {}) for i in range(3)]
    for t in trials:
        first.on_trial_add(None, t)
    assert first.on_trial_result(None, trials[0], {"step": 2, "mpjpe": 1.0}) == "CONTINUE"
    # t1 is a sentinel: worse, but it goes on
    assert first.on_trial_result(None, trials[1], {"step": 2, "mpjpe": 5.0}) == "CONTINUE"
    assert first.on_trial_result(None, trials[2], {"step": 2, "mpjpe": 9.0}) == TrialScheduler.STOP
    restarted = make()  # what --resume builds: fresh object, state loaded on first use
    restarted.on_trial_add(None, trials[0])
    assert restarted.sentinels == {"t1"} and restarted.stopped == {"t2"}
    assert restarted.trial_index == {"t0": 0, "t1": 1, "t2": 2}
    ((_, rung2),) = [(m, r) for m, r in restarted._brackets[0]._rungs if m == 2]
    assert rung2 == {"t0": -1.0, "t1": -5.0, "t2": -9.0}
    new = _Trial("t3", {})
    restarted.on_trial_add(None, new)
    assert restarted.on_trial_result(None, new, {"step": 2, "mpjpe": 7.0}) == TrialScheduler.STOP
