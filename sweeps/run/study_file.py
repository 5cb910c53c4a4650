"""The sweep's Optuna study: a ``JournalStorage`` file in the sweep folder, the storage
Optuna documents for shared file systems (NFS), which ``optuna-dashboard`` reads live.
No Ray: the searcher writes it (``sweeps/run/search.py``), the report reads it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

STUDY_FILE = "optuna.journal"  # in the sweep folder; the study is named after that folder
# the user attribute of each Optuna trial that holds its Ray Tune trial id (the run folder
# ``runs/<trial id>``, the trial in ``summary.json`` and in Aim)
RAY_TRIAL_ID = "ray_trial_id"


def study_storage(sweep_dir: Path) -> Any:
    """The sweep's Optuna storage: ``<sweep_dir>/optuna.journal`` (NFS-safe)."""
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    return JournalStorage(JournalFileBackend(str(Path(sweep_dir).resolve() / STUDY_FILE)))
