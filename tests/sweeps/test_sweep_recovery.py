"""``--resume`` after a driver crash: a saved Tune state that names a checkpoint Tune deleted
after saving it (the trial resumes from its newest checkpoint instead of failing every retry;
real Tune), and a state the crash tore (replaced by Ray's staging copy when that is whole)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from ray import tune

from handpose.errors import UserError
from sweeps.run.recovery import load_tune_state, restore_missing_checkpoints

TOTAL = 60
REPAIR = """
from pathlib import Path
from sweeps.run.recovery import load_tune_state, restore_missing_checkpoints
def repair(sweep):
    for line in restore_missing_checkpoints(Path(sweep), load_tune_state(Path(sweep))):
        print(line)
repair"""


def _trial(config: dict[str, Any]) -> None:
    """Validates every 10 steps to ``TOTAL`` with a checkpoint holding its step; a first
    attempt (no checkpoint) fails after step 20."""
    ckpt = tune.get_checkpoint()
    start = 0
    if ckpt is not None:
        with ckpt.as_directory() as d:
            start = int((Path(d) / "step").read_text())
    for step in range(start + 10, TOTAL + 1, 10):
        d = Path(config["tmp"]) / f"{tune.get_context().get_trial_id()}-{step}"
        d.mkdir(parents=True)
        (d / "step").write_text(str(step))
        tune.report({"step": step, "mpjpe": 100.0 - step}, checkpoint=tune.Checkpoint(str(d)))
        if step == 20 and ckpt is None:
            raise RuntimeError("first attempt ends here")


def _run(tmp_path: Path, restore: bool) -> tune.ResultGrid:
    run_config = tune.RunConfig(
        name="rec",
        storage_path=str(tmp_path / "res"),
        failure_config=tune.FailureConfig(max_failures=0),
        checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
        verbose=0,
    )
    if restore:
        tuner = tune.Tuner.restore(str(tmp_path / "res" / "rec"), _trial, resume_errored=True)
    else:
        tuner = tune.Tuner(
            _trial,
            param_space={"tmp": str(tmp_path / "ckpts")},
            tune_config=tune.TuneConfig(metric="mpjpe", mode="min"),
            run_config=run_config,
        )
    return tuner.fit()


def _stale_state(tmp_path: Path) -> Path:
    """A sweep folder as a kill leaves it: Tune's saved state names checkpoint_000001
    (step 20), while on disk the trial went on to steps 30 and 40 and Tune deleted 0 and 1."""
    (first,) = _run(tmp_path, restore=False)
    assert first.error is not None
    trial_dir = Path(first.path)
    assert sorted(p.name for p in trial_dir.glob("checkpoint_*")) == [
        "checkpoint_000000",
        "checkpoint_000001",
    ]
    for i in (0, 1):
        shutil.rmtree(trial_dir / f"checkpoint_00000{i}")
    for i, step in ((2, 30), (3, 40)):
        (trial_dir / f"checkpoint_00000{i}").mkdir()
        (trial_dir / f"checkpoint_00000{i}" / "step").write_text(str(step))
    return trial_dir


def test_resume_repairs_a_checkpoint_deleted_after_the_saved_state(tmp_path, local_ray):
    trial_dir = _stale_state(tmp_path)
    sweep = tmp_path / "res" / "rec"
    # as the CLI runs it: in a fresh process, where Tune has not registered the trainable
    proc = subprocess.run(
        [sys.executable, "-c", f"{REPAIR}({str(sweep)!r})"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    (line,) = proc.stdout.strip().splitlines()
    assert "names checkpoint_000001" in line and "checkpoint_000003" in line
    # the newest moved to the name Tune knows; the newer names Tune does not know are gone
    assert sorted(p.name for p in trial_dir.glob("checkpoint_*")) == ["checkpoint_000001"]
    assert (trial_dir / "checkpoint_000001" / "step").read_text() == "40"
    assert restore_missing_checkpoints(sweep, load_tune_state(sweep)) == []  # nothing left

    (result,) = _run(tmp_path, restore=True)
    assert result.error is None, result.error
    assert result.metrics["step"] == TOTAL  # resumed from step 40: reported 50 and 60


def test_without_the_repair_tune_fails_the_trial(tmp_path, local_ray):
    # the failure the repair exists for; if a Ray upgrade restores such a trial by itself,
    # this test says so and the repair can go
    _stale_state(tmp_path)
    (result,) = _run(tmp_path, restore=True)
    assert result.error is not None and "does not exist" in str(result.error)


STATE = "experiment_state-2026-01-01_00-00-00.json"


def _torn_sweep(tmp_path: Path, monkeypatch, staged: str) -> Path:
    """A sweep folder whose state copy a kill emptied (seen at 1000 trials), and Tune's
    staging folder under a temporary Ray temp dir holding ``staged`` as its state."""
    monkeypatch.setenv("RAY_TMPDIR", str(tmp_path / "raytmp"))
    sweep = tmp_path / "res" / "big"
    sweep.mkdir(parents=True)
    (sweep / STATE).write_text("")
    staging = tmp_path / "raytmp/ray/session_1/artifacts/2026-01-01_00-00-00/big/driver_artifacts"
    staging.mkdir(parents=True)
    (staging / STATE).write_text(staged)
    (staging / "searcher-state-2026-01-01_00-00-00.pkl").write_bytes(b"searcher")
    return sweep


def test_a_torn_state_is_restored_from_rays_staging_copy(tmp_path, monkeypatch, capsys):
    sweep = _torn_sweep(tmp_path, monkeypatch, '{"trial_data": []}')
    assert load_tune_state(sweep) == {"trial_data": []}
    assert (sweep / STATE).read_text() == '{"trial_data": []}'
    assert (sweep / "searcher-state-2026-01-01_00-00-00.pkl").read_bytes() == b"searcher"
    assert "restored it from Ray's staging copy" in capsys.readouterr().out


def test_a_torn_state_without_a_whole_copy_is_a_one_line_error(tmp_path, monkeypatch):
    sweep = _torn_sweep(tmp_path, monkeypatch, '{"trial_data": [')
    with pytest.raises(UserError, match="torn by the crash") as e:
        load_tune_state(sweep)
    assert "\n" not in str(e.value)
    assert (sweep / STATE).read_text() == ""  # nothing copied
