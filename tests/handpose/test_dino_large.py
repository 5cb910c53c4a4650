"""The full-size recipe on CPU: ``stage1-dino_large`` (ViT-L/14 at 224 px + the 6-layer hand
decoder) builds, loads an official-format DINOv2 ViT-L/14 checkpoint made here (518 px
``pos_embed``, resampled on load) and takes two training steps at batch 2 under bf16
autocast with finite losses. Slow: about 300M parameters (peak memory a few GiB)."""

from __future__ import annotations

import math

import pytest
import torch

from handpose.config import load_config
from handpose.data import build_train_stream
from handpose.model import build_model, param_groups
from handpose.model.vit import ARCHS, VisionTransformer
from handpose.train import dropout_at, to_device, train_step
from tests.helpers import data_overrides


@pytest.mark.slow
def test_dino_large_recipe_trains_two_steps_in_bf16(data_dir, tmp_path):
    arch = ARCHS["vit_large"]
    torch.manual_seed(0)
    official = VisionTransformer(518, 14, arch.embed_dim, arch.depth, arch.num_heads)
    ckpt = tmp_path / "dinov2_vitl14_pretrain.pth"
    torch.save(official.state_dict(), ckpt)
    qkv = official.blocks[23].attn.qkv.weight.detach().clone()
    del official

    cfg = load_config(
        "stage1-dino_large",
        data_overrides(data_dir)
        + [
            f"MODEL.backbone.checkpoint={ckpt}",
            "TRAIN.sample_per_device=2",
            "TRAIN.num_workers=0",
            "GENERAL.dropout_warmup_step=1",
        ],
    )
    assert cfg.TRAIN.mixed_precision == "bf16" and cfg.MODEL.img_size == 224
    model = build_model(cfg)
    assert len(model.backbone.blocks) == 24 and model.backbone.embed_dim == 1024
    assert torch.equal(model.backbone.blocks[23].attn.qkv.weight, qkv)  # loaded, not random
    assert model.backbone.pos_embed.shape == (1, 1 + 16 * 16, 1024)  # 518 px -> 224 px grid
    optimizer = torch.optim.AdamW(
        param_groups(model, cfg.TRAIN.lr, cfg.TRAIN.backbone_lr),
        weight_decay=cfg.TRAIN.weight_decay,
    )
    stream = build_train_stream(cfg)
    device = torch.device("cpu")
    for step in range(2):
        model.set_dropout_rate(dropout_at(cfg, step))
        model.train()
        losses = train_step(cfg, model, optimizer, to_device(next(stream), device), device)
        assert all(math.isfinite(v.item()) for v in losses.values()), (step, losses)
    assert not torch.equal(model.backbone.blocks[23].attn.qkv.weight, qkv)  # it trained
