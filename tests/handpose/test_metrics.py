"""Metrics against hand-computed cases."""

from __future__ import annotations

import math

import torch

from handpose.metrics import mpjpe, mpjpe_rel, pa_mpjpe, rte
from handpose.model.kinematics import axis_angle_to_matrix


def joints(b: int = 2, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, 21, 3, generator=g, dtype=torch.float64) * 40 + 500


def test_simple_numeric_case():
    gt = torch.zeros(1, 21, 3)
    pred = gt.clone()
    pred[0, 0] = torch.tensor([3.0, 4.0, 0.0])  # 5 mm on the root, 0 elsewhere
    assert torch.allclose(mpjpe(pred, gt), torch.tensor([5.0 / 21]))
    assert torch.allclose(rte(pred, gt), torch.tensor([5.0]))
    assert torch.allclose(mpjpe_rel(pred, gt), torch.tensor([20 * 5.0 / 21]))


def test_constant_offset_is_only_a_root_error():
    gt = joints()
    pred = gt + torch.tensor([6.0, -8.0, 0.0], dtype=gt.dtype)  # |offset| = 10
    for fn in (mpjpe, rte):
        assert torch.allclose(fn(pred, gt), torch.full((2,), 10.0, dtype=gt.dtype))
    assert mpjpe_rel(pred, gt).abs().max() < 1e-9
    assert pa_mpjpe(pred, gt).abs().max() < 1e-6


def test_similarity_transform_gives_zero_pa_mpjpe():
    gt = joints()
    rot = axis_angle_to_matrix(torch.tensor([0.3, -1.2, 0.7], dtype=gt.dtype))
    pred = 1.3 * gt @ rot.T + torch.tensor([10.0, -5.0, 30.0], dtype=gt.dtype)
    assert (mpjpe(pred, gt) > 10).all() and (mpjpe_rel(pred, gt) > 10).all()
    assert pa_mpjpe(pred, gt).abs().max() < 1e-6
    assert pa_mpjpe(pred.float(), gt.float()).abs().max() < 1e-2  # float32 too
    assert pa_mpjpe(pred, gt).dtype == gt.dtype and pa_mpjpe(pred, gt).shape == (2,)


def test_pa_mpjpe_does_not_reflect():
    gt = joints()
    mirrored = gt * torch.tensor([-1.0, 1.0, 1.0], dtype=gt.dtype)
    assert (pa_mpjpe(mirrored, gt) > 5).all()  # a reflection would make it 0


def test_masks_ignore_invalid_joints():
    gt = joints()
    rot = axis_angle_to_matrix(torch.tensor([0.0, 0.0, math.pi / 2], dtype=gt.dtype))
    pred = 0.8 * gt @ rot.T + 7.0
    valid = torch.ones(2, 21)
    valid[:, 5:9] = 0
    pred[:, 5:9] += 1000.0
    assert pa_mpjpe(pred, gt, valid).abs().max() < 1e-6

    pred = gt.clone()
    pred[:, 1] += torch.tensor([0.0, 0.0, 2.0], dtype=gt.dtype)  # 2 mm on a valid joint
    pred[:, 5:9] += 1000.0
    want = torch.full((2,), 2.0 / 17, dtype=gt.dtype)
    assert torch.allclose(mpjpe(pred, gt, valid), want)
    assert torch.allclose(mpjpe_rel(pred, gt, valid), want)

    valid[1, 0] = 0  # no root: sample 1 has no root-relative joints and no rte
    pred[:, 0] += 3.0
    assert rte(pred, gt, valid)[1] == 0 and rte(pred, gt, valid)[0] > 0
    assert mpjpe_rel(pred, gt, valid)[1] == 0
