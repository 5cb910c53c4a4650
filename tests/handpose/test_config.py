"""The config system: defaults <- YAML <- overrides, struct mode, validation, exit 2."""

from __future__ import annotations

import subprocess
import sys

import pytest
from omegaconf import OmegaConf
from omegaconf.errors import ConfigAttributeError

from handpose.config import Config, is_validated, load_config, parse_override
from handpose.errors import ConfigError
from tests.helpers import REPO


def test_recipes_load_with_their_values():
    large = load_config("stage1-dino_large")
    assert large.GENERAL.total_step == 100000
    assert large.GENERAL.checkpoint_step == 3000
    assert large.GENERAL.dropout_warmup_step == 10000
    assert large.GENERAL.val_seed == 42
    assert large.TRAIN.mixed_precision == "bf16"
    assert large.MODEL.backbone.arch == "vit_large"
    lam = large.LOSS
    assert (
        lam.lambda_theta,
        lam.lambda_shape,
        lam.lambda_trans,
        lam.lambda_rel,
        lam.lambda_img,
    ) == (3.0, 3.0, 0.05, 0.012, 0.002)
    tiny = load_config("stage1-tiny")
    assert tiny.MODEL.backbone.arch == "vit_tiny"


def test_overrides_are_typed_and_merged_last():
    cfg = load_config(
        "stage1-tiny",
        [
            "LOSS.lambda_trans=0.1",
            "GENERAL.dropout_schedule=linear",
            "DATA.train.source=[a/*.tar,b/*.tar]",
        ],
    )
    assert cfg.LOSS.lambda_trans == pytest.approx(0.1)
    assert cfg.GENERAL.dropout_schedule == "linear"
    assert list(cfg.DATA.train.source) == ["a/*.tar", "b/*.tar"]
    assert parse_override("GENERAL.resume_path=null") == ("GENERAL.resume_path", None)


@pytest.mark.parametrize(
    "override, key",
    [
        ("GENERAL.not_a_key=1", "GENERAL.not_a_key"),
        ("MODEL.handec.dropout=1.0", "MODEL.handec.dropout"),
        ("MODEL.handec.dropout=-0.1", "MODEL.handec.dropout"),
        ("GENERAL.total_step=-5", "GENERAL.total_step"),
        ("GENERAL.dropout_warmup_step=-1", "GENERAL.dropout_warmup_step"),
        ("GENERAL.total_step=abc", "GENERAL.total_step"),
        ("GENERAL.dropout_schedule=exp", "GENERAL.dropout_schedule"),
        ("LOSS.lambda_trans=-1", "LOSS.lambda_trans"),
    ],
)
def test_bad_values_name_the_key(override, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config("stage1-tiny", [override])


def test_unknown_yaml_key_is_rejected(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("GENERAL:\n  total_stepz: 10\n")
    with pytest.raises(ConfigError, match="total_stepz"):
        load_config(str(bad))


def test_older_config_without_new_keys_gets_defaults(tmp_path):
    old = tmp_path / "old.yaml"
    old.write_text(
        "GENERAL:\n  total_step: 50\n  checkpoint_step: 10\nLOSS:\n  lambda_trans: 0.05\n"
    )
    cfg = load_config(str(old))
    assert cfg.GENERAL.dropout_warmup_step == 10000
    assert cfg.GENERAL.val_seed == 42
    assert cfg.GENERAL.val_step is None


def test_one_builder_from_a_name_a_container_or_a_built_config():
    cfg = load_config("stage1-tiny", ["TRAIN.lr=0.001"], {"LOSS.lambda_trans": 0.1})
    assert is_validated(cfg) and cfg.TRAIN.lr == 0.001 and cfg.LOSS.lambda_trans == 0.1
    again = load_config(OmegaConf.to_container(cfg, resolve=True), params={"TRAIN.lr": 0.002})
    assert is_validated(again) and again.TRAIN.lr == 0.002 and cfg.TRAIN.lr == 0.001
    copied = load_config(cfg, params={"MODEL.handec.dropout": 0.2})  # a copy: cfg unchanged
    assert copied.MODEL.handec.dropout == 0.2 and cfg.MODEL.handec.dropout != 0.2
    assert OmegaConf.to_container(load_config(cfg)) == OmegaConf.to_container(cfg)
    with pytest.raises(ConfigError, match="MODEL.handec.dropout"):
        load_config(cfg, params={"MODEL.handec.dropout": 1.5})
    with pytest.raises(ConfigError, match="saved.yaml: bad config key GENERAL.total_stepz"):
        load_config({"GENERAL": {"total_stepz": 1}}, origin="saved.yaml")
    assert not is_validated(OmegaConf.structured(Config))  # made by hand: train validates it


def test_struct_mode_rejects_new_attributes():
    cfg = load_config("stage1-tiny")
    assert OmegaConf.is_struct(cfg)
    with pytest.raises(ConfigAttributeError):
        cfg.GENERAL.surprise = 1


def test_cli_bad_input_is_one_line_and_exit_2():
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "handpose.train",
            "--config-name",
            "stage1-tiny",
            "MODEL.handec.dropout=1.5",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "MODEL.handec.dropout" in lines[0]
    proc = subprocess.run(
        [sys.executable, "-m", "handpose.train", "--config-name", "nope"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2 and "nope" in proc.stderr


@pytest.mark.parametrize(
    "override, key",
    [
        ("MODEL.backbone.arch=vit_huge", "MODEL.backbone.arch"),
        ("MODEL.backbone.depth=0", "MODEL.backbone.depth"),
        ("MODEL.backbone.depth=13", "MODEL.backbone.depth"),  # vit_tiny has 12 blocks
        ("MODEL.hand_model=mano", "MODEL.hand_model"),
        ("MODEL.num_betas=16", "MODEL.num_betas"),
        ("GENERAL.device=gpu", "GENERAL.device"),
        ("TRAIN.grad_clip=0", "TRAIN.grad_clip"),
        ("DATA.val_batch_size=0", "DATA.val_batch_size"),
    ],
)
def test_model_and_device_are_checked_before_anything_is_built(override, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config("stage1-tiny", [override])


def test_devices_that_are_accepted():
    for device in ("auto", "cpu", "cuda", "cuda:1"):
        assert load_config("stage1-tiny", [f"GENERAL.device={device}"]).GENERAL.device == device


@pytest.mark.parametrize(
    "key, value", [("DATA.train.max_samples", 10), ("DATA.val.shuffle_buffer", 10)]
)
def test_deprecated_keys_are_named(tmp_path, key, value):
    with pytest.raises(ConfigError, match=rf"{key.replace('.', '[.]')} is deprecated"):
        load_config("stage1-tiny", [f"{key}={value}"])
    split, leaf = key.split(".")[1:]
    saved = tmp_path / "saved.yaml"
    saved.write_text(f"DATA:\n  {split}:\n    {leaf}: {value}\n")
    with pytest.raises(ConfigError, match=rf"{key.replace('.', '[.]')} is deprecated"):
        load_config(str(saved))


def test_old_saved_config_with_deprecated_defaults_loads(tmp_path):
    """A saved config.yaml that holds the deprecated keys at their defaults loads; they are
    dropped."""
    saved = tmp_path / "config.yaml"
    saved.write_text(
        "DATA:\n  train:\n    source: [a/train-*.tar]\n    max_samples: null\n"
        "    shuffle_buffer: 64\n  val:\n    source: [a/val-*.tar]\n"
        "    max_samples: 32\n    shuffle_buffer: 500\n"
    )
    cfg = load_config(str(saved))
    assert cfg.DATA.train.shuffle_buffer == 64 and cfg.DATA.val.max_samples == 32
    assert "max_samples" not in cfg.DATA.train and "shuffle_buffer" not in cfg.DATA.val
