"""Closing and indexing a sweep's Aim runs touches only what needs it: open runs of its
trials are closed, runs their trial closed are only indexed, other runs are left alone."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from sweeps.results.aim_runs import close_and_index

# One process writes three runs: trial aaa's closes itself, trial bbb's and a run of another
# sweep (zzz) stay open (their process dies without closing them, as a stopped trial's).
WRITER = """
import os, sys
from aim import Run
runs = []
for trial in ("aaa", "bbb", "zzz"):
    run = Run(repo=sys.argv[1], experiment="s", system_tracking_interval=None,
              capture_terminal_logs=False)
    run.name = f"handpose_trial_{trial}"
    run["sweep"] = {"trial_id": trial}
    for step in (10, 20):
        run.track(1.0 / step, name="mpjpe", step=step, context={"subset": "val"})
    if trial == "aaa":
        run.close()
    runs.append(run)
os._exit(0)
"""


def _files(run_dir: Path) -> dict[str, tuple[int, int]]:
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in run_dir.rglob("*")}


def test_close_and_index_closes_only_open_runs_of_the_sweep(tmp_path):
    from aim import Repo
    from aim.sdk.lock_manager import LockManager

    repo_path = str(tmp_path / "aim")
    Repo.from_path(repo_path, init=True)
    subprocess.run([sys.executable, "-c", WRITER, repo_path], check=True, timeout=120)
    repo = Repo.from_path(repo_path)
    names = {r.hash: r.name for r in repo.structured_db.runs()}
    by_trial = {name.rsplit("_", 1)[-1]: h for h, name in names.items()}
    locks = LockManager(repo.path)
    assert [t for t, h in sorted(by_trial.items()) if locks.get_run_lock_info(h).locked] == [
        "bbb",
        "zzz",
    ]
    aim_dir = tmp_path / "aim" / ".aim"
    closed = {c: _files(aim_dir / c / "chunks" / by_trial["aaa"]) for c in ("meta", "seqs")}

    assert close_and_index(repo_path, {"aaa", "bbb"}) == 2
    # the run its trial closed is not closed (and compacted) again
    assert {c: _files(aim_dir / c / "chunks" / by_trial["aaa"]) for c in closed} == closed
    repo = Repo.from_path(repo_path)
    runs = {r["sweep"]["trial_id"]: r for r in repo.iter_runs()}
    assert sorted(runs) == ["aaa", "bbb"] and not any(r.active for r in runs.values())
    assert locks.get_run_lock_info(by_trial["zzz"]).locked  # another sweep's open run: untouched
    assert close_and_index(repo_path, {"aaa", "bbb"}) == 0  # nothing left to do


# Writes one run of trial ccc and keeps it open, its RocksDB locked, for argv[2] seconds
# (the actor of a trial Tune is still stopping when the sweep ends), then dies without
# closing it.
HOLDER = """
import os, sys, time
from pathlib import Path
from aim import Run
run = Run(repo=sys.argv[1], experiment="s", system_tracking_interval=None,
          capture_terminal_logs=False)
run.name = "handpose_trial_ccc"
run["sweep"] = {"trial_id": "ccc"}
run.track(1.0, name="mpjpe", step=10, context={"subset": "val"})
Path(sys.argv[3]).write_text(run.hash)
time.sleep(float(sys.argv[2]))
os._exit(0)
"""


def _hold(repo_path: str, seconds: float, ready: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, repo_path, str(seconds), str(ready)])
    deadline = time.monotonic() + 120
    while not ready.exists():
        assert proc.poll() is None and time.monotonic() < deadline, "the holder did not start"
        time.sleep(0.2)
    return proc


def test_a_run_a_live_process_holds_is_waited_for_then_left_open_without_failing(tmp_path, capsys):
    from aim import Repo

    repo_path = str(tmp_path / "aim")
    Repo.from_path(repo_path, init=True)
    holder = _hold(repo_path, 600, tmp_path / "ready")
    try:
        run_hash = (tmp_path / "ready").read_text()
        assert close_and_index(repo_path, {"ccc"}, wait_s=1.0) == 0  # no exception either
        out = capsys.readouterr().out
        assert f"warning: Aim run {run_hash} is still held by a live process" in out
        assert f"aim runs --repo {repo_path} close {run_hash}" in out
    finally:
        holder.kill()
        holder.wait()
    assert close_and_index(repo_path, {"ccc"}, wait_s=1.0) == 1  # its writer gone: closed


def test_a_run_whose_writer_exits_while_waited_for_is_closed(tmp_path):
    from aim import Repo

    repo_path = str(tmp_path / "aim")
    Repo.from_path(repo_path, init=True)
    holder = _hold(repo_path, 2, tmp_path / "ready")
    assert close_and_index(repo_path, {"ccc"}, wait_s=60.0) == 1
    holder.wait(timeout=60)
    (run,) = Repo.from_path(repo_path).iter_runs()
    assert not run.active
