"""Evaluation metrics on joints (B, 21, 3), per sample (B,), in the input's units (mm here).

Every metric takes ``(pred, gt, valid=None)``; ``valid`` (B, 21) marks annotated joints
(None: all). Errors are averaged over the valid joints of each sample; a sample with no
valid joint (for ``rte``: an invalid root) scores 0.
"""

from __future__ import annotations

import torch
from torch import Tensor


def _weights(gt: Tensor, valid: Tensor | None) -> Tensor:
    """(B, 21) joint weights as 0/1 in gt's dtype."""
    if valid is None:
        return torch.ones(gt.shape[:2], dtype=gt.dtype, device=gt.device)
    return (valid > 0).to(gt.dtype)


def _joint_mean(err: Tensor, w: Tensor) -> Tensor:
    """Mean of err (B, J) over the joints with w > 0 -> (B,)."""
    return torch.where(w > 0, err, 0.0).sum(1) / w.sum(1).clamp(min=1)


def mpjpe(pred: Tensor, gt: Tensor, valid: Tensor | None = None) -> Tensor:
    """Mean per-joint position error: mean over valid joints of ||pred - gt||."""
    return _joint_mean(torch.linalg.vector_norm(pred - gt, dim=-1), _weights(gt, valid))


def mpjpe_rel(pred: Tensor, gt: Tensor, valid: Tensor | None = None) -> Tensor:
    """MPJPE after moving the root (wrist, joint 0) of each to the origin. A joint counts
    only if it and the root are valid."""
    w = _weights(gt, valid)
    return mpjpe(pred - pred[:, :1], gt - gt[:, :1], w * w[:, :1])


def procrustes_align(pred: Tensor, gt: Tensor, w: Tensor) -> Tensor:
    """pred (B, J, 3) moved onto gt by the similarity (rotation, scale, translation) that
    minimises the squared error over the joints with w > 0 (Umeyama; no reflections)."""
    dtype = pred.dtype
    p, g = pred.double(), gt.double()
    w = (w > 0).double()
    w = (w / w.sum(1, keepdim=True).clamp(min=1))[..., None]  # (B, J, 1), sums to 1
    mu_p, mu_g = (w * p).sum(1, keepdim=True), (w * g).sum(1, keepdim=True)
    p0, g0 = p - mu_p, g - mu_g
    cov = (w * g0).transpose(1, 2) @ p0  # (B, 3, 3) = sum_j w_j g0_j p0_j^T
    u, s, vh = torch.linalg.svd(cov)
    sign = torch.where(torch.linalg.det(u @ vh) < 0, -1.0, 1.0).to(s)
    d = torch.ones_like(s)
    d[:, 2] = sign
    rot = u @ torch.diag_embed(d) @ vh
    var_p = (w * p0**2).sum((1, 2))
    scale = (s * d).sum(-1) / var_p.clamp(min=1e-12)
    return (scale[:, None, None] * p0 @ rot.transpose(1, 2) + mu_g).to(dtype)


def pa_mpjpe(pred: Tensor, gt: Tensor, valid: Tensor | None = None) -> Tensor:
    """MPJPE after Procrustes alignment (rotation, translation and scale) of pred to gt."""
    w = _weights(gt, valid)
    return mpjpe(procrustes_align(pred, gt, w), gt, w)


def rte(pred: Tensor, gt: Tensor, valid: Tensor | None = None) -> Tensor:
    """Root translation error: ||pred root - gt root|| (root = wrist, joint 0)."""
    w = _weights(gt, valid)
    return torch.linalg.vector_norm(pred[:, 0] - gt[:, 0], dim=-1) * w[:, 0]
