"""Load DINOv2 weights into :class:`~handpose.model.vit.VisionTransformer`, strictly.

Two formats: an official checkpoint (``dinov2_vitl14_pretrain.pth``: a plain state dict with
our key names) and a Hugging Face ``dinov2-*`` folder (``config.json`` + ``model.safetensors``)
whose keys are mapped to ours (``query``/``key``/``value`` concatenated into ``qkv``).
A ``pos_embed`` for another patch grid (M x M, e.g. 37 x 37 at DINOv2's 518 px) is resampled
once, at load time, to this model's g x g grid, by the rule of the format it came from, so
that the tokens equal those of the format's own model at that image size:

- official ``.pth`` (``dinov2_vit*14``, ``interpolate_offset`` 0.1): bicubic with
  ``scale_factor=((g + 0.1) / M, (g + 0.1) / M)``, no antialias;
- official ``.pth`` with registers (``dinov2_vit*14_reg``: ``register_tokens`` present;
  offset 0, ``interpolate_antialias``): bicubic to ``size=(g, g)``, antialias;
- Hugging Face ``Dinov2Model`` folder: bicubic to ``size=(g, g)``, no antialias; with
  registers (``dinov2_with_registers``): antialias.

The class token's entry is kept. A relative checkpoint path that does not exist from the
working directory is looked up in the repository root (:func:`resolve_checkpoint_path`), so
the shipped ``weights/`` load from any folder. Every problem is a one-line
:class:`~handpose.errors.UserError` naming the path.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import Tensor

from handpose.errors import UserError, first_line
from handpose.model.vit import VisionTransformer

REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class PosEmbedRule:
    """How a format resamples ``pos_embed``: ``offset`` > 0 -> bicubic with
    ``scale_factor=(g + offset) / M``, else ``size=(g, g)``; with or without ``antialias``."""

    offset: float
    antialias: bool


OFFICIAL = PosEmbedRule(0.1, False)  # dinov2_vit*14 (hub models, the .pth files)
OFFICIAL_REGISTERS = PosEmbedRule(0.0, True)  # dinov2_vit*14_reg
HF = PosEmbedRule(0.0, False)  # transformers Dinov2Model
HF_REGISTERS = PosEmbedRule(0.0, True)  # transformers Dinov2WithRegistersModel

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
            out.update(
                {
                    f"encoder.layer.{layer}.attention.attention.{p}.{kind}": t
                    for p, t in parts.items()
                }
            )  # incomplete: left for the strict check
            continue
        out[f"blocks.{layer}.attn.qkv.{kind}"] = torch.cat(
            [parts["query"], parts["key"], parts["value"]], dim=0
        )
    return out


def resample_pos_embed(pos: Tensor, grid: int, rule: PosEmbedRule = OFFICIAL) -> Tensor:
    """(1, 1 + M*M, D) -> (1, 1 + grid*grid, D): the M x M patch grid resampled bicubically
    by ``rule`` (in float32, as DINOv2 does), the class token's entry kept."""
    m = round((pos.shape[1] - 1) ** 0.5)
    if m * m != pos.shape[1] - 1:
        raise ValueError(f"pos_embed {tuple(pos.shape)} is not a square grid plus a class token")
    patches = pos[:, 1:].reshape(1, m, m, -1).permute(0, 3, 1, 2).float()
    if rule.offset:
        scale = (grid + rule.offset) / m
        patches = F.interpolate(
            patches, scale_factor=(scale, scale), mode="bicubic", antialias=rule.antialias
        )
    else:
        patches = F.interpolate(
            patches, size=(grid, grid), mode="bicubic", antialias=rule.antialias
        )
    patches = patches.permute(0, 2, 3, 1).reshape(1, grid * grid, -1).to(pos.dtype)
    return torch.cat([pos[:, :1], patches], dim=1)


def resolve_checkpoint_path(path: str | Path) -> Path:
    """``path`` as given if it exists (or is absolute); a relative path that does not exist
    from the working directory -> the same path under the repository root, if there."""
    p = Path(path).expanduser()
    if p.exists() or p.is_absolute():
        return p
    in_repo = REPO_ROOT / p
    return in_repo if in_repo.exists() else p


def read_checkpoint(path: str | Path) -> tuple[dict[str, Tensor], PosEmbedRule]:
    """A ``.pth`` state dict or a Hugging Face folder (``path`` through
    :func:`resolve_checkpoint_path`) -> (tensors with DINOv2 key names, the format's
    ``pos_embed`` rule)."""
    p = resolve_checkpoint_path(path)
    try:
        if p.is_dir():
            config = json.loads((p / "config.json").read_text())
            model_type = str(config.get("model_type", ""))
            if not model_type.startswith("dinov2"):
                raise ValueError(f"config.json model_type={model_type!r}, not a dinov2 model")
            rule = HF_REGISTERS if "registers" in model_type else HF
            return hf_to_dinov2(load_file(p / "model.safetensors")), rule
        sd = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # torch.load / safetensors raise many types: all mean unreadable
        raise UserError(f"unreadable backbone checkpoint {path}: {first_line(e)}") from None
    if not isinstance(sd, dict) or not all(torch.is_tensor(v) for v in sd.values()):
        raise UserError(f"unreadable backbone checkpoint {path}: not a state dict of tensors")
    return sd, OFFICIAL_REGISTERS if "register_tokens" in sd else OFFICIAL


def check_state_dict(ours: dict[str, Tensor], sd: dict[str, Tensor], what: str) -> None:
    """Raise :class:`UserError` ``"{what}: ..."`` unless ``sd`` has exactly ``ours``'s keys
    with the same shapes."""
    missing = [k for k in ours if k not in sd]
    unexpected = [k for k in sd if k not in ours]
    if missing or unexpected:
        parts = [
            f"{len(missing)} missing keys (first: {missing[0]})" if missing else "",
            f"{len(unexpected)} unexpected keys (first: {unexpected[0]})" if unexpected else "",
        ]
        raise UserError(f"{what}: {', '.join(p for p in parts if p)}")
    for key, value in ours.items():
        if sd[key].shape != value.shape:
            raise UserError(
                f"{what}: {key} has shape {tuple(sd[key].shape)} in the "
                f"checkpoint, {tuple(value.shape)} in the model"
            )


def load_backbone_checkpoint(model: VisionTransformer, path: str | Path) -> None:
    """Load ``path`` into ``model`` strictly; raise :class:`UserError` on any mismatch."""
    sd, rule = read_checkpoint(path)
    sd.setdefault("mask_token", model.mask_token)  # optional in HF folders; unused here
    ours = model.state_dict()
    what = (
        f"backbone checkpoint {path} does not match MODEL.backbone "
        f"(dim {model.embed_dim}, depth {len(model.blocks)})"
    )
    if (
        "pos_embed" in sd
        and sd["pos_embed"].shape != ours["pos_embed"].shape
        and sd["pos_embed"].shape[-1] == ours["pos_embed"].shape[-1]
    ):
        try:
            sd["pos_embed"] = resample_pos_embed(sd["pos_embed"], model.grid, rule)
        except ValueError as e:
            raise UserError(f"{what}: {e}") from None
    check_state_dict(ours, sd, what)
    model.load_state_dict(sd, strict=True)
