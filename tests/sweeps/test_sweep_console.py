"""The sweep's console: one line per trial event (``TrialEvents`` driven by fake trials, no
Ray cluster) and the full trial table at most every 2 minutes and at the end."""

from __future__ import annotations

import tempfile
from types import SimpleNamespace
from typing import Any

import cloudpickle

from sweeps.run.console import TrialEvents
from sweeps.run.tuning import progress_reporter

KEYS = ["GENERAL.dropout_warmup_step", "MODEL.handec.dropout", "LOSS.lambda_trans"]


class _Wrapped(Exception):
    """Ray's wrapper of a trial's exception (``RayTaskError``): the original is ``cause``."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__("ray::ImplicitFunc.train() (pid=1, ip=10.0.0.1)\nTraceback ...")
        self.cause = cause


class _Trial(SimpleNamespace):
    """The parts of a Tune ``Trial`` that the callback reads."""

    def __init__(self, trial_id: str, config: dict[str, Any], error: Exception | None = None):
        super().__init__(
            trial_id=trial_id,
            config=config,
            last_result={},
            max_failures=2,
            run_metadata=SimpleNamespace(num_failures=0),
            error_file=f"/sweep/{trial_id}/error.txt",
            pickled_error_file=None,
        )
        if error is not None:  # as Tune's handle_error leaves it in the trial's local folder
            with tempfile.NamedTemporaryFile("wb", suffix=".pkl", delete=False) as f:
                cloudpickle.dump(error, f)
            self.pickled_error_file = f.name

    def result(self, cb: TrialEvents, **result: Any) -> None:
        """Tune's order: the callback sees a result, then the trial keeps it as its last."""
        cb.on_trial_result(0, [], self, result)
        self.last_result = result


def test_one_line_per_trial_event(capsys):
    asha = SimpleNamespace(stopped=set(), sentinels={"bbbb0002"}, trial_index={})
    cb = TrialEvents(KEYS, "mpjpe", [20, 40], asha)
    base = _Trial("aaaa0001", {KEYS[0]: 6, KEYS[1]: 0.1, KEYS[2]: 0.05})
    sentinel = _Trial("bbbb0002", {KEYS[0]: 3, KEYS[1]: 0.2345678, KEYS[2]: 0.0123456})
    weak = _Trial("cccc0003", {KEYS[0]: 0, KEYS[1]: 0.3, KEYS[2]: 0.4})
    boom = _Trial("dddd0004", {KEYS[0]: 1}, error=_Wrapped(RuntimeError("cannot start\nmore")))
    nan = _Trial("eeee0005", {KEYS[0]: 2})
    asha.trial_index.update({t.trial_id: i for i, t in enumerate([base, sentinel, weak])})

    for t in (base, sentinel, weak):
        cb.on_trial_start(0, [], t)
    base.result(cb, step=20, mpjpe=56.2149)
    weak.result(cb, step=20, mpjpe=70.0)
    base.result(cb, step=60, mpjpe=50.19)
    cb.on_trial_complete(0, [], base)
    weak.result(cb, step=30, mpjpe=71.5)  # ready at step 30: rung 20 compares step 30's value
    asha.stopped.add(weak.trial_id)
    cb.on_trial_complete(0, [], weak)
    cb.on_trial_start(0, [], boom)
    boom.run_metadata.num_failures = 1
    cb.on_trial_recover(0, [], boom)
    cb.on_trial_start(0, [], boom)
    boom.run_metadata.num_failures = 3
    cb.on_trial_error(0, [], boom)
    nan.result(cb, step=40, mpjpe=float("nan"), diverged=1, error="NonFiniteLossError: loss")
    cb.on_trial_complete(0, [], nan)

    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        "trial aaaa0001 started (baseline): warmup=6 dropout=0.1 trans=0.05",
        "trial bbbb0002 started (sentinel): warmup=3 dropout=0.235 trans=0.0123",
        "trial cccc0003 started: warmup=0 dropout=0.3 trans=0.4",
        "trial aaaa0001 validated: MPJPE 56.21 mm at step 20",
        "trial cccc0003 validated: MPJPE 70.00 mm at step 20",
        "trial aaaa0001 validated: MPJPE 50.19 mm at step 60",
        "trial aaaa0001 finished: MPJPE 50.19 mm at step 60",
        "trial cccc0003 validated: MPJPE 71.50 mm at step 30",
        "trial cccc0003 stopped by ASHA at rung 20: MPJPE 71.50 mm at step 30",
        "trial dddd0004 started: warmup=1",
        "trial dddd0004 failed, retry 1 of 2: RuntimeError: cannot start",
        "trial dddd0004 restarted: warmup=1",
        "trial dddd0004 errored: RuntimeError: cannot start",
        "trial eeee0005 diverged at step 40: NonFiniteLossError: loss",
    ]


def test_the_trial_table_at_most_every_two_minutes_and_at_the_end(monkeypatch):
    import ray.tune.progress_reporter as pr

    reporter = progress_reporter(SimpleNamespace(space=dict.fromkeys(KEYS)))
    now = [1000.0]
    monkeypatch.setattr(pr.time, "time", lambda: now[0])
    assert reporter.should_report([])  # the first table, at the start
    for seconds in (15.0, 60.0, 119.0):
        now[0] = 1000.0 + seconds
        assert not reporter.should_report([]), seconds
    assert reporter.should_report([], done=True)  # and at the end, whenever it comes
    now[0] = 1121.0
    assert reporter.should_report([])
