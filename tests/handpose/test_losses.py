"""Losses: zero at the truth, hand-computed values in the documented units, masks, and a
gradient from loss_rel through the kinematic layer into the decoder."""

from __future__ import annotations

import pytest
import torch

from handpose.config import load_config
from handpose.losses import compute_losses
from handpose.model import build_model
from handpose.model.camera import project
from handpose.model.kinematics import HandKinematics, axis_angle_to_matrix
from tests.helpers import SMALL_MODEL

LOSS = {
    "lambda_theta": 3.0,
    "lambda_shape": 3.0,
    "lambda_trans": 0.05,
    "lambda_rel": 0.012,
    "lambda_img": 0.002,
}


def truth(b: int = 3) -> tuple[dict, dict]:
    """A batch made with the kinematic model and the prediction that matches it exactly."""
    g = torch.Generator().manual_seed(0)
    theta = torch.randn(b, 16, 3, generator=g) * 0.3
    betas = torch.randn(b, 10, generator=g)
    trans = torch.randn(b, 3, generator=g) * 20 + torch.tensor([0.0, 0.0, 600.0])
    rotmat = axis_angle_to_matrix(theta)
    joints = HandKinematics()(rotmat, betas) + trans[:, None]
    K = torch.tensor([[300.0, 0, 64], [0, 300.0, 64], [0, 0, 1]]).expand(b, 3, 3).clone()
    batch = {
        "K": K,
        "joints_cam": joints,
        "joint_valid": torch.ones(b, 21),
        "theta": theta,
        "betas": betas,
        "mano_valid": torch.ones(b),
    }
    pred = {
        "rotmat": rotmat,
        "theta": theta,
        "betas": betas.clone(),
        "trans": trans.clone(),
        "joints_cam": joints.clone(),
        "joints_2d": project(joints, K),
    }
    return pred, batch


def test_zero_at_the_truth():
    pred, batch = truth()
    losses = compute_losses(pred, batch, LOSS)
    assert set(losses) == {
        "loss_theta",
        "loss_shape",
        "loss_trans",
        "loss_rel",
        "loss_img",
        "total",
    }
    for name, value in losses.items():
        assert value.dtype == torch.float32 and value.abs() < 1e-4, name


def test_hand_computed_values_and_total():
    pred, batch = truth()
    pred["trans"] = pred["trans"] + torch.tensor([30.0, 0.0, 0.0])  # 3 cm on x: 1 cm mean
    pred["joints_cam"] = pred["joints_cam"] + torch.tensor([30.0, 0.0, 0.0])  # rel unchanged
    pred["joints_2d"] = pred["joints_2d"] + torch.tensor([4.0, 0.0])  # 2 px mean over u, v
    pred["betas"] = pred["betas"] + 0.5  # squared error 0.25
    pred["rotmat"] = pred["rotmat"].clone()
    pred["rotmat"][:, :, 0, 0] += 0.3  # one entry of nine: 0.09 / 9
    losses = compute_losses(pred, batch, LOSS)
    want = {
        "loss_theta": 0.01,
        "loss_shape": 0.25,
        "loss_trans": 1.0,
        "loss_rel": 0.0,
        "loss_img": 2.0,
    }
    for name, value in want.items():
        assert losses[name].item() == pytest.approx(value, abs=1e-4), name
    total = sum(LOSS["lambda_" + n[5:]] * v for n, v in want.items())
    assert losses["total"].item() == pytest.approx(total, abs=1e-4)


def test_masks_ignore_invalid_entries():
    pred, batch = truth()
    pred["rotmat"] = pred["rotmat"].clone()
    pred["rotmat"][1] = torch.eye(3) * 5
    pred["betas"][1] += 10
    batch["mano_valid"][1] = 0
    pred["joints_cam"][2, 7] += 100.0
    pred["joints_2d"][2, 7] += 100.0
    batch["joint_valid"][2, 7] = 0
    pred["trans"][0] += 100.0
    pred["joints_cam"][0] += 100.0
    batch["joint_valid"][0, 0] = 0  # no root: no trans, and no root-relative joints
    batch["joints_cam"][1, 3, 2] = pred["joints_cam"][1, 3, 2] = -50.0  # behind the camera:
    pred["joints_2d"][1, 3] = 1e6  # no 2D target
    losses = compute_losses(pred, batch, LOSS)
    for name, value in losses.items():
        assert value.abs() < 1e-4, name

    for key in ("joint_valid", "mano_valid"):
        batch[key] = torch.zeros_like(batch[key])
    losses = compute_losses(pred, batch, LOSS)
    assert all(torch.isfinite(v) and v == 0 for v in losses.values())


def test_loss_rel_gradient_flows_through_the_kinematic_layer():
    torch.manual_seed(0)
    cfg = load_config("stage1-tiny", list(SMALL_MODEL))
    model = build_model(cfg).train()
    _, batch = truth(2)
    img = torch.randn(2, 3, 112, 112)
    pred = model(img, batch["K"])
    compute_losses(pred, batch, LOSS)["loss_rel"].backward()
    dec = model.decoder
    for p in (
        dec.pose_head.weight,
        dec.shape_head.weight,
        dec.layers[0].cross_attn.to_q.weight,
        dec.queries,
        model.backbone.blocks[0].attn.qkv.weight,
    ):
        assert p.grad is not None and p.grad.abs().sum() > 0
    # root-relative joints do not depend on trans: only float32 rounding reaches the camera head
    assert dec.cam_head.weight.grad.abs().max() < 1e-3 * dec.pose_head.weight.grad.abs().max()


def test_low_precision_predictions_give_float32_losses():
    pred, batch = truth()
    losses = compute_losses({k: v.bfloat16() for k, v in pred.items()}, batch, LOSS)
    assert all(v.dtype == torch.float32 and torch.isfinite(v) for v in losses.values())
