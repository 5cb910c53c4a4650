"""Aim tracking: runs open an existing repo without initialising it again. Aim's init opens
the repo index read-write, so two sweep trials initialising one repo at once failed on its
lock (RocksIOError, seen in a benchmark sweep); the sweep driver now inits it once."""

from __future__ import annotations

import os

from aim import Repo
from aim.storage.rockscontainer import RocksContainer

from handpose.config import load_config
from handpose.tracking import Tracker, init_aim_repo


def test_a_run_opens_a_repo_whose_index_another_process_holds(tmp_path):
    repo = tmp_path / "aim"
    init_aim_repo(str(repo))
    init_aim_repo(str(repo))  # idempotent
    assert Repo.exists(str(repo))
    # what a second process initialising the repo holds: the index, open read-write
    index = RocksContainer(os.path.join(repo, ".aim", "meta", "index"), read_only=False)
    index.db  # noqa: B018 (opening the db takes the lock)
    cfg = load_config("stage1-tiny", [f"AIM.server_url={repo}", "AIM.enabled=true"])
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    tracker = Tracker(cfg, run_dir)
    tracker.track(10, "train", {"total": 1.0}, to_jsonl=True)
    tracker.close()
    assert (run_dir / "metrics.jsonl").read_text().strip()
