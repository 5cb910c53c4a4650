"""DINOv2 checkpoints: official ``.pth`` state dicts and Hugging Face folders load strictly
(tested on checkpoints written here), ``pos_embed`` is resampled from the 518 px grid by each
format's own rule (checked against a restatement of DINOv2's definition), relative paths
resolve against the repository, and every bad checkpoint is a one-line UserError naming the
path."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from handpose.config import load_config
from handpose.errors import UserError
from handpose.model import build_model
from handpose.model.dinov2_io import REPO_ROOT, load_backbone_checkpoint, resolve_checkpoint_path
from handpose.model.vit import VisionTransformer
from tests.helpers import SMALL_MODEL

SMALL = {"patch_size": 14, "embed_dim": 64, "depth": 2, "num_heads": 2}


def vit(seed: int, img_size: int = 56, **kw) -> VisionTransformer:
    torch.manual_seed(seed)
    model = VisionTransformer(img_size=img_size, **{**SMALL, **kw}).eval()
    with torch.no_grad():  # layer scale 1e-5 would hide wrong block weights
        for name, p in model.named_parameters():
            if name.endswith("gamma"):
                p.uniform_(0.5, 1.5)
    return model


def outputs(model: VisionTransformer) -> torch.Tensor:
    with torch.no_grad():
        return model(torch.randn(2, 3, 56, 56, generator=torch.Generator().manual_seed(0)))


HF_TOP = {
    "cls_token": "embeddings.cls_token",
    "mask_token": "embeddings.mask_token",
    "pos_embed": "embeddings.position_embeddings",
    "register_tokens": "embeddings.register_tokens",
    "patch_embed.proj.weight": "embeddings.patch_embeddings.projection.weight",
    "patch_embed.proj.bias": "embeddings.patch_embeddings.projection.bias",
    "norm.weight": "layernorm.weight",
    "norm.bias": "layernorm.bias",
}


def to_hf(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Our (= official DINOv2) names -> transformers' Dinov2Model names, written
    independently of the loader's mapping."""
    out = {}
    for key, value in sd.items():
        m = re.match(r"blocks\.(\d+)\.(.+)$", key)
        if not m:
            out[HF_TOP[key]] = value
            continue
        pre, rest = f"encoder.layer.{m[1]}.", m[2]
        if rest.startswith("attn.qkv."):
            kind = rest.split(".")[-1]
            for name, part in zip(("query", "key", "value"), value.chunk(3, dim=0), strict=True):
                out[f"{pre}attention.attention.{name}.{kind}"] = part.clone()
            continue
        rest = (
            rest.replace("attn.proj.", "attention.output.dense.")
            .replace("ls1.gamma", "layer_scale1.lambda1")
            .replace("ls2.gamma", "layer_scale2.lambda1")
            .replace("mlp.w12.", "mlp.weights_in.")
            .replace("mlp.w3.", "mlp.weights_out.")
        )
        out[pre + rest] = value
    return out


def write_hf(folder, model: VisionTransformer, model_type: str = "dinov2") -> None:
    folder.mkdir()
    (folder / "config.json").write_text(
        json.dumps(
            {
                "model_type": model_type,
                "hidden_size": model.embed_dim,
                "num_hidden_layers": len(model.blocks),
                "patch_size": model.patch_size,
            }
        )
    )
    save_file(
        {k: v.contiguous() for k, v in to_hf(model.state_dict()).items()},
        folder / "model.safetensors",
    )


@pytest.mark.parametrize(
    "kw", [{}, {"ffn": "swiglu", "num_register_tokens": 4}], ids=["mlp", "swiglu+registers"]
)
def test_pth_loads_strictly(tmp_path, kw):
    src = vit(0, **kw)
    torch.save(src.state_dict(), tmp_path / "ckpt.pth")
    dst = vit(1, **kw)
    assert not torch.allclose(outputs(src), outputs(dst))
    load_backbone_checkpoint(dst, tmp_path / "ckpt.pth")
    assert torch.equal(outputs(src), outputs(dst))


@pytest.mark.parametrize(
    "kw", [{}, {"ffn": "swiglu", "num_register_tokens": 4}], ids=["mlp", "swiglu+registers"]
)
def test_hf_folder_round_trips(tmp_path, kw):
    src = vit(0, **kw)
    write_hf(tmp_path / "dinov2-small", src, "dinov2_with_registers" if kw else "dinov2")
    dst = vit(1, **kw)
    load_backbone_checkpoint(dst, tmp_path / "dinov2-small")
    assert torch.equal(outputs(src), outputs(dst))


def test_build_model_loads_the_configured_checkpoint(tmp_path):
    cfg = load_config("stage1-tiny", ["MODEL.img_size=56", *SMALL_MODEL])
    src = build_model(cfg).backbone
    torch.save(src.state_dict(), tmp_path / "dinov2_vitt14.pth")
    cfg.MODEL.backbone.checkpoint = str(tmp_path / "dinov2_vitt14.pth")
    cfg.MODEL.backbone.freeze = True
    torch.manual_seed(123)
    model = build_model(cfg)
    for key, value in src.state_dict().items():
        assert torch.equal(model.backbone.state_dict()[key], value), key
    assert not any(p.requires_grad for p in model.backbone.parameters())


def official_pos_embed(
    pos: torch.Tensor, w: int, h: int, patch: int, offset: float, antialias: bool
) -> torch.Tensor:
    """facebookresearch/dinov2 ``DinoVisionTransformer.interpolate_pos_encoding``, restated
    from its definition: for an image of w x h px the stored M x M grid of patch positions
    goes to (w // patch) x (h // patch); with ``interpolate_offset`` set, bicubic by the
    scale factors ((w0 + offset) / M, (h0 + offset) / M), else to that size; antialias
    as the model says; float32; the class position is kept in front.

    The transformers ``Dinov2Model`` resizes to the size, antialias only for the
    with-registers model: offset 0 with the right flag states it too."""
    n = pos.shape[1] - 1
    side = int(math.isqrt(n))
    w0, h0 = w // patch, h // patch
    grid = pos[:, 1:].float().reshape(1, side, side, pos.shape[-1]).permute(0, 3, 1, 2)
    if offset:
        resized = F.interpolate(
            grid,
            mode="bicubic",
            antialias=antialias,
            scale_factor=((w0 + offset) / side, (h0 + offset) / side),
        )
    else:
        resized = F.interpolate(grid, mode="bicubic", antialias=antialias, size=(w0, h0))
    assert tuple(resized.shape[-2:]) == (w0, h0)
    flat = resized.permute(0, 2, 3, 1).reshape(1, w0 * h0, pos.shape[-1])
    return torch.cat([pos[:, :1].float(), flat], dim=1).to(pos.dtype)


# (format, registers) -> the official model's (interpolate_offset, interpolate_antialias)
RULES = {
    ("pth", False): (0.1, False),
    ("pth", True): (0.0, True),
    ("hf", False): (0.0, False),
    ("hf", True): (0.0, True),
}


@pytest.mark.parametrize(
    "fmt,registers", list(RULES), ids=["pth", "pth_reg", "hf", "hf_with_registers"]
)
def test_518px_pos_embed_follows_each_formats_rule(tmp_path, fmt, registers):
    kw = {"num_register_tokens": 4} if registers else {}
    big = vit(0, img_size=518, **kw)  # the pretraining grid, 37 x 37
    with torch.no_grad():  # a rough pos_embed: smooth ones hide a wrong sampling grid
        big.pos_embed.normal_()
    if fmt == "pth":
        path = tmp_path / "pretrain.pth"
        torch.save(big.state_dict(), path)
    else:
        path = tmp_path / "dinov2-hf"
        write_hf(path, big, "dinov2_with_registers" if registers else "dinov2")
    small = vit(1, img_size=224, **kw)  # 16 x 16
    load_backbone_checkpoint(small, path)
    offset, antialias = RULES[fmt, registers]
    want = official_pos_embed(big.pos_embed.detach(), 224, 224, 14, offset, antialias)
    assert small.pos_embed.shape == (1, 257, 64)
    assert torch.equal(small.pos_embed.detach(), want)  # bit-exact: the same tokens
    assert torch.equal(small.blocks[1].mlp.fc2.weight, big.blocks[1].mlp.fc2.weight)
    for other in set(RULES.values()) - {(offset, antialias)}:  # the rules differ here
        assert not torch.allclose(
            small.pos_embed.detach(),
            official_pos_embed(big.pos_embed.detach(), 224, 224, 14, *other),
            atol=1e-3,
        )


def test_same_grid_is_not_resampled(tmp_path):
    src = vit(0, img_size=112)
    torch.save({k: v.half() for k, v in src.state_dict().items()}, tmp_path / "fp16.pth")
    dst = vit(1, img_size=112)
    load_backbone_checkpoint(dst, tmp_path / "fp16.pth")
    assert torch.equal(dst.pos_embed.detach(), src.pos_embed.detach().half().float())


def test_relative_path_resolves_against_the_repository(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert resolve_checkpoint_path("pyproject.toml") == REPO_ROOT / "pyproject.toml"
    (tmp_path / "pyproject.toml").write_text("")  # from the working directory first
    assert resolve_checkpoint_path("pyproject.toml") == Path("pyproject.toml")
    assert resolve_checkpoint_path("nowhere.pth") == Path("nowhere.pth")


def expect_user_error(path, model, *fragments) -> None:
    with pytest.raises(UserError) as info:
        load_backbone_checkpoint(model, path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message
    for fragment in fragments:
        assert fragment in message


def test_bad_checkpoints_are_user_errors(tmp_path):
    torch.save(vit(0, depth=1).state_dict(), tmp_path / "shallow.pth")
    expect_user_error(tmp_path / "shallow.pth", vit(1), "missing", "blocks.1.")
    torch.save(vit(0, depth=3).state_dict(), tmp_path / "deep.pth")
    expect_user_error(tmp_path / "deep.pth", vit(1), "unexpected", "blocks.2.")
    torch.save(vit(0, embed_dim=32).state_dict(), tmp_path / "narrow.pth")
    expect_user_error(tmp_path / "narrow.pth", vit(1), "cls_token", "shape")
    (tmp_path / "garbage.pth").write_bytes(b"not a checkpoint")
    expect_user_error(tmp_path / "garbage.pth", vit(1), "unreadable")
    expect_user_error(tmp_path / "missing.pth", vit(1), "unreadable")
    (tmp_path / "empty-folder").mkdir()
    expect_user_error(tmp_path / "empty-folder", vit(1), "unreadable")
    write_hf(tmp_path / "not-dinov2", vit(0), model_type="vit")
    expect_user_error(tmp_path / "not-dinov2", vit(1), "model_type")
