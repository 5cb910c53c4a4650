"""PoseNet = DINOv2 ViT backbone + hand decoder + hand kinematic layer (docs/internals.md)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from omegaconf import DictConfig
from torch import Tensor, nn

from handpose.errors import check, check_positive
from handpose.model.camera import project, unproject_root
from handpose.model.decoder import HandDecoder, HandecCfg, validate_handec
from handpose.model.decoder_io import load_decoder_checkpoint
from handpose.model.dinov2_io import load_backbone_checkpoint
from handpose.model.kinematics import (
    HAND_MODELS,
    NUM_BETAS,
    build_hand_model,
    matrix_to_axis_angle,
    rotation_6d_to_matrix,
)
from handpose.model.vit import BackboneCfg, build_backbone, validate_backbone
from handpose.schedules import check_dropout_rate

# reference focal length (px per px of image side) of the decoder's depth output
REF_FOCAL_PER_PX = 1.75


@dataclass
class ModelCfg:
    """The ``MODEL`` config section: the network's input, hand model and its two parts."""

    img_size: int = 224  # px, square crops
    hand_model: str = "kinematic"  # a key of handpose.model.kinematics.HAND_MODELS
    num_betas: int = 10
    backbone: BackboneCfg = field(default_factory=BackboneCfg)
    handec: HandecCfg = field(default_factory=HandecCfg)


def validate_model(m: ModelCfg, prefix: str = "MODEL") -> None:
    """The network's own rules for its config section ``m`` (at key ``prefix``), its parts'
    included: an image size the patches tile, a known hand model with its number of betas.
    ConfigError naming the key."""
    check_positive(m, prefix, "img_size")
    validate_backbone(m.backbone, f"{prefix}.backbone")
    patch = m.backbone.patch_size
    check(
        m.img_size % patch == 0,
        f"{prefix}.img_size",
        m.img_size,
        f"a multiple of {prefix}.backbone.patch_size={patch}",
    )
    check(
        m.hand_model in HAND_MODELS,
        f"{prefix}.hand_model",
        m.hand_model,
        f"one of {', '.join(HAND_MODELS)}",
    )
    check(
        m.hand_model != "kinematic" or m.num_betas == NUM_BETAS,
        f"{prefix}.num_betas",
        m.num_betas,
        f"{NUM_BETAS} (the kinematic hand model has {NUM_BETAS})",
    )
    validate_handec(m.handec, f"{prefix}.handec")


class PoseNet(nn.Module):
    """``forward(img (B, 3, S, S), K (B, 3, 3)) -> dict`` of hand predictions.

    Keys: ``rotmat`` (B, 16, 3, 3), ``theta`` (B, 16, 3) axis-angle rad (detached: it is
    for reading, the losses use ``rotmat``), ``betas`` (B, 10), ``trans`` (B, 3) root (wrist)
    position in camera mm, ``joints_cam`` (B, 21, 3) mm and ``joints_2d`` (B, 21, 2) px.
    Everything after the decoder trunk runs in float32, also under autocast.
    """

    def __init__(self, m: ModelCfg) -> None:
        """``m``: the validated ``MODEL`` section (:func:`validate_model`)."""
        super().__init__()
        self.img_size = m.img_size
        self.backbone = build_backbone(m.backbone, m.img_size)
        self.decoder = HandDecoder(
            m.handec, self.backbone.embed_dim, m.num_betas, self.backbone.grid**2
        )
        self.hand = build_hand_model(m.hand_model)

    def set_dropout_rate(self, p: float) -> None:
        """Set every ``nn.Dropout`` of the decoder to ``p`` (in [0, 1), else ValueError);
        the attention-weight dropouts are among them (SDPA reads their ``.p``)."""
        p = check_dropout_rate(p)
        for module in self.decoder.modules():
            if isinstance(module, nn.Dropout):
                module.p = p

    def forward(self, img: Tensor, K: Tensor) -> dict[str, Tensor]:
        out = self.decoder(self.backbone(img))
        with torch.autocast(img.device.type, enabled=False):
            K = K.float()
            rotmat = rotation_6d_to_matrix(out["pose6d"])
            # the decoder's depth is for a reference focal length: scale it by the actual
            # focal length, so a zoomed crop (scale jitter) does not change what to predict
            focal = (K[:, 0, 0] + K[:, 1, 1]) / 2
            depth = out["depth"] * focal / (REF_FOCAL_PER_PX * self.img_size)
            trans = unproject_root(out["uv"], depth, K, self.img_size)
            joints_cam = self.hand(rotmat, out["betas"]) + trans[:, None]
            joints_2d = project(joints_cam, K)
        with torch.no_grad():
            theta = matrix_to_axis_angle(rotmat)
        return {
            "rotmat": rotmat,
            "theta": theta,
            "betas": out["betas"],
            "trans": trans,
            "joints_cam": joints_cam,
            "joints_2d": joints_2d,
        }


def build_model(cfg: DictConfig) -> PoseNet:
    """PoseNet from ``cfg``; loads ``MODEL.backbone.checkpoint`` (a DINOv2 ``.pth`` or a
    Hugging Face folder; :class:`~handpose.errors.UserError` if it does not fit), freezes
    the backbone if ``MODEL.backbone.freeze`` and loads ``MODEL.handec.checkpoint`` (a
    decoder state dict, e.g. ``handpose.pretrain``'s) into the decoder."""
    model = PoseNet(cfg.MODEL)
    bb = cfg.MODEL.backbone
    if bb.checkpoint:
        load_backbone_checkpoint(model.backbone, bb.checkpoint)
    if bb.freeze:
        model.backbone.requires_grad_(False)
    if cfg.MODEL.handec.checkpoint:
        load_decoder_checkpoint(model.decoder, cfg.MODEL.handec.checkpoint)
    return model


def param_groups(model: PoseNet, lr: float, backbone_lr: float) -> list[dict[str, Any]]:
    """Optimizer groups: trainable backbone parameters at ``backbone_lr`` (``TRAIN.backbone_lr``),
    the rest at ``lr`` (``TRAIN.lr``); empty groups (a frozen backbone) are left out."""
    backbone_ids = {id(p) for p in model.backbone.parameters()}
    trainable = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {
            "name": "backbone",
            "lr": backbone_lr,
            "params": [p for p in trainable if id(p) in backbone_ids],
        },
        {
            "name": "head",
            "lr": lr,
            "params": [p for p in trainable if id(p) not in backbone_ids],
        },
    ]
    return [g for g in groups if g["params"]]
