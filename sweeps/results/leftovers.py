"""What a ``--resume`` leaves behind, tidied at the end of the sweep (:func:`tidy_sweep`).

A driver killed after Tune's last state save leaves trials that started since unknown to the
restored Tune: it runs new trials (new ids) in their place. The first ones left records of
their own: a run folder ``runs/<trainable>_<id>/``, a Tune trial folder with checkpoints,
for data-parallel trials ``train/<trainable>_<id>/``, an Aim run and a study trial. With
``--resume`` each is handled so that the sweep's records match its trials one to one:

- the study trial: kept, told FAIL and tagged ``superseded`` with the reason by the
  searcher's ``restore`` (``sweeps/run/search.py``; a user attribute optuna-dashboard shows):
  the study is the search's history, and TPE ignores FAIL trials;
- the Aim run: deleted (Aim's UI and SDK have no hidden state short of deletion; the run
  folder set aside keeps the same metrics in ``metrics.jsonl``);
- the folders: moved to ``<sweep>/superseded/`` with their checkpoints deleted (nothing
  resumes from them); the logs stay for whoever looks into the crash.

A trial is the sweep's when the final results know its id (:func:`known_trials`).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from sweeps.results.aim_runs import close_and_index, delete_superseded_runs, trial_id
from sweeps.run.recovery import SUPERSEDED_ATTR
from sweeps.run.study_file import STUDY_FILE, study_storage

SUPERSEDED_DIR = "superseded"  # in the sweep folder


def known_trials(trials: list[dict[str, Any]]) -> set[str]:
    """The ids of ``trials`` (the summary's): each reported ``trial_id`` and the id in the
    name of its Tune trial folder (``path``; a trial that never reported has no id)."""
    return {t["trial_id"] for t in trials} | {trial_id(Path(t["path"]).name) for t in trials}


def superseded_folders(sweep_dir: Path, known: set[str]) -> list[Path]:
    """The folders of trials not ``known``: run folders (``runs/``), Ray Train folders
    (``train/``) and Tune trial folders (those holding Tune's ``params.json``)."""
    found = [d for sub in ("runs", "train") for d in sorted((sweep_dir / sub).glob("*"))]
    found += sorted(p.parent for p in sweep_dir.glob("*/params.json"))
    return [d for d in found if d.is_dir() and trial_id(d.name) not in (None, *known)]


def set_aside(sweep_dir: Path, folders: list[Path]) -> int:
    """Move ``folders`` to ``<sweep_dir>/superseded/`` (same relative path), their checkpoints
    deleted first (``checkpoints/``, Tune's ``checkpoint_*``, Ray Train's ``checkpoint-*``);
    returns the bytes of checkpoints deleted."""
    freed = 0
    for folder in folders:
        for ckpt in [*folder.glob("checkpoint[_-]*"), folder / "checkpoints"]:
            if ckpt.is_dir():
                freed += sum(f.stat().st_size for f in ckpt.rglob("*") if f.is_file())
                shutil.rmtree(ckpt, ignore_errors=True)
        dest = sweep_dir / SUPERSEDED_DIR / folder.relative_to(sweep_dir)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(dest, ignore_errors=True)  # a second --resume may set aside again
        folder.rename(dest)
    return freed


def tagged_study_trials(sweep_dir: Path) -> int:
    """The study trials the searcher tagged ``superseded`` (0 without a study)."""
    if not (sweep_dir / STUDY_FILE).is_file():
        return 0
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name=sweep_dir.name, storage=study_storage(sweep_dir))
    return sum(SUPERSEDED_ATTR in t.user_attrs for t in study.get_trials(deepcopy=False))


def tidy_sweep(sweep_dir: Path, base_cfg: DictConfig, trials: list[dict[str, Any]]) -> dict:
    """After the sweep: the records of trials the results do not know set aside (folders),
    deleted (Aim runs) or counted (study trials the searcher tagged), then the trials' Aim
    runs closed and indexed. Returns the counts (``summary.json``'s ``superseded``) and
    prints one line when there was anything to tidy."""
    known = known_trials(trials)
    folders = superseded_folders(sweep_dir, known)
    counts = {
        "folders_set_aside": len(folders),
        "checkpoint_bytes_deleted": set_aside(sweep_dir, folders),
        "aim_runs_deleted": 0,
        "study_trials_tagged": tagged_study_trials(sweep_dir),
    }
    if base_cfg.AIM.enabled:
        url = base_cfg.AIM.server_url
        close_and_index(url, {t["trial_id"] for t in trials})
        # last: a server reading a deleted run's meta would make its folder again
        counts["aim_runs_deleted"] = delete_superseded_runs(url, sweep_dir, known)
    if counts["folders_set_aside"] or counts["aim_runs_deleted"]:
        print(
            f"superseded trials (started before a driver crash, run again by --resume): "
            f"{counts['folders_set_aside']} folders moved to {sweep_dir / SUPERSEDED_DIR} "
            f"(checkpoints deleted), {counts['aim_runs_deleted']} Aim runs deleted, "
            f"{counts['study_trials_tagged']} study trials tagged '{SUPERSEDED_ATTR}'"
        )
    return counts
