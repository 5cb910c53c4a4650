"""The sweep replay benchmark: recorded curves through the sweep's real scheduler (no Ray
cluster, no training), the constant-budget baseline's step accounting, pool loading."""

from __future__ import annotations

import json

import pytest

from benchmarks.sweep_replay import cli as sweep_replay
from benchmarks.sweep_replay.sim import (
    Setting,
    constant_budget,
    load_pool,
    replay,
    toy_pool,
)
from handpose.errors import UserError
from sweeps.run.rungs import ReadyStep

READY = ReadyStep(val_every=2, warmup=0, schedule="step", ramp=0, rate=0.0)  # as --toy


def test_toy_replay_runs_and_writes_its_json(tmp_path, monkeypatch):
    # the machine's description imports torch (seconds); test_benchmarks.py beside it covers it
    monkeypatch.setattr(sweep_replay, "machine_info", lambda: {})
    out = tmp_path / "replay.json"
    assert sweep_replay.main(["--toy", "--out", str(out)]) == 0
    record = json.loads(out.read_text())
    assert len(record["settings"]) == 8  # rule off/on x rf 2/3 x grace 1/4, 1/9
    const = record["results"]["constant b2 k1"]  # 6 trials x 2 steps + 1 x 6 of 6 x 8
    assert [r["steps_fraction"] for r in const["per_seed"]] == [18 / 48] * 3
    assert "random search" in record["setup"]["limitation"]
    # milestones off the validations (every 2 steps), e.g. 1 and 3, compare at the
    # validations after them: each rung is labelled with the step it compares
    assert set(record["spearman_rung_vs_final"]) == {"2", "4", "6"}


def test_plain_asha_stops_the_slow_starter_schedule_aware_keeps_it():
    # f1..f4, early set the rungs; slow's dropout switches on at step 3 (ready at step 6)
    order = toy_pool()
    assert [c.name for c in order][-1] == "slow" and min(c.final for c in order) == 3.5
    plain = replay(order, Setting(False, 2.0, 2), READY, 8, 2, set())
    assert plain["stopped"]["slow"] == 4  # its 7.0 mm at step 4 vs f1's 4.5 at rung 4
    assert plain["best"] == 3.8 and plain["steps"] == 8 + 4 * 2 + 4
    aware = replay(order, Setting(True, 2.0, 2), READY, 8, 2, set())
    assert "slow" not in aware["stopped"]  # compared at rung 4 with 4.0 mm at step 6
    assert aware["best"] == 3.5 and aware["steps"] == 8 + 4 * 2 + 8
    sentinel = replay(order, Setting(False, 2.0, 2), READY, 8, 2, {5})  # slow is index 5
    assert sentinel["best"] == 3.5 and "slow" not in sentinel["stopped"]


def test_constant_budget_accounting():
    pool = toy_pool()
    # 6 trials to step 2, the 2 best there (slow 5.0, f1 6.0) to 8: 6*2 + 2*6 steps
    assert constant_budget(pool, 2, 2, 8) == {"steps": 24, "best": 3.5, "kept": ["slow", "f1"]}
    # at step 4 slow (7.0) is not among the 3 best: 6*4 + 3*4 steps, best f1's 3.8
    assert constant_budget(pool, 4, 3, 8) == {
        "steps": 36,
        "best": 3.8,
        "kept": ["f1", "f2", "f3"],
    }


def test_pool_keeps_full_budget_trials_once(tmp_path):
    def trial(tid, warmup, last, curve, baseline=False):
        return {
            "trial_id": tid,
            "overrides": {"GENERAL.dropout_warmup_step": warmup},
            "last_step": last,
            "curve": curve,
            "baseline": baseline,
        }

    full = [[2, 5.0], [4, 4.0]]
    trials = [
        trial("a", 0, 4, full, baseline=True),
        trial("a2", 0, 4, full),  # the same config again
        trial("b", 1, 2, [[2, 6.0]]),  # stopped early
        trial("c", 2, 4, [[2, 5.0], [4, None]]),  # no final value
        trial("d", 3, 4, [[2, 7.0], [4, 3.0]]),
    ]
    path = tmp_path / "summary.json"
    path.write_text(json.dumps({"total_step": 4, "trials": trials}))
    with pytest.raises(UserError, match="2 full-budget curves"):
        load_pool(path)
    trials.append(trial("e", 4, 4, [[2, 8.0], [4, 6.0]]))
    path.write_text(json.dumps({"total_step": 4, "trials": trials}))
    pool, total, overrides = load_pool(tmp_path)
    assert [c.name for c in pool] == ["a", "d", "e"] and pool[0].baseline and total == 4


def test_record_replays_the_sweep_it_trained(tmp_path, monkeypatch):
    # the glue only: run_full_budget (real training under Ray) is replaced by one that writes
    # the summary.json a full-budget sweep of 4 trials x 16 steps would (curves: 10 + i - step/4)
    from sweeps.run import tuning

    def fake_run_full_budget(preset, spec_path, seed, trials, storage, overrides):
        assert preset == "cpu"
        assert "GENERAL.total_step=16" in overrides
        (every,) = [int(o.split("=")[1]) for o in overrides if o.startswith("GENERAL.val_step=")]
        steps = sorted({*range(every, 17, every), 16})  # training validates at its last step too
        curves = [[[s, 10.0 + i - s / 4] for s in steps] for i in range(trials)]
        summary = {
            "total_step": 16,
            "trials": [
                {"trial_id": f"t{i}", "overrides": {"MODEL.handec.dropout": 0.1 * i},
                 "last_step": 16, "curve": c, "baseline": i == 0}
                for i, c in enumerate(curves)
            ],
        }  # fmt: skip
        sweep_dir = storage / f"full-seed{seed}"
        sweep_dir.mkdir(parents=True)
        (sweep_dir / "summary.json").write_text(json.dumps(summary))
        return sweep_dir, 0

    monkeypatch.setattr(sweep_replay, "run_full_budget", fake_run_full_budget)
    monkeypatch.setattr(tuning, "connect_ray", lambda dashboard: False)
    monkeypatch.setattr(sweep_replay, "machine_info", lambda: {})
    out = tmp_path / "replay.json"
    argv = ["--record", "4", "--steps", "16", "--data", str(tmp_path), "--out", str(out)]
    assert sweep_replay.main([str(tmp_path / "pool"), *argv]) == 0
    record = json.loads(out.read_text())
    assert len(record["setup"]["pool"]) == 4
    assert all(r["best"] == 6.0 for a in record["results"].values() for r in a["per_seed"])
