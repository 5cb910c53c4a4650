"""The summary's checkpoint pruning and byte count cover a data-parallel trial's checkpoints,
which Ray Train keeps in ``<sweep>/train/<trial name>/checkpoint-<step>`` (not in Tune's trial
folder); ``summary.json`` keeps each trial's Aim run hash. Fake folder layouts, no Ray."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from sweeps.results.summary import collect_trials, prune_checkpoints
from sweeps.results.trials import COMPLETED, STOPPED_EARLY, UNFINISHED
from sweeps.run.spec import PresetCfg, SweepSpec

CKPT_BYTES = 1000  # one file of this size per checkpoint


def _checkpoint(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / "model.pt").write_bytes(b"x" * CKPT_BYTES)
    return path


def _ddp_trial(sweep: Path, trial_id: str, status: str, steps=(20, 40)) -> dict:
    """A data-parallel trial as ``collect_trials`` describes it: its Tune folder holds no
    checkpoint, Ray Train's folder holds ``checkpoint-<step>`` folders (and its own files)."""
    name = f"ddp_trial_{trial_id}"
    tune_dir = sweep / f"{name}_1_dropout=0.1_2026-11-29_12-00-00"
    tune_dir.mkdir(parents=True)
    train_dir = sweep / "train" / name
    for step in steps:
        _checkpoint(train_dir / f"checkpoint-{step:07d}")
    (train_dir / "checkpoint_manager_snapshot.json").write_text("{}")
    run_dir = sweep / "runs" / name
    _checkpoint(run_dir / "checkpoints" / f"checkpoint-{steps[-1]:07d}")
    return {"trial_id": trial_id, "status": status, "path": str(tune_dir), "run_dir": str(run_dir)}


def _kept(sweep: Path, trial_id: str) -> list[str]:
    return sorted(p.name for p in (sweep / "train" / f"ddp_trial_{trial_id}").glob("checkpoint-*"))


def test_pruning_covers_ray_train_checkpoints_of_data_parallel_trials(tmp_path):
    sweep = tmp_path / "sweep"
    stopped = _ddp_trial(sweep, "aaaa0001", STOPPED_EARLY)
    done = _ddp_trial(sweep, "aaaa0002", COMPLETED, steps=(40, 80, 120))
    running = _ddp_trial(sweep, "aaaa0003", UNFINISHED)
    # a single-process trial next to them: Tune's checkpoints, as before
    tune_dir = sweep / "handpose_trial_bbbb0001_4_2026-11-29_12-00-00"
    for i in range(2):
        _checkpoint(tune_dir / f"checkpoint_{i:06d}")
    single = {"trial_id": "bbbb0001", "status": COMPLETED, "path": str(tune_dir), "run_dir": None}

    prune_checkpoints([stopped, done, running, single], keep_stopped=False)

    assert _kept(sweep, "aaaa0001") == [] and stopped["checkpoint_bytes"] == 0
    assert _kept(sweep, "aaaa0002") == ["checkpoint-0000120"]  # the latest, by step
    assert done["checkpoint_bytes"] == CKPT_BYTES
    # unfinished: Ray Train's checkpoints stay for --resume, and count
    assert _kept(sweep, "aaaa0003") == ["checkpoint-0000020", "checkpoint-0000040"]
    assert running["checkpoint_bytes"] == 2 * CKPT_BYTES
    assert [p.name for p in tune_dir.glob("checkpoint_*")] == ["checkpoint_000001"]
    assert single["checkpoint_bytes"] == CKPT_BYTES
    assert (sweep / "train" / "ddp_trial_aaaa0001" / "checkpoint_manager_snapshot.json").is_file()
    assert not list(sweep.glob("runs/*/checkpoints/*"))  # the run folders' copies


def test_a_stopped_data_parallel_trial_keeps_its_latest_when_asked(tmp_path):
    sweep = tmp_path / "sweep"
    stopped = _ddp_trial(sweep, "aaaa0001", STOPPED_EARLY)
    prune_checkpoints([stopped], keep_stopped=True)
    assert _kept(sweep, "aaaa0001") == ["checkpoint-0000040"]
    assert stopped["checkpoint_bytes"] == CKPT_BYTES


def test_the_summary_keeps_each_trials_aim_run_hash(tmp_path):
    def result(trial_id: str, aim_hash: str | None) -> SimpleNamespace:
        metrics = {"trial_id": trial_id, "step": 40, "mpjpe": 50.0}
        if aim_hash is not None:
            metrics["aim_hash"] = aim_hash
        return SimpleNamespace(
            metrics=metrics,
            config={},
            metrics_dataframe=None,
            error=None,
            checkpoint=None,
            path=str(tmp_path / trial_id),
        )

    spec = SweepSpec("t", "mpjpe", "min", PresetCfg(), {}, [])
    record = {"trial_index": {}, "sentinels": set(), "stopped": set()}
    trials = collect_trials([result("a", "f00d"), result("b", None)], spec, 40, record)
    assert {t["trial_id"]: t["aim_hash"] for t in trials} == {"a": "f00d", "b": None}
