"""The sweep's Aim runs after the trials: closed and indexed, so Aim's SDK and UI see them.

A trial's run stays open when Tune stops the trial (ASHA kills its actor before
``train``'s ``finally`` runs) or its worker dies, and runs written by trial processes
reach the repo's index only when something indexes them: until then ``Repo.iter_runs()``
lists nothing. Closing a run is what ``aim runs close`` does (``Repo._close_run``: Aim has
no public call for it; ``tests/sweeps/test_sweep_smoke.py`` checks the outcome through the SDK).
"""

from __future__ import annotations

from handpose.data.shards import is_url


def close_and_index(repo_path: str, trial_ids: set[str]) -> int:
    """Close the still-open runs of the trials ``trial_ids`` in the local repo at
    ``repo_path`` (an ``aim://`` server does this itself) and index those the index lacks;
    returns how many runs were closed or indexed.

    A run is named after its Tune trial, ``<trainable>_<trial id>``: the names come from
    the repo's run table in one query, not by opening every run. Runs their trial closed
    are not closed again (``_close_run`` also compacts two RocksDB containers per run):
    a run is still open while it holds its run lock (what Aim checks before copying a run).
    """
    if is_url(repo_path):
        return 0
    from aim import Repo
    from aim.sdk.index_manager import RepoIndexManager
    from aim.sdk.lock_manager import LockManager

    repo = Repo.from_path(repo_path)
    index = RepoIndexManager.get_index_manager(repo)
    names = {r.hash: r.name or "" for r in repo.structured_db.runs()}
    locks = LockManager(repo.path)
    index_db = repo.request_tree("meta", read_only=True)
    # held open for the loop: Aim's container pool is weak, so each `index` call would
    # otherwise reopen the index's RocksDB (most of its time per run)
    index_tree = repo._get_index_tree("meta", 0)
    n = 0
    for run_hash in repo.list_all_runs():
        if names.get(run_hash, "").rsplit("_", 1)[-1] not in trial_ids:
            continue
        closing = locks.get_run_lock_info(run_hash).locked
        if closing:
            repo._close_run(run_hash)  # `aim runs close`: releases the dead writer's locks
        if closing or index._is_run_index_outdated(run_hash, index_db):
            index.index(run_hash)
            n += 1
    del index_tree
    return n
