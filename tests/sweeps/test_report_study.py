"""The report's hyperparameter importance and log axes (sweeps/reporting/study.py): importance
with a bootstrap interval from the sweep's study, too few finished trials, no study, and the
log keys from the sweep spec when there is no study."""

from __future__ import annotations

import time

import optuna
import yaml

from sweeps.reporting import study as study_module
from sweeps.reporting.study import MIN_FINISHED, log_keys, open_study, param_importance
from tests.helpers import REPO
from tests.sweeps.report_helpers import LOG_KEYS, SPACE, fake_trials, journal


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


def test_importance_at_a_shared_step_when_few_ran_the_full_budget(tmp_path, monkeypatch):
    """7 of 21 trials ran the full budget (fewer than 8), all 21 reported at step 20: the
    importance is of the MPJPE at step 20, with its interval, and says so."""
    monkeypatch.setattr(study_module, "RESAMPLES", 30)  # the interval, cheaply
    monkeypatch.setattr(study_module, "MIN_RESAMPLES", 30)
    sweep = tmp_path / "few"
    sweep.mkdir()
    study = optuna.create_study(study_name="few", storage=journal(sweep))
    study.add_trials(fake_trials(3 * (MIN_FINISHED - 1)))
    study, where = open_study(sweep)
    assert study is not None and "optuna.journal" in where
    imp = param_importance(study, where)
    assert (imp.n_finished, imp.step, imp.n_trials, imp.resamples) == (MIN_FINISHED - 1, 20, 21, 30)
    assert imp.rows[0]["parameter"] == "LOSS.lambda_trans"  # its value at 20 is value + 3
    assert all(r["p5"] <= r["median"] <= r["p95"] for r in imp.rows)
    assert "on the MPJPE at step 20, the latest validation step that 21 trials" in imp.note
    assert "not for the final MPJPE" in imp.note


def test_importance_too_few_and_no_study(tmp_path):
    sweep = tmp_path / "few"
    sweep.mkdir()
    no_steps = [  # no intermediate values: no shared step
        optuna.trial.create_trial(
            params=t.params, distributions=t.distributions, value=t.value, state=t.state
        )
        for t in fake_trials(3 * (MIN_FINISHED - 1))
    ]
    optuna.create_study(study_name="few", storage=journal(sweep)).add_trials(no_steps)
    study, where = open_study(sweep)
    imp = param_importance(study, where)
    assert imp.rows == [] and imp.note.startswith(
        f"too few trials for importance: {MIN_FINISHED - 1} ran the full budget"
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
