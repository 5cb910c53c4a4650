"""The sweep's Aim runs after the trials: closed and indexed, so Aim's SDK and UI see them.

A trial's run stays open when Tune stops the trial (ASHA kills its actor before
``train``'s ``finally`` runs) or its worker dies, and runs written by trial processes
reach the repo's index only when something indexes them: until then ``Repo.iter_runs()``
lists nothing. Closing a run is what ``aim runs close`` does (``Repo._close_run``: Aim has
no public call for it; ``tests/test_sweep_smoke.py`` checks the outcome through the SDK).
"""

from __future__ import annotations

from handpose.data.shards import is_url


def close_and_index(repo_path: str, trial_ids: set[str]) -> int:
    """Close and index the runs of the trials ``trial_ids`` in the local repo at
    ``repo_path`` (an ``aim://`` server does this itself); returns how many were touched.
    A run is named after its Tune trial, ``<trainable>_<trial id>``; its other attributes
    cannot be read before it is closed."""
    if is_url(repo_path):
        return 0
    from aim import Repo, Run
    from aim.sdk.index_manager import RepoIndexManager

    repo = Repo.from_path(repo_path)
    index = RepoIndexManager.get_index_manager(repo)
    n = 0
    for run_hash in repo.list_all_runs():
        name = Run(run_hash, repo=repo_path, read_only=True).name or ""
        if name.rsplit("_", 1)[-1] not in trial_ids:
            continue
        repo._close_run(run_hash)  # `aim runs close`: releases the dead writer's locks
        index.index(run_hash)
        n += 1
    return n
