"""Decode one raw sample into named tensors (one row of the batch dict in docs/internals.md).

Steps: parse and check the json; decode the jpg; mirror a left hand to a right hand; crop a
square around the image centre (with scale/shift jitter when augmenting) and resize it to
``MODEL.img_size``; Gaussian blur with probability ``TRAIN.augmentation.blur_p``; colour
jitter; ImageNet normalisation. ``K`` follows every geometric change so projections of
``joints_cam`` stay exact. Pixel coordinates are continuous (pixel ``i`` covers
``[i, i + 1)``), the convention of PIL's transforms.

What decoding needs from the config is a :class:`DecodeCfg` (``DecodeCfg.from_config``).
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from PIL import Image, ImageFilter

from handpose.config import AugmentationCfg
from handpose.data.shards import RawSample

MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)


# Shards without the optional ``hand_model`` tag: their source says which model their
# theta/betas belong to (our synthetic generator poses our kinematic hand).
UNTAGGED_SOURCE_MODEL = {"synthetic": "kinematic"}


@dataclass(frozen=True)
class DecodeCfg:
    """What decoding one sample needs: the output size ``img_size`` (px), the training
    ``augmentation`` and ``hand_model`` (``MODEL.hand_model``: whose theta/betas to trust)."""

    img_size: int
    augmentation: AugmentationCfg
    hand_model: str = "kinematic"

    @classmethod
    def from_config(cls, cfg: DictConfig) -> DecodeCfg:
        aug = OmegaConf.to_object(cfg.TRAIN.augmentation)
        return cls(cfg.MODEL.img_size, aug, cfg.MODEL.hand_model)


class BadSample(ValueError):
    """An undecodable image or a malformed annotation."""


def theta_model(ann: dict[str, Any]) -> str | None:
    """The hand model an annotation's ``theta``/``betas`` belong to: its ``hand_model`` tag,
    else what its ``source`` implies (:data:`UNTAGGED_SOURCE_MODEL`), else None (unknown)."""
    return ann.get("hand_model") or UNTAGGED_SOURCE_MODEL.get(ann.get("source"))


def parse_annotation(raw: bytes, hand_model: str = "kinematic") -> dict[str, Any]:
    """The json part -> ``joints_cam`` (21, 3) mm, ``K`` (3, 3), ``joint_valid`` (21,),
    ``theta`` (16, 3) rad, ``betas`` (10,), ``mano_valid`` (scalar), ``left`` (bool).

    ``theta``/``betas`` are used (``mano_valid`` 1) only when the json has ``mano_valid`` 1,
    a ``theta`` and :func:`theta_model` equal to ``hand_model``; otherwise they are zeros
    with ``mano_valid`` 0 (e.g. real MANO parameters, another joint order and rest frame,
    are never trained on as if they were our kinematic model's).
    Raises :class:`BadSample` for malformed json, wrong shapes or non-finite values.
    """
    try:
        ann = json.loads(raw)
        out = {
            "joints_cam": np.asarray(ann["joints_cam"], np.float32).reshape(21, 3),
            "K": np.asarray(ann["K"], np.float32).reshape(3, 3),
            "joint_valid": np.asarray(ann.get("joint_valid", [1] * 21), np.float32).reshape(21),
        }
        valid = (
            bool(ann.get("mano_valid"))
            and ann.get("theta") is not None
            and theta_model(ann) == hand_model
        )
        out["theta"] = np.zeros((16, 3), np.float32)
        out["betas"] = np.zeros(10, np.float32)
        if valid:
            out["theta"] = np.asarray(ann["theta"], np.float32).reshape(16, 3)
            out["betas"] = np.asarray(ann["betas"], np.float32).reshape(10)
        out["mano_valid"] = np.float32(valid)
        out["left"] = ann.get("side", "right") == "left"
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise BadSample(f"malformed json: {e}") from None
    if not all(np.isfinite(out[k]).all() for k in ("joints_cam", "K", "theta", "betas")):
        raise BadSample("non-finite values in the json")
    return out


def _open_image(data: bytes) -> Image.Image:
    try:
        img = Image.open(io.BytesIO(data))
        return img.convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        raise BadSample(f"undecodable image: {e}") from None


def _draws(rng: np.random.Generator | None) -> dict[str, Any] | None:
    """All random numbers of one sample's augmentation, drawn in a fixed order whatever the
    settings, so that e.g. turning blur on changes nothing else about a sample."""
    if rng is None:
        return None
    return {
        "scale": rng.uniform(-1, 1),
        "shift": rng.uniform(-1, 1, 2),
        "blur": rng.random(),
        "blur_sigma": rng.uniform(0.5, 1.5),
        "saturation": rng.uniform(-1, 1),
        "contrast": rng.uniform(-1, 1),
        "brightness": rng.uniform(-1, 1, 3),
    }


def decode(
    raw: RawSample, decode_cfg: DecodeCfg, rng: np.random.Generator | None
) -> dict[str, Any]:
    """One sample of the batch schema; ``rng`` None means no augmentation (validation).

    Raises :class:`BadSample` when the json or the image cannot be used.
    """
    ann = parse_annotation(raw.parts["json"], decode_cfg.hand_model)
    img = _open_image(raw.parts["jpg"])
    K, joints = ann["K"].copy(), ann["joints_cam"].copy()
    w, h = img.size
    if ann["left"]:  # mirror to a right hand: x -> -x in camera space, u -> w - u
        img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        joints[:, 0] *= -1
        K[0, 2] = w - K[0, 2]
        K[0, 1] *= -1
        ann["mano_valid"] = np.float32(0.0)  # a left hand's theta is not a right hand's
        ann["theta"][:] = 0
        ann["betas"][:] = 0
    r = _draws(rng)
    aug = decode_cfg.augmentation
    side = float(min(w, h))
    cx, cy = w / 2, h / 2
    if r is not None:
        side *= 1.0 + r["scale"] * aug.scale_jitter
        cx += r["shift"][0] * aug.crop_jitter * side
        cy += r["shift"][1] * aug.crop_jitter * side
    x0, y0 = cx - side / 2, cy - side / 2
    size = decode_cfg.img_size
    box = (x0, y0, x0 + side, y0 + side)
    img = img.transform((size, size), Image.Transform.EXTENT, box, Image.Resampling.BILINEAR)
    scale = size / side  # u' = (u - x0) * scale
    K[:2] *= scale
    K[0, 2] -= x0 * scale
    K[1, 2] -= y0 * scale
    if r is not None and r["blur"] < aug.blur_p:
        img = img.filter(ImageFilter.GaussianBlur(aug.blur_sigma * r["blur_sigma"]))
    arr = np.asarray(img, np.float32) / 255.0
    if r is not None and aug.color_jitter > 0:
        c = aug.color_jitter
        gray = arr.mean(axis=2, keepdims=True)
        arr = gray + (arr - gray) * (1 + c * r["saturation"])
        arr = (arr - arr.mean()) * (1 + c * r["contrast"]) + arr.mean()
        arr = arr * (1 + c * r["brightness"]).astype(np.float32)
        arr = np.clip(arr, 0, 1)
    arr = (arr - MEAN) / STD
    return {
        "img": torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1), np.float32)),
        "K": torch.from_numpy(K),
        "joints_cam": torch.from_numpy(joints),
        "joint_valid": torch.from_numpy(ann["joint_valid"]),
        "theta": torch.from_numpy(ann["theta"]),
        "betas": torch.from_numpy(ann["betas"]),
        "mano_valid": torch.tensor(ann["mano_valid"]),
        "key": raw.key,
    }


def collate(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """List of samples -> batch dict (tensors stacked along dim 0, ``key`` a list)."""
    out: dict[str, Any] = {
        k: torch.stack([s[k] for s in samples]) for k in samples[0] if k != "key"
    }
    out["key"] = [s["key"] for s in samples]
    return out
