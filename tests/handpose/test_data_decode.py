"""Decoding: K follows crop, resize, jitter and left->right mirroring; blur changes nothing else."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch
from PIL import Image

from handpose.data.decode import MEAN, STD, DecodeCfg, decode
from handpose.data.render import project
from handpose.data.shards import RawSample
from tests.handpose.helpers import tiny_config

W, H = 160, 128  # not square: the centre crop drops columns


def _cfg(*extra):
    jitter = ("TRAIN.augmentation.crop_jitter=0.15", "TRAIN.augmentation.scale_jitter=0.3")
    return DecodeCfg.from_config(tiny_config(*jitter, *extra))


def _marker(left: bool) -> tuple[RawSample, np.ndarray]:
    """A black image with a white disc at the projection of the wrist; -> sample, joints.

    The left version is the mirror image of the right one (x -> -x, u -> W - u)."""
    rng = np.random.default_rng(1)
    joints = np.column_stack([rng.uniform(-30, 30, (21, 2)), rng.uniform(350, 450, 21)])
    K = np.array([[180.0, 0, 82.0], [0, 175.0, 61.0], [0, 0, 1]])
    if left:
        joints[:, 0] *= -1
        K[0, 2] = W - K[0, 2]
    u, v = project(joints[:1], K)[0]
    cols, rows = np.meshgrid(np.arange(W) + 0.5, np.arange(H) + 0.5)
    disc = ((cols - u) ** 2 + (rows - v) ** 2 <= 4.0**2).astype(np.uint8) * 255
    buf = io.BytesIO()
    Image.fromarray(np.stack([disc] * 3, -1)).save(buf, format="PNG")
    ann = {
        "joints_cam": joints.tolist(),
        "K": K.tolist(),
        "joint_valid": [1] * 21,
        "theta": np.zeros((16, 3)).tolist(),
        "betas": [0.0] * 10,
        "mano_valid": 1,
        "side": "left" if left else "right",
        "source": "test",
    }
    return RawSample(
        "m", "test.tar", {"jpg": buf.getvalue(), "json": json.dumps(ann).encode()}
    ), joints


def _centroid(img: torch.Tensor) -> np.ndarray:
    """(3, S, S) normalised image -> (u, v) of the bright disc, continuous px."""
    rgb = img.numpy().transpose(1, 2, 0) * STD + MEAN
    g = rgb.mean(-1)
    wgt = np.clip((g - g.min()) / (g.max() - g.min()) - 0.5, 0, None)
    rows, cols = np.nonzero(wgt)
    return np.array(
        [
            np.average(cols + 0.5, weights=wgt[rows, cols]),
            np.average(rows + 0.5, weights=wgt[rows, cols]),
        ]
    )


@pytest.mark.parametrize("left", [False, True])
@pytest.mark.parametrize("seed", [None, 0, 1, 2])
def test_k_follows_crop_jitter_and_mirroring(left, seed):
    raw, joints = _marker(left)
    rng = None if seed is None else np.random.default_rng(seed)
    out = decode(raw, _cfg(), rng)
    assert out["img"].shape == (3, 112, 112)
    expected = project(out["joints_cam"][:1].double().numpy(), out["K"].double().numpy())[0]
    np.testing.assert_allclose(_centroid(out["img"]), expected, atol=0.25)
    if left:  # the network sees a right hand: x flipped back, theta no longer meaningful
        np.testing.assert_allclose(out["joints_cam"][:, 0].numpy(), -joints[:, 0], atol=1e-4)
        assert out["mano_valid"] == 0 and out["theta"].abs().sum() == 0


def test_a_left_hand_decodes_like_its_right_twin():
    right, left = decode(_marker(False)[0], _cfg(), None), decode(_marker(True)[0], _cfg(), None)
    for k in ("K", "joints_cam", "img"):
        torch.testing.assert_close(right[k], left[k], atol=1e-4, rtol=0)


def test_blur_probability_changes_only_the_blur():
    raw, _ = _marker(False)
    outs = {
        p: decode(raw, _cfg(f"TRAIN.augmentation.blur_p={p}"), np.random.default_rng(5))
        for p in (0.0, 1.0)
    }
    assert torch.equal(outs[0.0]["K"], outs[1.0]["K"]), "same crop whatever blur_p"
    sharp, blurred = outs[0.0]["img"], outs[1.0]["img"]
    assert not torch.equal(sharp, blurred)
    assert blurred.std() < sharp.std()  # a blurred disc has softer edges
    # the draws that decide the crop/colour are the same, so the sum of intensities is close
    assert abs(float(sharp.mean() - blurred.mean())) < 0.02


@pytest.mark.parametrize(
    "extra, trusted",
    [
        ({"hand_model": "kinematic", "source": "third-party"}, True),
        ({"source": "synthetic"}, True),  # shards written before the tag: our own generator
        ({"source": "third-party"}, False),  # untagged: whose theta is unknown
        ({"hand_model": "mano", "source": "third-party"}, False),  # real MANO: other frames
    ],
)
def test_theta_is_trusted_only_for_our_hand_model(extra, trusted):
    from handpose.data.decode import parse_annotation

    ann = {
        "joints_cam": [[0, 0, 500]] * 21,
        "K": np.eye(3).tolist(),
        "mano_valid": 1,
        "theta": [[0.1, 0.2, 0.3]] * 16,
        "betas": [0.5] * 10,
        **extra,
    }
    out = parse_annotation(json.dumps(ann).encode(), "kinematic")
    assert out["mano_valid"] == float(trusted)
    assert bool(out["theta"].any()) == trusted and bool(out["betas"].any()) == trusted
