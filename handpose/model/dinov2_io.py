"""Load DINOv2 weights into :class:`~handpose.model.vit.VisionTransformer`, strictly.

Two formats: an official checkpoint (``dinov2_vitl14_pretrain.pth``: a plain state dict with
our key names) and a Hugging Face ``dinov2-*`` folder (``config.json`` + ``model.safetensors``)
whose keys are mapped to ours (``query``/``key``/``value`` concatenated into ``qkv``).
A ``pos_embed`` for another patch grid is resampled bicubically (DINOv2's interpolation:
class token kept, the g x g grid resized). Every problem is a one-line
:class:`~handpose.errors.UserError` naming the path.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import Tensor

from handpose.errors import UserError
from handpose.model.vit import VisionTransformer

# Hugging Face key (regex) -> ours; q/k/v are handled separately.
_HF_RENAMES = (
    (r"^embeddings\.cls_token$", "cls_token"),
    (r"^embeddings\.mask_token$", "mask_token"),
    (r"^embeddings\.position_embeddings$", "pos_embed"),
    (r"^embeddings\.register_tokens$", "register_tokens"),
    (r"^embeddings\.patch_embeddings\.projection\.", "patch_embed.proj."),
    (r"^encoder\.layer\.(\d+)\.norm([12])\.", r"blocks.\1.norm\2."),
    (r"^encoder\.layer\.(\d+)\.attention\.output\.dense\.", r"blocks.\1.attn.proj."),
    (r"^encoder\.layer\.(\d+)\.layer_scale([12])\.lambda1$", r"blocks.\1.ls\2.gamma"),
    (r"^encoder\.layer\.(\d+)\.mlp\.fc([12])\.", r"blocks.\1.mlp.fc\2."),
    (r"^encoder\.layer\.(\d+)\.mlp\.weights_in\.", r"blocks.\1.mlp.w12."),
    (r"^encoder\.layer\.(\d+)\.mlp\.weights_out\.", r"blocks.\1.mlp.w3."),
    (r"^layernorm\.", "norm."),
)
_HF_QKV = re.compile(r"^encoder\.layer\.(\d+)\.attention\.attention\.(query|key|value)\.(\w+)$")


def hf_to_dinov2(hf: dict[str, Tensor]) -> dict[str, Tensor]:
    """Hugging Face ``Dinov2Model`` state dict -> DINOv2 names. Unknown keys pass unchanged
    (so the strict check reports them)."""
    out: dict[str, Tensor] = {}
    qkv: dict[tuple[str, str], dict[str, Tensor]] = {}
    for key, value in hf.items():
        m = _HF_QKV.match(key)
        if m:
            qkv.setdefault((m[1], m[3]), {})[m[2]] = value
            continue
        for pattern, repl in _HF_RENAMES:
            new, n = re.subn(pattern, repl, key)
            if n:
                key = new
                break
        out[key] = value
    for (layer, kind), parts in qkv.items():
        if set(parts) != {"query", "key", "value"}:
            out.update({f"encoder.layer.{layer}.attention.attention.{p}.{kind}": t
                        for p, t in parts.items()})  # incomplete: left for the strict check
            continue
        out[f"blocks.{layer}.attn.qkv.{kind}"] = torch.cat(
            [parts["query"], parts["key"], parts["value"]], dim=0)
    return out


def resample_pos_embed(pos: Tensor, grid: int) -> Tensor:
    """(1, 1 + n*n, D) -> (1, 1 + grid*grid, D), bicubic on the n x n patch grid."""
    n = round((pos.shape[1] - 1) ** 0.5)
    if n * n != pos.shape[1] - 1:
        raise ValueError(f"pos_embed {tuple(pos.shape)} is not a square grid plus a class token")
    patches = pos[:, 1:].reshape(1, n, n, -1).permute(0, 3, 1, 2).float()
    patches = F.interpolate(patches, size=(grid, grid), mode="bicubic", align_corners=False)
    patches = patches.permute(0, 2, 3, 1).reshape(1, grid * grid, -1).to(pos.dtype)
    return torch.cat([pos[:, :1], patches], dim=1)


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def read_checkpoint(path: str | Path) -> dict[str, Tensor]:
    """A ``.pth`` state dict or a Hugging Face folder -> tensors with DINOv2 key names."""
    p = Path(path)
    try:
        if p.is_dir():
            config = json.loads((p / "config.json").read_text())
            if not str(config.get("model_type", "")).startswith("dinov2"):
                raise ValueError(f"config.json model_type={config.get('model_type')!r}, "
                                 "not a dinov2 model")
            return hf_to_dinov2(load_file(p / "model.safetensors"))
        sd = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # torch.load / safetensors raise many types: all mean unreadable
        raise UserError(f"unreadable backbone checkpoint {path}: {_first_line(e)}") from None
    if not isinstance(sd, dict) or not all(torch.is_tensor(v) for v in sd.values()):
        raise UserError(f"unreadable backbone checkpoint {path}: not a state dict of tensors")
    return sd


def load_backbone_checkpoint(model: VisionTransformer, path: str | Path) -> None:
    """Load ``path`` into ``model`` strictly; raise :class:`UserError` on any mismatch."""
    sd = read_checkpoint(path)
    sd.setdefault("mask_token", model.mask_token)  # optional in HF folders; unused here
    ours = model.state_dict()
    missing = [k for k in ours if k not in sd]
    unexpected = [k for k in sd if k not in ours]
    what = (f"backbone checkpoint {path} does not match MODEL.backbone "
            f"(dim {model.embed_dim}, depth {len(model.blocks)})")
    if missing or unexpected:
        parts = [f"{len(missing)} missing keys (first: {missing[0]})" if missing else "",
                 f"{len(unexpected)} unexpected keys (first: {unexpected[0]})"
                 if unexpected else ""]
        raise UserError(f"{what}: {', '.join(p for p in parts if p)}")
    if sd["pos_embed"].shape != ours["pos_embed"].shape and \
            sd["pos_embed"].shape[-1] == ours["pos_embed"].shape[-1]:
        try:
            sd["pos_embed"] = resample_pos_embed(sd["pos_embed"], model.grid)
        except ValueError as e:
            raise UserError(f"{what}: {e}") from None
    for key, value in ours.items():
        if sd[key].shape != value.shape:
            raise UserError(f"{what}: {key} has shape {tuple(sd[key].shape)} in the "
                            f"checkpoint, {tuple(value.shape)} in the model")
    model.load_state_dict(sd, strict=True)
