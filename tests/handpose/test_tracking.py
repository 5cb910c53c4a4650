"""Aim tracking: runs open an existing repo without initialising it again (Aim's init opens
the repo index read-write, so two trials initialising one repo at once fail on its lock,
RocksIOError; the sweep driver inits it once, before the trials). Runs wait for Aim's run
table (one SQLite file) longer than SQLite's default 5 s."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from aim import Repo
from aim.storage.rockscontainer import RocksContainer

from handpose.config import load_config
from handpose.tracking import AIM_DB_WAIT_S, Tracker, init_aim_repo


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


HOLD_S = 8.0  # longer than SQLite's default wait (5 s), which 3 of 1000 sweep trials ran out


def test_a_run_waits_for_the_aim_run_table_another_process_writes(tmp_path):
    repo = tmp_path / "aim"
    init_aim_repo(str(repo))
    table = repo / ".aim" / "run_metadata.sqlite"
    holder = (
        "import sqlite3, sys, time\n"
        "c = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
        "c.execute('BEGIN EXCLUSIVE')\n"
        "print('locked', flush=True)\n"
        f"time.sleep({HOLD_S})\n"
        "c.execute('COMMIT')\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", holder, str(table)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout.readline().strip() == "locked"
        cfg = load_config("stage1-tiny", [f"AIM.server_url={repo}", "AIM.enabled=true"])
        run_dir = tmp_path / "run"
        run_dir.mkdir()
        start = time.monotonic()
        tracker = Tracker(cfg, run_dir)  # without the wait: "database is locked" after 5 s
        waited_s = time.monotonic() - start
        tracker.close()
    finally:
        proc.wait(timeout=30)
    assert 5.0 < waited_s < AIM_DB_WAIT_S
    # the run has its row in the run table
    assert [r.hash for r in Repo.from_path(str(repo)).structured_db.runs()] == [tracker.aim_hash]
