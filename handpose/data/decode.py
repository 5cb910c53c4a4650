"""Decode one raw sample into named tensors: crop + resize to ``MODEL.img_size``, optional
augmentation (crop jitter, colour jitter, Gaussian blur), left -> right mirroring, and
ImageNet normalisation. ``K`` follows every geometric change so projections stay exact."""

from __future__ import annotations

import io
import json
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig
from PIL import Image, ImageFilter

from handpose.data.shards import RawSample

MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)


class BadSample(ValueError):
    """An undecodable image or a malformed annotation."""


def parse_annotation(raw: bytes) -> dict[str, np.ndarray]:
    """The json part -> arrays, checked against the schema (raises :class:`BadSample`)."""
    try:
        ann = json.loads(raw)
        out = {
            "joints_cam": np.asarray(ann["joints_cam"], np.float32).reshape(21, 3),
            "K": np.asarray(ann["K"], np.float32).reshape(3, 3),
            "joint_valid": np.asarray(ann.get("joint_valid", [1] * 21), np.float32).reshape(21),
        }
        valid = bool(ann.get("mano_valid")) and ann.get("theta") is not None
        out["theta"] = (np.asarray(ann["theta"], np.float32).reshape(16, 3) if valid
                        else np.zeros((16, 3), np.float32))
        out["betas"] = (np.asarray(ann["betas"], np.float32).reshape(10) if valid
                        else np.zeros(10, np.float32))
        out["mano_valid"] = np.float32(valid)
        out["left"] = ann.get("side", "right") == "left"
    except (ValueError, KeyError, TypeError) as e:
        raise BadSample(f"malformed json: {e}") from None
    if not np.isfinite(out["joints_cam"]).all() or not np.isfinite(out["K"]).all():
        raise BadSample("non-finite joints_cam or K")
    return out


def decode(raw: RawSample, cfg: DictConfig, rng: np.random.Generator | None) -> dict[str, Any]:
    """``rng`` None: validation (no augmentation). Returns one sample of the batch schema."""
    ann = parse_annotation(raw.parts["json"])
    try:
        img = Image.open(io.BytesIO(raw.parts["jpg"]))
        img = img.convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        raise BadSample(f"undecodable image: {e}") from None
    K, joints = ann["K"].copy(), ann["joints_cam"].copy()
    w, h = img.size
    if ann["left"]:  # mirror to a right hand: x -> -x, u -> w - u
        img = img.transpose(Image.FLIP_LEFT_RIGHT)
        joints[:, 0] *= -1
        K[0, 2] = w - K[0, 2]
        ann["mano_valid"] = np.float32(0.0)
    side = float(min(w, h))
    cx, cy = w / 2, h / 2
    aug = cfg.TRAIN.augmentation
    if rng is not None:
        side *= 1.0 + rng.uniform(-aug.scale_jitter, aug.scale_jitter)
        cx += rng.uniform(-1, 1) * aug.crop_jitter * side
        cy += rng.uniform(-1, 1) * aug.crop_jitter * side
    x0, y0 = cx - side / 2, cy - side / 2
    size = cfg.MODEL.img_size
    img = img.transform((size, size), Image.EXTENT, (x0, y0, x0 + side, y0 + side),
                        Image.BILINEAR)
    scale = size / side
    K[0, :] *= scale
    K[1, :] *= scale
    K[0, 2] -= x0 * scale
    K[1, 2] -= y0 * scale
    if rng is not None and aug.blur_p > 0 and rng.random() < aug.blur_p:
        img = img.filter(ImageFilter.GaussianBlur(aug.blur_sigma * rng.uniform(0.5, 1.5)))
    arr = np.asarray(img, np.float32) / 255.0
    if rng is not None and aug.color_jitter > 0:
        c = aug.color_jitter
        gray = arr.mean(axis=2, keepdims=True)
        arr = gray + (arr - gray) * rng.uniform(1 - c, 1 + c)  # saturation
        arr = (arr - arr.mean()) * rng.uniform(1 - c, 1 + c) + arr.mean()  # contrast
        arr = arr * rng.uniform(1 - c, 1 + c, 3).astype(np.float32)  # brightness per channel
        arr = np.clip(arr, 0, 1)
    arr = (arr - MEAN) / STD
    return {
        "img": torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1), np.float32)),
        "K": torch.from_numpy(K), "joints_cam": torch.from_numpy(joints),
        "joint_valid": torch.from_numpy(ann["joint_valid"]),
        "theta": torch.from_numpy(ann["theta"]), "betas": torch.from_numpy(ann["betas"]),
        "mano_valid": torch.tensor(ann["mano_valid"]), "key": raw.key,
    }


def collate(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """List of samples -> batch dict (tensors stacked along dim 0, ``key`` a list)."""
    out: dict[str, Any] = {k: torch.stack([s[k] for s in samples]) for k in samples[0]
                           if k != "key"}
    out["key"] = [s["key"] for s in samples]
    return out
