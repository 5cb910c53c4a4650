"""Convert a FreiHAND download into shards (mm, our schema).

    python -m handpose.data.freihand --root DIR --out DIR [--val-fraction F] [--seed S]
                                     [--set training|evaluation]

FreiHAND (v2): ``training_xyz.json`` (N x 21 x 3, metres, camera space, the FreiHAND /
OpenPose joint order, which is ours), ``training_K.json`` (N x 3 x 3, px of the 224 x 224
images), ``training_mano.json`` (N x 1 x 61 MANO pose, shape, translation: not read) and
``training/rgb/%08d.jpg`` with 4 N images: image ``i + k N`` (k = 0..3, four backgrounds)
shares annotation ``i``. MANO parameters do not belong to our kinematic model, so
``theta``/``betas`` are null and ``mano_valid`` = 0. ``--val-fraction`` holds out a
fraction of the annotations as ``val-*.tar`` (all four versions of one annotation on the
same side); ``--set evaluation`` converts the evaluation set (``evaluation_*.json``, one
image per annotation) into ``val-*.tar``. Missing images are skipped and counted. Shards are
written to a temporary folder and moved into ``--out`` at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
from pathlib import Path

import numpy as np
import webdataset as wds
from tqdm import tqdm

from handpose.data.synthetic import SAMPLES_PER_SHARD
from handpose.errors import DataError, run_cli

VERSIONS = {"training": 4, "evaluation": 1}  # images per annotation


def load_annotations(root: Path, which: str = "training") -> tuple[np.ndarray, np.ndarray]:
    """-> joints (N, 21, 3) in mm (camera space) and K (N, 3, 3) in px (our convention)."""
    try:
        xyz = np.asarray(json.loads((root / f"{which}_xyz.json").read_text()), np.float64)
        K = np.asarray(json.loads((root / f"{which}_K.json").read_text()), np.float64)
    except (OSError, ValueError) as e:
        raise DataError(f"FreiHAND root {root}: cannot read {which} annotations ({e})") from None
    if xyz.ndim != 3 or xyz.shape[1:] != (21, 3) or K.shape != (len(xyz), 3, 3):
        raise DataError(f"FreiHAND root {root}: unexpected shapes xyz {xyz.shape} K {K.shape}")
    # Pixel convention: FreiHAND's own viewer (view_samples.py) draws projectPoints(xyz, K)
    # = K @ xyz, with no offset, over matplotlib's imshow, which centres pixel i at i: its K
    # puts pixel centres at integers. Ours (decode.py) has pixel i cover [i, i + 1), centre
    # i + 0.5, so the principal point moves by half a pixel (0.5 px at 224 px).
    K = K.copy()
    K[:, :2, 2] += 0.5
    return xyz * 1000.0, K  # metres -> mm


def _annotation(joints: np.ndarray, K: np.ndarray) -> bytes:
    ann = {
        "joints_cam": np.round(joints, 3).tolist(),
        "K": K.tolist(),
        "joint_valid": [1] * 21,
        "theta": None,
        "betas": None,
        "mano_valid": 0,
        "side": "right",
        "source": "freihand",
    }
    return json.dumps(ann).encode()


def convert(
    root: str | Path,
    out: str | Path,
    val_fraction: float = 0.0,
    seed: int = 0,
    which: str = "training",
) -> dict[str, int]:
    """Write ``train-*.tar`` / ``val-*.tar`` into ``out``; -> counts per split and
    ``missing`` (annotated images not found)."""
    root, out = Path(root), Path(out)
    if not 0.0 <= val_fraction < 1.0:
        raise DataError(f"--val-fraction {val_fraction}: must be in [0, 1)")
    joints, K = load_annotations(root, which)
    n, versions = len(joints), VERSIONS[which]
    rgb = root / which / "rgb"
    ids = list(range(n))
    random.Random(seed).shuffle(ids)
    val_ids = set(range(n)) if which == "evaluation" else set(ids[: round(val_fraction * n)])
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    counts = {"train": 0, "val": 0, "missing": 0}
    writers = {
        split: wds.ShardWriter(
            str(tmp / f"{split}-%06d.tar"), maxcount=SAMPLES_PER_SHARD, verbose=0, mtime=0.0
        )
        for split in ("train", "val")
    }
    try:
        with tqdm(total=versions * n, desc="FreiHAND", unit="img", file=sys.stderr) as bar:
            for version in range(versions):
                for i in range(n):
                    index = i + version * n
                    image = rgb / f"{index:08d}.jpg"
                    bar.update(1)
                    if not image.is_file():
                        counts["missing"] += 1
                        continue
                    split = "val" if i in val_ids else "train"
                    writers[split].write(
                        {
                            "__key__": f"freihand-{index:08d}",
                            "jpg": image.read_bytes(),
                            "json": _annotation(joints[i], K[i]),
                        }
                    )
                    counts[split] += 1
        for split, w in writers.items():
            w.close()
            if not counts[split]:  # no empty shard files
                for f in tmp.glob(f"{split}-*.tar"):
                    f.unlink()
        if not counts["train"] + counts["val"]:
            raise DataError(f"FreiHAND root {root}: no image found under {rgb}")
        manifest = {
            "source": "freihand",
            "set": which,
            "root": str(root),
            "counts": counts,
            "units": "mm",
            "val_fraction": val_fraction,
            "seed": seed,
        }
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2))
        out.mkdir(parents=True, exist_ok=True)
        for f in sorted(tmp.iterdir()):
            os.replace(f, out / f.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if counts["missing"]:
        print(f"warning: {counts['missing']} annotated images missing under {rgb}", file=sys.stderr)
    return counts


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Convert FreiHAND into WebDataset shards (mm).")
    p.add_argument("--root", required=True, help="FreiHAND folder (training_xyz.json, ...)")
    p.add_argument("--out", required=True, help="output folder for the shards")
    p.add_argument(
        "--val-fraction",
        type=float,
        default=0.0,
        help="fraction of annotations held out as val-*.tar (all 4 versions)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the held-out choice")
    p.add_argument(
        "--set",
        choices=sorted(VERSIONS),
        default="training",
        dest="which",
        help="evaluation: the FreiHAND evaluation set, written as val-*.tar",
    )
    a = p.parse_args(argv)
    if not Path(a.root).is_dir():
        raise DataError(f"--root {a.root}: no such folder")
    counts = convert(a.root, a.out, a.val_fraction, a.seed, a.which)
    print(f"wrote {counts['train']} train + {counts['val']} val samples to {a.out}")
    return 0


if __name__ == "__main__":
    run_cli(main)
