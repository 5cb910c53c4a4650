"""Pinhole camera helpers (pixel intrinsics ``K`` with last row (0, 0, 1), millimetres)."""

from __future__ import annotations

import torch
from torch import Tensor

MIN_DEPTH_MM = 1.0  # points nearer than this (or behind the camera) are projected at this depth


def project(points: Tensor, K: Tensor) -> Tensor:
    """Camera-space points (B, N, 3) mm -> pixels (B, N, 2) with intrinsics K (B, 3, 3).

    Depth is clamped to ``MIN_DEPTH_MM`` so a point behind the camera gives a large but
    finite pixel position.
    """
    p = points @ K.transpose(1, 2)
    return p[..., :2] / p[..., 2:].clamp(min=MIN_DEPTH_MM)


def unproject_root(uv: Tensor, depth: Tensor, K: Tensor, img_size: int) -> Tensor:
    """Crop-normalised image position and depth -> camera-space point (B, 3) mm.

    uv (B, 2): (0, 0) is the image centre and +-1 the image borders, i.e.
    ``(u_px, v_px) = img_size / 2 * (1 + uv)``; depth (B,) mm is the point's z.
    Returns ``depth * K^-1 [u_px, v_px, 1]``.
    """
    px = img_size / 2 * (1 + uv)
    hom = torch.cat([px, torch.ones_like(px[:, :1])], dim=-1)
    ray = torch.linalg.solve_ex(K, hom[..., None]).result.squeeze(-1)  # no host sync
    return ray * depth[:, None]
