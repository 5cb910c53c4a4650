"""After a ``--resume``, the records of trials the restored Tune never knew (started after its
last state save before the driver crash) are tidied: folders set aside without their
checkpoints, Aim runs deleted, study trials kept FAIL and tagged; the sweep's own trials and
other sweeps' runs are untouched. The sweep folder is built by hand as a crash leaves it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from omegaconf import OmegaConf
from optuna.trial import TrialState
from ray import tune

from sweeps.results.leftovers import SUPERSEDED_DIR, tidy_sweep
from sweeps.run.recovery import SUPERSEDED_ATTR
from sweeps.run.search import PruneAwareOptunaSearch, _Private
from sweeps.run.study_file import study_storage

KNOWN, NEVER_REPORTED, GONE = "aaaaaaaa", "dddddddd", "bbbbbbbb"
# Trial runs of this sweep ("sw": KNOWN closed, GONE left open by the killed driver's
# workers), a run of another sweep whose trial id is not this sweep's either, a run whose
# process was killed as Aim made it (Aim's default name, nothing set) and the winner's
# training run.
WRITER = """
import os, sys
from aim import Run
for exp, trial, close in (("sw", "aaaaaaaa", 1), ("sw", "bbbbbbbb", 0), ("other", "cccccccc", 0)):
    run = Run(repo=sys.argv[1], experiment=exp, system_tracking_interval=None,
              capture_terminal_logs=False)
    run.name = f"handpose_trial_{trial}"
    run["sweep"] = {"name": exp, "trial_id": trial}
    run.track(50.0, name="mpjpe", step=10, context={"subset": "val"})
    if close:
        run.close()
born = Run(repo=sys.argv[1], system_tracking_interval=None, capture_terminal_logs=False)
best = Run(repo=sys.argv[1], experiment="sw-best", system_tracking_interval=None,
           capture_terminal_logs=False)  # best_config.yaml trained in the sweep's repo
best.name = "best-aaaaaaaa"
best["hparams"] = {"GENERAL": {"total_step": 60}}
best.close()
os._exit(0)
"""


def _searcher(sweep: Path) -> PruneAwareOptunaSearch:
    s = PruneAwareOptunaSearch(
        metric="mpjpe",
        mode="min",
        time_attr="step",
        max_t=60,
        study_name=sweep.name,
        storage=study_storage(sweep),
    )
    s.set_search_properties("mpjpe", "min", {"x": tune.uniform(0.0, 1.0)})
    return s


def _tune_dir(sweep: Path, trial: str, n: int, checkpoint: bool) -> Path:
    d = sweep / f"handpose_trial_{trial}_{n}_x=0.{n}_2026-12-07_05-00-0{n}"
    d.mkdir(parents=True)
    (d / "params.json").write_text("{}")
    if checkpoint:
        (d / "checkpoint_000000").mkdir()
        (d / "checkpoint_000000" / "state.pt").write_bytes(b"x" * 100)
    return d


def _run_dir(sweep: Path, trial: str) -> Path:
    d = sweep / "runs" / f"handpose_trial_{trial}"
    (d / "checkpoints" / "checkpoint-000010").mkdir(parents=True)
    (d / "checkpoints" / "checkpoint-000010" / "model.pt").write_bytes(b"x" * 1000)
    (d / "log.txt").write_text("10/60 ...\n")
    return d


def test_resume_leftovers_are_set_aside_deleted_and_tagged(tmp_path):
    from aim import Repo

    sweep = tmp_path / "sw"
    sweep.mkdir()
    Repo.from_path(str(sweep), init=True)
    subprocess.run([sys.executable, "-c", WRITER, str(sweep)], check=True, timeout=120)
    # the study: Tune's last save knew KNOWN; GONE was asked after it, then the driver died
    s = _searcher(sweep)
    s.suggest(KNOWN)
    s.save(str(tmp_path / "searcher.pkl"))
    s.suggest(GONE)
    restored = _searcher(sweep)
    restored.restore(str(tmp_path / "searcher.pkl"))  # --resume
    known_dir = _tune_dir(sweep, KNOWN, 1, checkpoint=True)
    quiet_dir = _tune_dir(sweep, NEVER_REPORTED, 3, checkpoint=True)
    gone_dir = _tune_dir(sweep, GONE, 2, checkpoint=True)
    for trial in (KNOWN, NEVER_REPORTED, GONE):
        _run_dir(sweep, trial)
    (sweep / "train" / f"handpose_trial_{GONE}" / "checkpoint-000010").mkdir(parents=True)
    trials = [  # as collect_trials makes them: a trial that never reported has no trial_id
        {"trial_id": KNOWN, "path": str(known_dir)},
        {"trial_id": quiet_dir.name, "path": str(quiet_dir)},
    ]
    cfg = OmegaConf.create({"AIM": {"enabled": True, "server_url": str(sweep)}})

    counts = tidy_sweep(sweep, cfg, trials)

    assert counts == {
        "folders_set_aside": 3,
        "checkpoint_bytes_deleted": 1100,
        "aim_runs_deleted": 2,
        "study_trials_tagged": 1,
    }
    aside = sweep / SUPERSEDED_DIR
    assert sorted(p.name for p in (sweep / "runs").iterdir()) == [
        f"handpose_trial_{KNOWN}",
        f"handpose_trial_{NEVER_REPORTED}",
    ]
    assert (aside / "runs" / f"handpose_trial_{GONE}" / "log.txt").is_file()
    assert not list(aside.rglob("checkpoint*"))  # nothing resumes from a superseded trial
    assert (aside / gone_dir.name / "params.json").is_file() and not gone_dir.exists()
    assert not (sweep / "train" / f"handpose_trial_{GONE}").exists()
    assert (known_dir / "checkpoint_000000").is_dir()  # the sweep's own trials keep theirs
    assert (quiet_dir / "checkpoint_000000").is_dir()
    repo = Repo.from_path(str(sweep))
    runs = {r.name: r for r in repo.iter_runs()}
    assert sorted(runs) == [f"handpose_trial_{KNOWN}"]  # closed and indexed; GONE's deleted
    names = sorted(r.name for r in repo.structured_db.runs())
    # another sweep's run and the winner's training run stay
    assert names == ["best-aaaaaaaa", f"handpose_trial_{KNOWN}", "handpose_trial_cccccccc"]
    study = _Private.study(restored)
    (fail,) = study.get_trials(states=(TrialState.FAIL,))
    assert "driver crashed" in fail.user_attrs[SUPERSEDED_ATTR]
    assert tidy_sweep(sweep, cfg, trials)["folders_set_aside"] == 0  # nothing left to tidy
