"""Synthetic hand shards, the embedded default data set.

    python -m handpose.data.synthetic --out DIR [--train N] [--val M] [--seed S] [--image-size P]

Samples come from the network's own kinematic model (:mod:`handpose.model.kinematics`):
plausible poses within joint limits, bone lengths from ``betas``, a random root position and
camera; rendered by :mod:`handpose.data.render`. Each sample's randomness is seeded from
(seed, split, index), so the same arguments give byte-identical shards.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
import webdataset as wds
from PIL import Image
from tqdm import tqdm

from handpose.data.render import project, render_hand
from handpose.errors import UserError, run_cli
from handpose.model.kinematics import (
    ABD_LIMITS,
    FINGERS,
    FLEX_LIMITS,
    HandKinematics,
    angles_to_theta,
    axis_angle_to_matrix,
    matrix_to_axis_angle,
)

GENERATOR_VERSION = "1"
SAMPLES_PER_SHARD = 1000
SPLIT_IDS = {"train": 0, "val": 1}
DEPTH_MM = (300.0, 550.0)
FOCAL_PX_PER_128 = (200.0, 250.0)  # focal length for a 128 px image (scaled with size)
CENTRE_JITTER = 0.08  # hand centre offset from the image centre, fraction of the size
TILT_DEG = 40.0  # out-of-plane rotation range around the palm-facing-camera pose
ROLL_DEG = 60.0  # in-plane rotation range (0 = fingers up)


def _rotation(axis: np.ndarray, angle: float) -> np.ndarray:
    return axis_angle_to_matrix(torch.tensor(axis * angle, dtype=torch.float64)).numpy()


def sample_pose(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """-> flexion (5, 3) deg, abduction (5,) deg, global orientation (3,) axis-angle."""
    flex = np.zeros((5, 3))
    abd = np.zeros(5)
    for f, name in enumerate(FINGERS):
        curl = rng.uniform(-0.1, 1.0)  # one curl per finger, joints correlated
        for k, (lo, hi) in enumerate(FLEX_LIMITS[name]):
            t = np.clip(curl + rng.normal(0, 0.2), 0, 1)
            flex[f, k] = lo + t * (hi - lo)
        lo, hi = ABD_LIMITS[name]
        abd[f] = rng.uniform(lo, hi)
    # base: palm towards the camera, fingers up in the image (camera y points down)
    base = _rotation(np.array([1.0, 0.0, 0.0]), math.pi)
    roll = _rotation(np.array([0.0, 0.0, 1.0]), math.radians(rng.uniform(-ROLL_DEG, ROLL_DEG)))
    tilt_axis = np.array([rng.normal(), rng.normal(), 0.0])
    tilt = _rotation(tilt_axis / (np.linalg.norm(tilt_axis) + 1e-9),
                     math.radians(rng.uniform(-TILT_DEG, TILT_DEG)))
    glob = torch.tensor(roll @ tilt @ base)
    return flex, abd, matrix_to_axis_angle(glob).numpy()


def make_sample(kin: HandKinematics, seed: int, split: str, index: int,
                image_size: int) -> dict[str, Any]:
    """One sample: ``{"__key__", "jpg" (bytes), "json" (dict)}``; deterministic in its args."""
    rng = np.random.default_rng([seed, SPLIT_IDS[split], index])
    while True:
        flex, abd, glob = sample_pose(rng)
        betas = np.clip(rng.normal(0, 1, 10), -2.5, 2.5)
        theta = angles_to_theta(torch.tensor(flex[None], dtype=torch.float32),
                                torch.tensor(abd[None], dtype=torch.float32),
                                torch.tensor(glob[None], dtype=torch.float32))
        rel = kin.forward_theta(theta, torch.tensor(betas[None], dtype=torch.float32))[0]
        rel = rel.double().numpy()
        f = rng.uniform(*FOCAL_PX_PER_128) * image_size / 128
        c = image_size / 2 + rng.uniform(-4, 4, 2) * image_size / 128
        K = np.array([[f, 0, c[0]], [0, f, c[1]], [0, 0, 1.0]])
        depth = rng.uniform(*DEPTH_MM)
        centre = rel.mean(0)
        target = image_size / 2 + rng.normal(0, CENTRE_JITTER * image_size, 2)
        z_c = depth + centre[2]
        root = np.array([(target[0] - c[0]) / f * z_c - centre[0],
                         (target[1] - c[1]) / f * z_c - centre[1], depth])
        joints = rel + root
        uv = project(joints, K)
        margin = 0.02 * image_size
        if joints[:, 2].min() > 100 and (uv > margin).all() and (uv < image_size - margin).all():
            break
    img = render_hand(joints, K, image_size, rng)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=92)
    ann = {
        "joints_cam": np.round(joints, 3).tolist(), "K": np.round(K, 4).tolist(),
        "joint_valid": [1] * 21, "theta": np.round(theta[0].numpy(), 6).tolist(),
        "betas": np.round(betas, 6).tolist(), "mano_valid": 1, "side": "right",
        "source": "synthetic",
    }
    return {"__key__": f"{split}-{index:07d}", "jpg": buf.getvalue(), "json": ann}


def write_split(out: Path, split: str, count: int, seed: int, image_size: int,
                progress: tqdm | None = None) -> list[str]:
    """Write ``count`` samples of ``split`` as ``{split}-NNNNNN.tar`` shards; -> shard names."""
    kin = HandKinematics()
    names = []
    for shard in range(math.ceil(count / SAMPLES_PER_SHARD)):
        name = f"{split}-{shard:06d}.tar"
        with open(out / name, "wb") as fh, wds.TarWriter(fh, mtime=0.0) as sink:
            for index in range(shard * SAMPLES_PER_SHARD,
                               min(count, (shard + 1) * SAMPLES_PER_SHARD)):
                sample = make_sample(kin, seed, split, index, image_size)
                sample["json"] = json.dumps(sample["json"], sort_keys=True).encode()
                sink.write(sample)
                if progress is not None:
                    progress.update(1)
        names.append(name)
    return names


def generate(out: str | Path, train: int, val: int, seed: int = 0,
             image_size: int = 128, quiet: bool = False) -> Path:
    """Generate the data set into ``out`` atomically (temp folder, then rename)."""
    if train < 1 or val < 1 or image_size < 32:
        raise UserError(f"synthetic data: want train, val >= 1 and image size >= 32 "
                        f"(got {train}, {val}, {image_size})")
    out = Path(out)
    tmp = out.with_name(out.name + f".tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    torch.set_num_threads(1)
    with tqdm(total=train + val, desc=f"synthetic hands -> {out}", unit="img", disable=quiet,
              file=sys.stderr, mininterval=0.5 if sys.stderr.isatty() else 10) as bar:
        shards = {s: write_split(tmp, s, n, seed, image_size, bar)
                  for s, n in (("train", train), ("val", val))}
    manifest = {"generator": "handpose.data.synthetic", "version": GENERATOR_VERSION,
                "seed": seed, "image_size": image_size, "counts": {"train": train, "val": val},
                "shards": shards, "units": "mm"}
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True))
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Write synthetic hand shards (WebDataset).")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--train", type=int, default=4000, help="train samples")
    p.add_argument("--val", type=int, default=500, help="validation samples")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--image-size", type=int, default=128, help="image side, px")
    a = p.parse_args(argv)
    generate(a.out, a.train, a.val, a.seed, a.image_size)
    print(f"wrote {a.train} train + {a.val} val samples to {a.out}")
    return 0


if __name__ == "__main__":
    run_cli(main)
