"""Synthetic hand shards, the embedded default data set.

    python -m handpose.data.synthetic --out DIR [--train N] [--val M] [--seed S] [--image-size P]

Samples come from the network's own kinematic model (:mod:`handpose.model.kinematics`):
plausible poses within the joint limits (a correlated curl per finger plus per-joint noise,
abduction, a global orientation around palm-towards-camera), bone lengths from random
``betas``, a random root depth, focal length, principal point and image position, rendered
by :mod:`handpose.data.render`. The ranges live in :mod:`handpose.data.difficulty`. Each
sample's randomness is seeded from (seed, split, index), tars are written with fixed
metadata, so the same arguments give byte-identical shards. Writing goes to a temporary
folder renamed at the end: a crash never leaves a half data set.
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

from handpose.config import SyntheticCfg
from handpose.data.difficulty import DEFAULT, Difficulty
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

GENERATOR = "handpose.data.synthetic"
GENERATOR_VERSION = "2"  # bump when the sampling or rendering code changes the bytes
SAMPLES_PER_SHARD = 1000
SPLIT_IDS = {"train": 0, "val": 1}
JPEG_QUALITY = 92


def _rotation(axis: np.ndarray, angle: float) -> np.ndarray:
    """(3, 3) rotation by ``angle`` rad about the unit ``axis`` (3,)."""
    return axis_angle_to_matrix(torch.tensor(axis * angle, dtype=torch.float64)).numpy()


def sample_pose(
    rng: np.random.Generator, d: Difficulty = DEFAULT
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """-> flexion (5, 3) deg, abduction (5,) deg, global orientation (3,) axis-angle rad."""
    flex = np.zeros((5, 3))
    abd = np.zeros(5)
    for f, name in enumerate(FINGERS):
        curl = rng.uniform(*d.curl)  # one curl per finger: its joints bend together
        for k, (lo, hi) in enumerate(FLEX_LIMITS[name]):
            t = np.clip(curl + rng.normal(0, d.curl_noise), 0, 1)
            flex[f, k] = lo + t * (hi - lo)
        lo, hi = ABD_LIMITS[name]
        abd[f] = rng.uniform(lo, hi)
    # base: palm towards the camera, fingers up in the image (camera y points down)
    base = _rotation(np.array([1.0, 0.0, 0.0]), math.pi)
    roll = _rotation(np.array([0.0, 0.0, 1.0]), math.radians(rng.uniform(-d.roll_deg, d.roll_deg)))
    tilt_axis = np.array([rng.normal(), rng.normal(), 0.0])
    tilt_axis /= np.linalg.norm(tilt_axis) + 1e-9
    tilt = _rotation(tilt_axis, math.radians(rng.uniform(-d.tilt_deg, d.tilt_deg)))
    glob = torch.tensor(roll @ tilt @ base)
    return flex, abd, matrix_to_axis_angle(glob).numpy()


def make_sample(
    kin: HandKinematics,
    seed: int,
    split: str,
    index: int,
    image_size: int,
    difficulty: Difficulty = DEFAULT,
) -> dict[str, Any]:
    """One sample ``{"__key__", "jpg": bytes, "json": dict}``, deterministic in its arguments.

    Poses are redrawn until every joint lies in front of the camera and inside the image.
    """
    d = difficulty
    rng = np.random.default_rng([seed, SPLIT_IDS[split], index])
    while True:
        flex, abd, glob = sample_pose(rng, d)
        betas = np.clip(rng.normal(0, d.betas_std, 10), -d.betas_clip, d.betas_clip)
        theta = angles_to_theta(
            torch.tensor(flex[None], dtype=torch.float32),
            torch.tensor(abd[None], dtype=torch.float32),
            torch.tensor(glob[None], dtype=torch.float32),
        )
        rel = kin.forward_theta(theta, torch.tensor(betas[None], dtype=torch.float32))[0]
        rel = rel.double().numpy()  # (21, 3) mm, wrist at the origin
        f = rng.uniform(*d.focal_px_per_128) * image_size / 128
        jitter = d.principal_jitter_px_per_128
        c = image_size / 2 + rng.uniform(-jitter, jitter, 2) * image_size / 128
        K = np.array([[f, 0, c[0]], [0, f, c[1]], [0, 0, 1.0]])
        depth = rng.uniform(*d.depth_mm)
        centre = rel.mean(0)  # place the hand's centre at a jittered image position
        target = image_size / 2 + rng.normal(0, d.centre_jitter * image_size, 2)
        z_c = depth + centre[2]
        root = np.array(
            [
                (target[0] - c[0]) / f * z_c - centre[0],
                (target[1] - c[1]) / f * z_c - centre[1],
                depth,
            ]
        )
        joints = rel + root
        uv = project(joints, K)
        margin = d.margin * image_size
        inside = (uv > margin).all() and (uv < image_size - margin).all()
        if joints[:, 2].min() > 100 and inside:
            break
    img = render_hand(joints, K, image_size, rng, d)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=JPEG_QUALITY)
    ann = {
        "joints_cam": np.round(joints, 3).tolist(),
        "K": np.round(K, 4).tolist(),
        "joint_valid": [1] * 21,
        "theta": np.round(theta[0].numpy(), 6).tolist(),
        "betas": np.round(betas, 6).tolist(),
        "mano_valid": 1,
        "hand_model": "kinematic",
        "side": "right",
        "source": "synthetic",
    }
    return {"__key__": f"{split}-{index:07d}", "jpg": buf.getvalue(), "json": ann}


def write_split(
    out: Path,
    split: str,
    count: int,
    seed: int,
    image_size: int,
    progress: tqdm | None = None,
    difficulty: Difficulty = DEFAULT,
) -> list[str]:
    """Write ``count`` samples of ``split`` as ``{split}-NNNNNN.tar`` shards of up to
    ``SAMPLES_PER_SHARD`` samples; -> shard file names."""
    kin = HandKinematics()
    names = []
    for shard in range(math.ceil(count / SAMPLES_PER_SHARD)):
        name = f"{split}-{shard:06d}.tar"
        first, stop = shard * SAMPLES_PER_SHARD, min(count, (shard + 1) * SAMPLES_PER_SHARD)
        with open(out / name, "wb") as fh, wds.TarWriter(fh, mtime=0.0) as sink:
            for index in range(first, stop):
                sample = make_sample(kin, seed, split, index, image_size, difficulty)
                sample["json"] = json.dumps(sample["json"], sort_keys=True).encode()
                sink.write(sample)
                if progress is not None:
                    progress.update(1)
        names.append(name)
    return names


def manifest_for(
    train: int, val: int, seed: int, image_size: int, difficulty: Difficulty = DEFAULT
) -> dict[str, Any]:
    """What ``manifest.json`` records about a generation (besides the shard names)."""
    return {
        "generator": GENERATOR,
        "version": GENERATOR_VERSION,
        "seed": seed,
        "image_size": image_size,
        "counts": {"train": train, "val": val},
        "difficulty": difficulty.as_dict(),
        "units": "mm",
    }


def _read_manifest(folder: Path) -> dict[str, Any] | None:
    try:
        return json.loads((folder / "manifest.json").read_text())
    except (OSError, ValueError):
        return None


def generate(
    out: str | Path,
    train: int,
    val: int,
    seed: int = 0,
    image_size: int = 128,
    quiet: bool = False,
    difficulty: Difficulty = DEFAULT,
) -> Path:
    """Write ``train`` + ``val`` samples to ``out`` (replacing an earlier generation there)
    with a tqdm bar on stderr; -> ``out``. Raises :class:`UserError` for bad sizes or an
    ``out`` that holds other files."""
    if train < 1 or val < 1 or image_size < 32:
        raise UserError(
            f"synthetic data: want train, val >= 1 and image size >= 32 "
            f"(got {train}, {val}, {image_size})"
        )
    out = Path(out)
    previous = _read_manifest(out)
    if out.exists() and any(out.iterdir()) and (previous or {}).get("generator") != GENERATOR:
        raise UserError(f"--out {out}: folder exists and was not written by {GENERATOR}")
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: threads only add overhead
    try:
        with tqdm(
            total=train + val,
            desc=f"synthetic hands -> {out}",
            unit="img",
            disable=quiet,
            file=sys.stderr,
            mininterval=0.5 if sys.stderr.isatty() else 10,
        ) as bar:
            shards = {
                s: write_split(tmp, s, n, seed, image_size, bar, difficulty)
                for s, n in (("train", train), ("val", val))
            }
        manifest = {**manifest_for(train, val, seed, image_size, difficulty), "shards": shards}
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True))
        _publish(tmp, out, manifest)
    finally:
        torch.set_num_threads(threads)
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def _publish(tmp: Path, out: Path, manifest: dict[str, Any]) -> None:
    """Move ``tmp`` to ``out``; if a parallel process got there first with the same data
    set, keep theirs."""
    if _read_manifest(out) == manifest:
        return
    shutil.rmtree(out, ignore_errors=True)
    try:
        tmp.rename(out)
    except OSError:
        if _read_manifest(out) != manifest:
            raise


def main(argv: list[str] | None = None) -> int:
    d = SyntheticCfg()  # the sizes training generates on first use
    p = argparse.ArgumentParser(description="Write synthetic hand shards (WebDataset).")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--train", type=int, default=d.train, help="train samples")
    p.add_argument("--val", type=int, default=d.val, help="validation samples")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--image-size", type=int, default=d.image_size, help="image side, px")
    a = p.parse_args(argv)
    generate(a.out, a.train, a.val, a.seed, a.image_size)
    print(f"wrote {a.train} train + {a.val} val samples to {a.out}")
    return 0


if __name__ == "__main__":
    run_cli(main)
