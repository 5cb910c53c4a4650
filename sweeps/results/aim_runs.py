"""The sweep's Aim runs after the trials: closed and indexed, so Aim's SDK and UI see them, and
the runs of superseded trials deleted.

A trial's run stays open when Tune stops the trial (ASHA kills its actor before
``train``'s ``finally`` runs) or its worker dies, and runs written by trial processes
reach the repo's index only when something indexes them: until then ``Repo.iter_runs()``
lists nothing. Closing a run is what ``aim runs close`` does (``Repo._close_run``: Aim has
no public call for it; ``tests/sweeps/test_sweep_smoke.py`` checks the outcome through the SDK).

An Aim server (``aim://``) indexes no run, and closes a dead client's runs only when it
stops hearing from it (5 minutes): the server's own ``_close_run`` and an index written
through it (``finalize``, what ``RepoIndexManager.index`` does) do both from the driver.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

from handpose.data.shards import is_url

_TRIAL_ID = re.compile(r"_([0-9a-f]{8})(?:_|$)")
# how long a run whose RocksDB a live process still holds (the actor of a trial Tune is
# stopping as the sweep ends) is retried before it is left open with a warning
LIVE_WRITER_WAIT_S = 30.0


def trial_id(name: str) -> str | None:
    """The Tune trial id in a run, train or Tune trial folder's name (``<trainable>_<id>``,
    ``<trainable>_<id>_<n>_<tag>_<date>``): the first 8 hex digits between underscores, what
    Tune's search generator makes; None when there is none."""
    m = _TRIAL_ID.search(name)
    return m.group(1) if m else None


def close_and_index(repo_path: str, trial_ids: set[str], wait_s: float = LIVE_WRITER_WAIT_S) -> int:
    """Close the still-open runs of the trials ``trial_ids`` in the repo at ``repo_path``
    (a local path or an ``aim://`` server) and index those the index lacks; returns how many
    runs were closed or indexed.

    A local run is named after its Tune trial, ``<trainable>_<trial id>``: the names come
    from the repo's run table in one query, not by opening every run. Runs their trial
    closed are not closed again (``_close_run`` also compacts two RocksDB containers per
    run): a run is still open while it holds its run lock (what Aim checks before copying a
    run). A run another live process still writes is retried for ``wait_s`` seconds, then
    left open with a one-line warning: tidying never fails a sweep. On a server, every run's
    own ``sweep`` attribute says its trial (one request per run: the server's run table is
    not reachable) and each of the trials' runs is indexed.
    """
    if is_url(repo_path):
        return _close_and_index_on_server(repo_path, trial_ids)
    from aim import Repo
    from aim.sdk.index_manager import RepoIndexManager
    from aim.sdk.lock_manager import LockManager

    repo = Repo.from_path(repo_path)
    index = RepoIndexManager.get_index_manager(repo)
    names = {r.hash: r.name or "" for r in repo.structured_db.runs()}
    locks = LockManager(repo.path)
    # held open for the loop: Aim's container pool is weak, so each `index` call would
    # otherwise reopen the index's RocksDB (most of its time per run). It also answers which
    # runs the index lacks: a read-only view of the index, kept in the repo's pool (for as
    # long as anything holds it: in a process that also talked to an Aim server, for good),
    # would show later readers the index as it was before this call
    index_tree = repo._get_index_tree("meta", 0)
    n = 0
    for run_hash in repo.list_all_runs():
        if names.get(run_hash, "").rsplit("_", 1)[-1] not in trial_ids:
            continue
        closing = locks.get_run_lock_info(run_hash).locked
        if closing and not _close_run(repo, run_hash, wait_s):
            continue
        if closing or index._is_run_index_outdated(run_hash, index_tree):
            index.index(run_hash)
            n += 1
    del index_tree
    return n


def _close_run(repo: Any, run_hash: str, wait_s: float) -> bool:
    """``aim runs close`` on one run (releases a dead writer's locks); False, with a warning,
    when a live process still holds the run's RocksDB after ``wait_s`` seconds."""
    from aimrocks.errors import RocksIOError

    deadline = time.monotonic() + wait_s
    while True:
        try:
            repo._close_run(run_hash)
            return True
        except RocksIOError as e:
            if time.monotonic() >= deadline:
                print(
                    f"warning: Aim run {run_hash} is still held by a live process after "
                    f"{wait_s:g} s ({str(e).strip()[:120]}); left open: `aim runs --repo "
                    f"{repo.root_path} close {run_hash}` once it has exited"
                )
                return False
            time.sleep(0.5)


def _own_meta(repo: Any, run_hash: str) -> tuple[dict[str, Any], float | None, bool]:
    """The run's ``sweep`` attribute (``{}`` if none), ``end_time`` and whether it has its
    ``hparams`` (what ``Tracker`` sets first after opening it), from the run's own meta
    container (read afresh: a server caches a container while a reader holds it);
    ``({}, None, False)`` when it cannot be read (deleted meanwhile, torn by a kill)."""
    try:
        tree = repo.request_tree("meta", run_hash, read_only=True)
        tree = tree.subtree(("meta", "chunks", run_hash))
        attrs = tree.subtree("attrs")
        sweep = attrs.get("sweep")
        has_hparams = attrs.get("hparams") is not None
        return (sweep if isinstance(sweep, dict) else {}), tree.get("end_time"), has_hparams
    except Exception:  # noqa: BLE001 - Aim raises RocksDB's or its transport's errors
        return {}, None, False


def _close_and_index_on_server(url: str, trial_ids: set[str]) -> int:
    from aim import Repo

    repo = Repo.from_path(url)
    index = repo._get_index_tree("meta", 0)
    n = 0
    for run_hash in repo.list_all_runs():
        sweep, end_time, _ = _own_meta(repo, run_hash)
        if sweep.get("trial_id") not in trial_ids:
            continue
        if end_time is None:  # the server's `aim runs close` (locks released, end_time set)
            repo._remote_repo_proxy._close_run(run_hash)
        repo.request_tree("meta", run_hash, read_only=True).finalize(index=index)
        n += 1
    return n


def delete_superseded_runs(repo_path: str, sweep_dir: Path, known: set[str]) -> int:
    """Delete the Aim runs of the sweep in ``sweep_dir`` whose trial id is not in ``known`` (a
    trial the restored Tune never knew: ``sweeps/results/leftovers.py``); returns how many.

    A run is the sweep's when its experiment (the run table's, else its own ``sweep``
    attribute's name) is the sweep's name: other sweeps sharing the repo or server are not
    touched. In the sweep's own repo (the default, ``<sweep_dir>/.aim``), a run that never
    got past Aim's constructor (no row in the run table, or Aim's default name ``Run:
    <hash>``, and no ``hparams``) is a trial process killed as it opened its run: deleted
    too. Elsewhere such a run says nothing that ties it to this sweep, and stays."""
    from aim import Repo

    repo = Repo.from_path(repo_path)
    remote = is_url(repo_path)
    own_repo = not remote and Path(repo_path).resolve() == sweep_dir.resolve()
    rows = {} if remote else {r.hash: r for r in repo.structured_db.runs()}
    n = 0
    for run_hash in repo.list_all_runs():  # cached by Aim for 0.5 s: a deleted run can be in
        row = rows.get(run_hash)
        if row is not None and not (row.name or "").startswith("Run: "):
            ours = row.experiment == sweep_dir.name
            tid = trial_id(row.name or "")
        elif remote or (Path(repo.path) / "meta" / "chunks" / run_hash / "CURRENT").is_file():
            attr, _, has_hparams = _own_meta(repo, run_hash)
            ours, tid = attr.get("name") == sweep_dir.name, attr.get("trial_id")
            if own_repo and not attr and not has_hparams:  # killed at birth
                ours, tid = True, run_hash
        else:
            continue
        if ours and tid is not None and tid not in known and repo.delete_run(run_hash):
            n += 1
    return n
