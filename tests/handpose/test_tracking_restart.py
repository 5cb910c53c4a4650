"""The Tracker of a run started afresh in a folder an earlier attempt wrote to (a sweep trial
killed before its first checkpoint and retried from scratch) leaves one run: one
``metrics.jsonl``, one Aim run; a hanging Aim close does not hang the run; a sweep trial
reports its Aim run's hash."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from omegaconf import OmegaConf

from handpose import tracking
from handpose.config import load_config
from handpose.tracking import AIM_HASH_FILE, Tracker, init_aim_repo
from tests.helpers import REPO, tiny_overrides

# The earlier attempt: tracks two validations, then its process dies without closing
# anything (its Aim run keeps its locks, as a killed trial's).
KILLED = """
import os, sys
from pathlib import Path
from handpose.config import load_config
from handpose.tracking import Tracker
cfg = load_config("stage1-tiny", [f"AIM.server_url={sys.argv[1]}", "AIM.enabled=true"])
tracker = Tracker(cfg, Path(sys.argv[2]))
for step in (10, 20):
    tracker.track(step, "val", {"mpjpe": 100.0 - step}, to_jsonl=True)
os._exit(0)
"""


@pytest.fixture
def aim_cfg(tmp_path):
    repo = tmp_path / "aim"
    init_aim_repo(str(repo))
    return load_config("stage1-tiny", [f"AIM.server_url={repo}", "AIM.enabled=true"])


def _val_lines(run_dir: Path) -> list[str]:
    return (run_dir / "metrics.jsonl").read_text().splitlines()


def test_a_run_started_afresh_replaces_its_earlier_attempt(aim_cfg, tmp_path):
    from aim import Repo

    repo = aim_cfg.AIM.server_url
    run_dir = tmp_path / "trial_a"
    run_dir.mkdir()
    subprocess.run(
        [sys.executable, "-c", KILLED, repo, str(run_dir)], check=True, cwd=REPO, timeout=120
    )
    (earlier,) = Repo.from_path(repo).list_all_runs()
    assert len(_val_lines(run_dir)) == 2

    tracker = Tracker(aim_cfg, run_dir)  # no checkpoint: from scratch, same folder
    tracker.track(10, "val", {"mpjpe": 50.0}, to_jsonl=True)
    tracker.close()
    new = tracker.aim_hash
    assert _val_lines(run_dir) == ['{"step": 10, "split": "val", "mpjpe": 50.0}']
    aim_repo = Repo.from_path(repo)
    assert [(r.hash, r.name) for r in aim_repo.structured_db.runs()] == [(new, "trial_a")]
    time.sleep(0.6)  # Aim caches a repo's list of run folders for 0.5 s
    assert aim_repo.list_all_runs() == [new] != [earlier]  # the earlier run's data is gone
    assert (run_dir / AIM_HASH_FILE).read_text().strip() == new

    # a resume (a checkpoint's hash and step) continues that run and deletes nothing
    resumed = Tracker(aim_cfg, run_dir, aim_hash=new, resume_step=10)
    resumed.track(20, "val", {"mpjpe": 40.0}, to_jsonl=True)
    resumed.close()
    time.sleep(0.6)
    assert resumed.aim_hash == new and aim_repo.list_all_runs() == [new]
    assert len(_val_lines(run_dir)) == 2


def test_a_hanging_aim_close_does_not_hang_the_run(aim_cfg, tmp_path, monkeypatch):
    tracker = Tracker(aim_cfg, tmp_path)
    release = threading.Event()
    real_close = tracker.aim_run.close
    # Aim's Run.close waiting on a status-reporter flush that never comes
    monkeypatch.setattr(tracker.aim_run, "close", lambda: release.wait())
    monkeypatch.setattr(tracking, "AIM_CLOSE_TIMEOUT_S", 0.5)
    warnings: list[str] = []
    monkeypatch.setattr(tracking.LOG, "warning", warnings.append)
    closing = threading.Thread(target=tracker.close, daemon=True)  # the test must not hang
    t0 = time.monotonic()
    closing.start()
    closing.join(10)
    returned, took = not closing.is_alive(), time.monotonic() - t0
    release.set()  # no thread left waiting at exit
    closing.join(10)
    real_close()
    assert returned and took < 5, took
    assert len(warnings) == 1 and tracker.aim_hash in warnings[0], warnings
    assert "did not close within 0.5 s" in warnings[0]


def test_an_error_closing_the_aim_run_reaches_the_caller(aim_cfg, tmp_path, monkeypatch):
    tracker = Tracker(aim_cfg, tmp_path)
    real_close = tracker.aim_run.close

    def broken_close():
        real_close()
        raise OSError("disk full")

    monkeypatch.setattr(tracker.aim_run, "close", broken_close)
    with pytest.raises(OSError, match="disk full"):
        tracker.close()


def test_a_sweep_trial_reports_its_aim_run(data_dir, tmp_path, monkeypatch):
    import handpose.config
    import handpose.train
    from sweeps.run import trainable

    node = SimpleNamespace(get_node_id=lambda: "node")  # no Ray here: the trial's node id
    monkeypatch.setattr(trainable.ray, "get_runtime_context", lambda: node)
    cfg = load_config("stage1-tiny", tiny_overrides(data_dir, tmp_path, steps=2))
    validations = []  # the trial's config is validated once, where it is built
    for module in (handpose.config, handpose.train):
        real = module.validate
        monkeypatch.setattr(module, "validate", lambda c, v=real: validations.append(1) or v(c))
    init_aim_repo(cfg.AIM.server_url)
    run_dir = tmp_path / "handpose_trial_x"
    reports: list[dict] = []
    trainable._run_trial(
        {},
        OmegaConf.to_container(cfg, resolve=True),
        run_dir,
        {"name": run_dir.name, "experiment": "s", "id": "x"},
        lambda metrics, ckpt: reports.append(metrics),
        None,
        0.0,
    )
    assert len(validations) == 1
    run_hash = (run_dir / AIM_HASH_FILE).read_text().strip()
    assert reports and [r["aim_hash"] for r in reports] == [run_hash] * len(reports)
    assert "aim_hash" not in (run_dir / "metrics.jsonl").read_text()  # the hook's, not a metric
