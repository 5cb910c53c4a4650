"""Backbone pretraining (handpose.pretrain) at toy size: the same seed gives the same bytes,
an interrupted run resumes to the same bytes, and the result loads through the DINOv2 path.
The shipped weights match their manifest and load through MODEL.backbone.checkpoint; a bad
weights file (backbone or decoder) is exit 2."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys

import torch

from handpose.checkpoint import list_checkpoints
from handpose.config import load_config
from handpose.model import build_model
from handpose.model.dinov2_io import REPO_ROOT, resolve_checkpoint_path
from handpose.pretrain import DECODER_NAME, WEIGHTS_NAME, pretrain

SHIPPED = f"weights/{WEIGHTS_NAME}"
TOY = (
    "MODEL.img_size=56",
    "TRAIN.sample_per_device=8",
    "DATA.val_batch_size=16",
    "DATA.train_eval_samples=16",
    "DATA.train.shuffle_buffer=16",
)


def toy(out) -> dict:
    return pretrain(
        out, steps=4, seed=3, train_images=48, val_images=16, checkpoint_step=2, overrides=TOY
    )


def test_same_seed_same_bytes_and_resume(tmp_path):
    a, b = toy(tmp_path / "a"), toy(tmp_path / "b")
    assert a["sha256"] == b["sha256"] and a["decoder_sha256"] == b["decoder_sha256"]
    assert a["sha256"] == hashlib.sha256((tmp_path / "a" / WEIGHTS_NAME).read_bytes()).hexdigest()
    # interrupted after the step-2 checkpoint: the same command resumes to the same weights
    last = list_checkpoints(tmp_path / "b" / "run" / "checkpoints")[-1]
    shutil.rmtree(last)
    (tmp_path / "b" / WEIGHTS_NAME).unlink()
    assert toy(tmp_path / "b")["sha256"] == a["sha256"]
    sd = torch.load(tmp_path / "a" / WEIGHTS_NAME, weights_only=True)
    assert "pos_embed" in sd and "blocks.0.attn.qkv.weight" in sd  # DINOv2 names
    assert all(v.dtype == torch.float16 for v in sd.values())
    dec = torch.load(tmp_path / "a" / DECODER_NAME, weights_only=True)
    cfg = load_config(
        "stage1-tiny",
        [
            "MODEL.img_size=56",
            f"MODEL.backbone.checkpoint={tmp_path / 'a' / WEIGHTS_NAME}",
            f"MODEL.handec.checkpoint={tmp_path / 'a' / DECODER_NAME}",
        ],
    )
    model = build_model(cfg)
    assert torch.equal(
        model.backbone.blocks[0].attn.qkv.weight.half(), sd["blocks.0.attn.qkv.weight"]
    )
    assert dec.keys() == model.decoder.state_dict().keys()
    for key, value in model.decoder.state_dict().items():
        assert torch.equal(value.half(), dec[key]), key


def test_shipped_weights_match_manifest_and_load(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a relative path works from any working directory
    path = resolve_checkpoint_path(SHIPPED)
    assert path.is_file() and path.resolve() == REPO_ROOT / SHIPPED
    manifest = json.loads((path.parent / "MANIFEST.json").read_text())
    assert manifest["weights"] == path.name and manifest["decoder_weights"] == DECODER_NAME
    for name, key in ((WEIGHTS_NAME, "sha256"), (DECODER_NAME, "decoder_sha256")):
        assert hashlib.sha256((path.parent / name).read_bytes()).hexdigest() == manifest[key]
    cfg = load_config("stage1-tiny")  # the preset starts from both files by default
    assert cfg.MODEL.backbone.checkpoint == SHIPPED
    assert cfg.MODEL.handec.checkpoint == f"weights/{DECODER_NAME}"
    assert cfg.TRAIN.backbone_lr < cfg.TRAIN.lr  # fine-tuned as the GPU recipe fine-tunes DINOv2
    model = build_model(cfg)
    for part, name in ((model.backbone, WEIGHTS_NAME), (model.decoder, DECODER_NAME)):
        sd = torch.load(path.parent / name, weights_only=True)
        assert sd.keys() == part.state_dict().keys()
        for key, value in sd.items():
            assert torch.equal(part.state_dict()[key].half(), value), key


def test_bad_weights_file_exits_2(tmp_path):
    bad = tmp_path / "broken.pth"
    bad.write_bytes(b"\x00" * 64)
    for key, path in (
        ("backbone", bad),
        ("backbone", tmp_path / "missing.pth"),
        ("handec", bad),
    ):
        r = subprocess.run(
            [
                sys.executable,
                "-m",
                "handpose.train",
                "--config-name",
                "stage1-tiny",
                f"MODEL.{key}.checkpoint={path}",
                f"GENERAL.output_dir={tmp_path / 'out'}",
                "AIM.enabled=false",
                "DATA.synthetic.train=8",
                "DATA.synthetic.val=8",
                f"DATA.synthetic.dir={tmp_path / 'data'}",
                f"DATA.train.source=[{tmp_path / 'data'}/train-*.tar]",
                f"DATA.val.source=[{tmp_path / 'data'}/val-*.tar]",
            ],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            timeout=300,
        )
        assert r.returncode == 2, r.stderr
        lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
        assert lines[-1].startswith("error:") and str(path) in lines[-1]
