"""Convert a FreiHAND download into shards (mm, our schema).

    python -m handpose.data.freihand --root DIR --out DIR [--val-fraction F] [--seed S]

FreiHAND: ``training_xyz.json`` (N x 21 x 3, metres, camera space, OpenPose joint order, the
same as ours), ``training_K.json`` (N x 3 x 3), ``training_mano.json`` (N x 1 x 61: MANO pose,
shape, translation) and ``training/rgb/%08d.jpg`` with 4 N images: image ``i + k N``
(k = 0..3, four backgrounds) shares annotation ``i``. MANO parameters do not belong to our
kinematic model, so ``theta``/``betas`` are null and ``mano_valid`` = 0. A held-out
validation split keeps all four versions of an annotation on the same side.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

import numpy as np
import webdataset as wds
from tqdm import tqdm

from handpose.data.synthetic import SAMPLES_PER_SHARD
from handpose.errors import DataError, run_cli

VERSIONS = 4


def load_annotations(root: Path) -> tuple[np.ndarray, np.ndarray]:
    """-> joints (N, 21, 3) in mm and K (N, 3, 3)."""
    try:
        xyz = np.asarray(json.loads((root / "training_xyz.json").read_text()), np.float64)
        K = np.asarray(json.loads((root / "training_K.json").read_text()), np.float64)
    except (OSError, ValueError) as e:
        raise DataError(f"FreiHAND root {root}: cannot read annotations ({e})") from None
    if xyz.ndim != 3 or xyz.shape[1:] != (21, 3) or K.shape != (len(xyz), 3, 3):
        raise DataError(f"FreiHAND root {root}: unexpected shapes xyz {xyz.shape} K {K.shape}")
    return xyz * 1000.0, K  # metres -> mm


def convert(root: str | Path, out: str | Path, val_fraction: float = 0.0,
            seed: int = 0) -> dict[str, int]:
    root, out = Path(root), Path(out)
    joints, K = load_annotations(root)
    n = len(joints)
    rgb = root / "training" / "rgb"
    ids = list(range(n))
    random.Random(seed).shuffle(ids)
    val_ids = set(ids[: int(round(val_fraction * n))])
    out.mkdir(parents=True, exist_ok=True)
    counts = {"train": 0, "val": 0}
    writers: dict[str, wds.ShardWriter] = {
        split: wds.ShardWriter(str(out / f"{split}-%06d.tar"), maxcount=SAMPLES_PER_SHARD,
                               verbose=0, mtime=0.0)
        for split in ("train", "val") if split == "train" or val_ids}
    with tqdm(total=VERSIONS * n, desc="FreiHAND", unit="img", file=sys.stderr) as bar:
        for version in range(VERSIONS):
            for i in range(n):
                image = rgb / f"{i + version * n:08d}.jpg"
                bar.update(1)
                if not image.is_file():
                    continue
                split = "val" if i in val_ids else "train"
                ann = {"joints_cam": np.round(joints[i], 3).tolist(), "K": K[i].tolist(),
                       "joint_valid": [1] * 21, "theta": None, "betas": None, "mano_valid": 0,
                       "side": "right", "source": "freihand"}
                writers[split].write({"__key__": f"freihand-{i + version * n:08d}",
                                      "jpg": image.read_bytes(),
                                      "json": json.dumps(ann).encode()})
                counts[split] += 1
    for w in writers.values():
        w.close()
    if not counts["train"] + counts["val"]:
        raise DataError(f"FreiHAND root {root}: no image found under {rgb}")
    (out / "manifest.json").write_text(json.dumps(
        {"source": "freihand", "root": str(root), "counts": counts, "units": "mm",
         "val_fraction": val_fraction, "seed": seed}, indent=2))
    return counts


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Convert FreiHAND into WebDataset shards (mm).")
    p.add_argument("--root", required=True, help="FreiHAND folder (training_xyz.json, ...)")
    p.add_argument("--out", required=True, help="output folder for the shards")
    p.add_argument("--val-fraction", type=float, default=0.0,
                   help="fraction of annotations held out as val-*.tar (all 4 versions)")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    if not Path(a.root).is_dir():
        raise DataError(f"--root {a.root}: no such folder")
    counts = convert(a.root, a.out, a.val_fraction, a.seed)
    print(f"wrote {counts['train']} train + {counts['val']} val samples to {a.out}")
    return 0


if __name__ == "__main__":
    run_cli(main)
