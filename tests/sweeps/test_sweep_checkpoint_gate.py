"""A trial hands Tune a checkpoint at most every ``checkpoint_interval_s`` (and always at its
last validation); the others are reported without one and deleted from the run folder."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

import sweeps.run.trainable as trainable
from sweeps.run.spec import SPEC_PATH, PresetCfg, load_spec
from sweeps.run.trainable import CheckpointGate


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch) -> Clock:
    c = Clock()
    monkeypatch.setattr("sweeps.run.trainable.time.monotonic", c)
    return c


def test_gate_hands_one_checkpoint_per_interval_and_always_the_last(clock):
    gate = CheckpointGate(10.0, final_step=60)
    handed = []
    for step, dt in [(10, 4), (20, 7), (30, 4), (40, 4), (50, 4), (60, 1)]:
        clock.now += dt
        handed.append(gate(step))
    # 10 at 4 s from the start; 20 at 11 s; 30, 40 within 10 s of it; 50 at 12 s; 60 the last
    assert handed == [False, True, False, False, True, True]
    every = CheckpointGate(0.0, final_step=50)
    assert all(every(s) for s in (10, 20, 30))


def test_spec_sets_the_interval(tmp_path):
    raw = yaml.safe_load(SPEC_PATH.read_text())
    assert load_spec("cpu")[0].checkpoint_interval_s == PresetCfg().checkpoint_interval_s
    raw["presets"]["cpu"]["checkpoint_interval_s"] = 0
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(raw))
    assert load_spec("cpu", path)[0].checkpoint_interval_s == 0


def test_trial_reports_ungated_validations_without_checkpoint(clock, tmp_path, monkeypatch):
    steps, dt_s = (10, 20, 30, 40), 6.0

    def fake_train(cfg, hook, run_dir, aim_extra):
        for step in steps:
            clock.now += dt_s
            ckpt = Path(run_dir) / "checkpoints" / f"checkpoint-{step:07d}"
            ckpt.mkdir(parents=True)
            hook({"step": step, "mpjpe": 100.0 - step}, ckpt)

    monkeypatch.setattr(trainable, "train", fake_train)
    monkeypatch.setattr(
        trainable.ray, "get_runtime_context", lambda: SimpleNamespace(get_node_id=lambda: "n")
    )
    reported = []
    base = {"GENERAL": {"total_step": 40}}
    monkeypatch.setattr(trainable, "load_config", lambda base, **_: _cfg(base))
    trial = {"name": "t", "experiment": "e", "id": "i"}
    run_dir = tmp_path / "run"
    trainable._run_trial(
        {}, base, run_dir, trial, lambda m, c: reported.append((m["step"], c)), None, 10.0
    )
    handed = [(s, c is not None) for s, c in reported]
    # 6 s from the start; 12 s; 6 s since; the last step
    assert handed == [(10, False), (20, True), (30, False), (40, True)]
    for step, ckpt in reported:
        if ckpt is not None:
            assert Path(ckpt.path).name == f"checkpoint-{step:07d}"
    # one copy: the run folder keeps none, handed or not
    assert not list(run_dir.glob("checkpoints/checkpoint-*"))


def _cfg(base: dict) -> SimpleNamespace:
    return SimpleNamespace(GENERAL=SimpleNamespace(total_step=base["GENERAL"]["total_step"]))
