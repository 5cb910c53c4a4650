"""The --smoke sweep end to end on a local Ray (num_cpus=2): trials, ASHA, fingerprints,
summary files, the best config, and the Optuna study's view of ASHA-stopped trials."""

from __future__ import annotations

import csv
import json

import optuna
import pytest

from handpose.config import load_config
from handpose.train import train
from sweeps.dropout_warmup import main
from sweeps.run.study_file import RAY_TRIAL_ID, study_storage
from tests.helpers import data_overrides

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smoke_sweep(data_dir, tmp_path_factory, local_ray):
    storage = tmp_path_factory.mktemp("sweeps")
    code = main(
        ["--smoke", "--storage", str(storage), "--name", "smoke", *data_overrides(data_dir)]
    )
    return code, storage / "smoke"


def test_smoke_sweep_runs_and_summarises(smoke_sweep):
    code, sweep_dir = smoke_sweep
    assert code == 0
    summary = json.loads((sweep_dir / "summary.json").read_text())
    trials = summary["trials"]
    assert len(trials) == 4
    assert summary["metric"] == "mpjpe" and summary["mode"] == "min"
    statuses = [t["status"] for t in trials]
    assert "STOPPED_EARLY" in statuses, statuses  # ASHA stopped at least one trial
    assert "COMPLETED" in statuses
    assert all(
        t["last_step"] < summary["total_step"] for t in trials if t["status"] == "STOPPED_EARLY"
    )
    # one validation stream for all trials, and the summary says so
    prints = {t["val_fingerprint"] for t in trials}
    assert len(prints) == 1 and None not in prints
    assert summary["comparable"] and summary["val_fingerprints"] == sorted(prints)
    for t in trials:
        assert t["mpjpe"] > 0 and set(t["overrides"]) >= {
            "MODEL.handec.dropout",
            "LOSS.lambda_trans",
        }
        assert [s for s, _ in t["curve"]] == list(range(20, t["last_step"] + 1, 20))
    best = summary["best"]
    completed = [t for t in trials if t["status"] == "COMPLETED"]
    assert best["mpjpe"] == min(t["mpjpe"] for t in completed)
    assert best["step"] == summary["total_step"]
    rows = list(csv.DictReader(open(sweep_dir / "leaderboard.csv")))
    assert [r["trial_id"] for r in rows] == [t["trial_id"] for t in trials]
    assert float(rows[0]["mpjpe"]) <= float(rows[-1]["mpjpe"])


def test_best_config_trains(smoke_sweep, tmp_path):
    _, sweep_dir = smoke_sweep
    summary = json.loads((sweep_dir / "summary.json").read_text())
    cfg = load_config(
        str(sweep_dir / "best_config.yaml"),
        [
            "GENERAL.total_step=4",
            "GENERAL.checkpoint_step=4",
            f"GENERAL.output_dir={tmp_path}",
            "AIM.enabled=false",
        ],
    )
    for key, value in summary["best"]["overrides"].items():
        got = cfg
        for part in key.split("."):
            got = got[part]
        assert got == pytest.approx(value)
    metrics = train(cfg)
    assert metrics["step"] == 4 and metrics["val_fingerprint"] == summary["val_fingerprints"][0]


def test_optuna_study_sees_pruned_trials(smoke_sweep):
    _, sweep_dir = smoke_sweep
    summary = json.loads((sweep_dir / "summary.json").read_text())
    study = optuna.load_study(study_name="smoke", storage=study_storage(sweep_dir))
    states = sorted(t.state.name for t in study.trials)
    want = sorted(
        "PRUNED" if t["status"] == "STOPPED_EARLY" else "COMPLETE" for t in summary["trials"]
    )
    assert states == want
    assert study.metric_names == ["mpjpe"]  # optuna-dashboard's name for the objective
    ids = sorted(t.user_attrs[RAY_TRIAL_ID] for t in study.trials)
    assert ids == sorted(t["trial_id"] for t in summary["trials"])
    for t in study.trials:
        assert t.intermediate_values, "every trial reports MPJPE per step"
        assert set(t.intermediate_values) <= set(range(20, summary["total_step"] + 1, 20))
        if t.state.name == "PRUNED":
            assert max(t.intermediate_values) < summary["total_step"]


def test_every_trial_is_one_aim_run_in_the_sweep_repo(smoke_sweep):
    from aim import Repo, Run
    from aim.sdk.index_manager import RepoIndexManager

    _, sweep_dir = smoke_sweep
    summary = json.loads((sweep_dir / "summary.json").read_text())
    repo = Repo.from_path(str(sweep_dir))
    hashes = repo.list_all_runs()
    for run_hash in hashes:  # what `aim up` does with new runs before showing them
        RepoIndexManager.get_index_manager(repo).index(run_hash)
    runs = [Run(h, repo=str(sweep_dir), read_only=True) for h in hashes]
    assert len(runs) == len(summary["trials"])
    assert {r.experiment for r in runs} == {"smoke"}
    trial_ids = {t["trial_id"] for t in summary["trials"]}
    for run in runs:
        assert run["sweep"]["trial_id"] in trial_ids
        assert set(run["sweep"]["searched"]) == set(summary["trials"][0]["overrides"])
        assert run["hparams"]["GENERAL"]["val_seed"] == 42
        names = {m.name for m in run.metrics()}
        assert {"dropout_rate", "lr", "total", "loss_trans", "mpjpe", "pa_mpjpe"} <= names
        series = {(m.name, m.context.to_dict()["subset"]) for m in run.metrics()}
        assert not {("step", "train"), ("step", "val"), ("num_samples", "val")} & series
        assert ("dropout_rate", "val") not in series
        dropout = next(
            m
            for m in run.metrics()
            if m.name == "dropout_rate" and m.context.to_dict() == {"subset": "train"}
        )
        assert list(dropout.dataframe()["step"])[:2] == [10, 20], "dropout_rate every 10 steps"


def test_aim_sdk_sees_every_trial_closed_without_manual_indexing(smoke_sweep):
    from aim import Repo

    _, sweep_dir = smoke_sweep
    summary = json.loads((sweep_dir / "summary.json").read_text())
    runs = list(Repo.from_path(str(sweep_dir)).iter_runs())
    assert sorted(r["sweep"]["trial_id"] for r in runs) == sorted(
        t["trial_id"] for t in summary["trials"]
    )
    assert not any(r.active for r in runs), "ASHA-stopped and finished runs are closed"


def test_summary_states_baseline_sentinels_and_fidelity(smoke_sweep):
    _, sweep_dir = smoke_sweep
    summary = json.loads((sweep_dir / "summary.json").read_text())
    (base,) = [t for t in summary["trials"] if t["baseline"]]
    assert base["overrides"]["GENERAL.dropout_warmup_step"] == 6  # the base config's values
    assert base["overrides"]["LOSS.lambda_shape"] == 0.3 and base["status"] == "COMPLETED"
    assert summary["baseline"]["trial_id"] == base["trial_id"]
    assert summary["sentinels"] == [base["trial_id"]]  # smoke: no random sentinels
    assert summary["rungs"] == [20, 40]
    vs = summary["best_vs_baseline"]
    assert vs["diff_mm"] == pytest.approx(summary["best"]["mpjpe"] - base["mpjpe"])
    if summary["best"]["trial_id"] == base["trial_id"]:
        assert "is the baseline" in vs["sentence"]
    else:
        assert vs["noise_mm"] > 0 and "--confirm" in vs["sentence"]
        assert ("within the validation noise" in vs["sentence"]) == (not vs["beyond_noise"])
    assert [r["step"] for r in summary["fidelity"]["per_rung"]] == [20, 40]
