"""Sweep spec validation: bad search spaces fail before any Ray work, naming the key."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml
from omegaconf import OmegaConf

from handpose.config import load_config
from handpose.errors import ConfigError
from handpose.model import build_model
from sweeps.run.spec import SPEC_PATH, load_spec, trial_overrides, tune_space
from tests.helpers import REPO, data_overrides


def test_presets_load_and_recipe_is_a_start_point():
    spec, cfg = load_spec("cpu")
    total = cfg.GENERAL.total_step
    assert spec.space["GENERAL.dropout_warmup_step"]["high"] == round(0.6 * total)
    (recipe,) = spec.points_to_evaluate
    assert recipe["GENERAL.dropout_warmup_step"] == round(0.1 * total)
    assert recipe["MODEL.handec.dropout"] == 0.1 and recipe["LOSS.lambda_trans"] == 0.05
    assert spec.space["LOSS.lambda_trans"]["log"]
    assert set(tune_space(spec)) == set(spec.space)
    smoke, smoke_cfg = load_spec("smoke")
    assert smoke_cfg.GENERAL.total_step < total
    assert smoke.grace_period < smoke_cfg.GENERAL.total_step
    assert trial_overrides({"b.x": 1, "a.y": "s"}) == ["a.y=s", "b.x=1"]


def _spec_with(tmp_path, **space_entries):
    raw = yaml.safe_load(SPEC_PATH.read_text())
    preset = raw["presets"]["cpu"]
    preset["points_to_evaluate"] = []
    preset["space"].update(space_entries)
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.mark.parametrize(
    "entry, message",
    [
        ({"GENERAL.val_seed": {"type": "int", "low": 1, "high": 100}}, "GENERAL.val_seed"),
        ({"DATA.val.max_samples": {"type": "int", "low": 1, "high": 100}}, "DATA.val.max_samples"),
        ({"MODEL.handec.dropout": {"type": "float", "low": 0.5, "high": 0.1}}, "low=0.5 > high"),
        (
            {"MODEL.handec.dropout": {"type": "float", "low": 0.0, "high": 1.2}},
            "MODEL.handec.dropout",
        ),
        ({"LOSS.lambda_nope": {"type": "float", "low": 0.1, "high": 1}}, "LOSS.lambda_nope"),
        ({"LOSS.lambda_rel": {"type": "float", "low": 0.0, "high": 1, "log": True}}, "log range"),
        ({"LOSS.lambda_rel": {"type": "normal", "low": 0.0, "high": 1}}, "type='normal'"),
    ],
)
def test_bad_space_is_rejected(tmp_path, entry, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        load_spec("cpu", _spec_with(tmp_path, **entry))


def test_a_searched_decoder_shape_must_fit_the_decoder_checkpoint(tmp_path, recwarn):
    # the model is built on the meta device before Ray starts: the preset's shipped decoder
    # (dim 128) does not fit dim 64, and the meta-device load itself prints no warnings
    spec = _spec_with(tmp_path, **{"MODEL.handec.dim": {"type": "choice", "values": [64, 128]}})
    with pytest.raises(ConfigError, match="MODEL.handec.dim: value 64 does not build the model"):
        load_spec("cpu", spec)
    load_spec("cpu", SPEC_PATH)  # searches MODEL.handec.dropout: built with the checkpoint
    assert not [w for w in recwarn if "non-meta" in str(w.message)]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--spec", "SPEC"], "GENERAL.val_seed"),
        (["MODEL.handec.nope=3"], "MODEL.handec.nope"),
        (["--preset", "huge"], "huge"),
        (["--num-samples", "0"], "num-samples"),
        (["DATA.train.source=[/nonexistent/train-*.tar]"], "/nonexistent/train-*.tar"),
    ],
)
def test_cli_rejects_bad_input_before_ray(tmp_path, args, message):
    spec = _spec_with(tmp_path, **{"GENERAL.val_seed": {"type": "int", "low": 1, "high": 9}})
    args = [str(spec) if a == "SPEC" else a for a in args]
    proc = subprocess.run(
        [sys.executable, "sweeps/dropout_warmup.py", "--storage", str(tmp_path / "res"), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr.strip().splitlines()[-1]
    assert "Ray dashboard" not in proc.stdout  # failed before any Ray work


def test_cli_rejects_unwritable_storage_and_a_reused_name(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    used = tmp_path / "res" / "taken"
    used.mkdir(parents=True)
    (used / "sweep_state.yaml").write_text("preset: smoke\n")
    for args, message in (
        (["--storage", str(blocker / "sub")], "cannot write there"),
        (["--storage", str(tmp_path / "res"), "--name", "taken"], "already holds a sweep"),
    ):
        proc = subprocess.run(
            [sys.executable, "sweeps/dropout_warmup.py", "--smoke", *args],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 2, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and message in lines[0], proc.stderr
        assert "Ray dashboard" not in proc.stdout


def test_resume_of_a_torn_tune_state_is_a_one_line_error(tmp_path):
    sweep = tmp_path / "res" / "torn"
    sweep.mkdir(parents=True)
    (sweep / "sweep_state.yaml").write_text("preset: smoke\n")
    (sweep / "experiment_state-2026-01-01_00-00-00.json").write_text('{"trial_data": [{"a"')
    proc = subprocess.run(
        [
            sys.executable,
            "sweeps/dropout_warmup.py",
            "--resume",
            "--name",
            "torn",
            "--storage",
            str(tmp_path / "res"),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert "torn by the crash" in line and "Ray dashboard" not in proc.stdout


def test_the_default_preset_from_another_folder_opens_the_shipped_weights(tmp_path, monkeypatch):
    # the pre-flight (load_spec: paths, then the model checks) from a folder that is not the
    # repository: the checkpoints resolve to the repository's weights/, the data and outputs
    # stay where the sweep was started
    launch = tmp_path.resolve() / "launch"
    launch.mkdir()
    monkeypatch.chdir(launch)
    _, cfg = load_spec("cpu")
    assert cfg.MODEL.backbone.checkpoint == str(REPO / "weights/dinov2_vitt14_handpose.pth")
    assert cfg.MODEL.handec.checkpoint == str(REPO / "weights/handec_vitt14_handpose.pth")
    assert cfg.DATA.synthetic.dir == str(launch / "data/synthetic")
    assert cfg.DATA.val.source[0].startswith(str(launch / "data/synthetic"))
    assert cfg.GENERAL.output_dir.startswith(str(launch))
    # a trial runs in its own folder: its step 0 loads those same files
    trial_dir = tmp_path / "trial"
    trial_dir.mkdir()
    monkeypatch.chdir(trial_dir)
    build_model(load_config(OmegaConf.to_container(cfg, resolve=True)))


@pytest.mark.parametrize("key", ["MODEL.backbone.checkpoint", "MODEL.handec.checkpoint"])
def test_a_missing_weights_file_from_another_folder_is_an_error_before_ray(data_dir, tmp_path, key):
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "sweeps/dropout_warmup.py"),
            *("--smoke", "--num-samples", "1", "--num-cpus", "2"),
            *("--storage", str(tmp_path / "res")),
            f"{key}=nope.pth",
            *data_overrides(data_dir),  # no data generation if it did go on
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    (line,) = proc.stderr.strip().splitlines()
    assert "unreadable" in line and str(tmp_path.resolve() / "nope.pth") in line, line
    assert "Ray dashboard" not in proc.stdout  # failed before any Ray work
