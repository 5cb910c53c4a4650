"""Training losses. Each is a masked mean, so a batch without valid entries gives 0.

Units, chosen so the recipe's weights (3.0, 3.0, 0.05, 0.012, 0.002) give terms of similar
size early in training (each term: what it compares; unit; mask):

- ``loss_theta``: squared error of the 16 rotation matrices, mean over the 9 entries;
  unitless; ``mano_valid``.
- ``loss_shape``: squared error of ``betas``; unitless; ``mano_valid``.
- ``loss_trans``: absolute error of the root (wrist) position, mean over x, y, z; cm
  (at lambda 0.05 a 10 cm mean error adds 0.5 to ``total``); the root's ``joint_valid``.
- ``loss_rel``: absolute error of the root-relative 3D joints, mean over joints and x, y, z;
  mm; ``joint_valid`` of the joint and of the root.
- ``loss_img``: absolute error of the 2D joints, mean over joints and u, v; px (the GT is
  the projection of the GT ``joints_cam`` with ``K``); ``joint_valid`` and GT in front of
  the camera.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from handpose.model.camera import project
from handpose.model.kinematics import axis_angle_to_matrix

LOSS_NAMES = ("theta", "shape", "trans", "rel", "img")


def masked_mean(err: Tensor, mask: Tensor) -> Tensor:
    """Mean of ``err`` (B, ...) over the entries whose ``mask`` (B, ...leading dims) is > 0."""
    mask = mask.reshape(mask.shape + (1,) * (err.dim() - mask.dim())).expand_as(err) > 0
    return torch.where(mask, err, 0.0).sum() / mask.sum().clamp(min=1)


def loss_theta(rotmat: Tensor, theta_gt: Tensor, mano_valid: Tensor) -> Tensor:
    """rotmat (B, 16, 3, 3) vs axis-angle theta_gt (B, 16, 3) rad, masked by mano_valid (B,)."""
    return masked_mean((rotmat - axis_angle_to_matrix(theta_gt)) ** 2, mano_valid)


def loss_shape(betas: Tensor, betas_gt: Tensor, mano_valid: Tensor) -> Tensor:
    """betas (B, 10) vs betas_gt (B, 10), masked by mano_valid (B,)."""
    return masked_mean((betas - betas_gt) ** 2, mano_valid)


def loss_trans(trans: Tensor, joints_gt: Tensor, joint_valid: Tensor) -> Tensor:
    """Root position trans (B, 3) mm vs GT wrist joints_gt[:, 0]; L1 in cm."""
    return masked_mean((trans - joints_gt[:, 0]).abs() / 10.0, joint_valid[:, 0])


def loss_rel(joints: Tensor, joints_gt: Tensor, joint_valid: Tensor) -> Tensor:
    """Root-relative joints (B, 21, 3) mm, L1 in mm; a joint counts if it and the root are
    valid."""
    err = (joints - joints[:, :1]) - (joints_gt - joints_gt[:, :1])
    return masked_mean(err.abs(), joint_valid * joint_valid[:, :1])


def loss_img(joints_2d: Tensor, joints_gt: Tensor, K: Tensor, joint_valid: Tensor) -> Tensor:
    """joints_2d (B, 21, 2) px vs the projection of joints_gt (B, 21, 3) mm; L1 in px."""
    in_front = (joints_gt[..., 2] > 0).to(joint_valid.dtype)
    return masked_mean((joints_2d - project(joints_gt, K)).abs(), joint_valid * in_front)


def compute_losses(
    pred: Mapping[str, Tensor], batch: Mapping[str, Any], loss_cfg: Mapping[str, float]
) -> dict[str, Tensor]:
    """Unweighted ``loss_<name>`` for theta, shape, trans, rel, img (float32 scalars) and
    ``total`` = sum of ``loss_cfg["lambda_<name>"]`` x term."""
    p = {k: v.float() for k, v in pred.items()}
    joints_gt, valid = batch["joints_cam"].float(), batch["joint_valid"].float()
    mano_valid = batch["mano_valid"].float()
    losses = {
        "loss_theta": loss_theta(p["rotmat"], batch["theta"].float(), mano_valid),
        "loss_shape": loss_shape(p["betas"], batch["betas"].float(), mano_valid),
        "loss_trans": loss_trans(p["trans"], joints_gt, valid),
        "loss_rel": loss_rel(p["joints_cam"], joints_gt, valid),
        "loss_img": loss_img(p["joints_2d"], joints_gt, batch["K"].float(), valid),
    }
    losses["total"] = sum(loss_cfg[f"lambda_{n}"] * losses[f"loss_{n}"] for n in LOSS_NAMES)
    return losses
