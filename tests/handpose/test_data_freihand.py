"""FreiHAND conversion on a tiny FreiHAND-format folder written here: units, order, counts."""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile

import numpy as np
import torch
from PIL import Image

from handpose.config import load_config
from handpose.data import build_val_stream
from handpose.data.freihand import convert
from tests.helpers import REPO


def _freihand(root, n=3, which="training", versions=4):
    """Write ``n`` annotations (metres) and ``versions * n`` images; -> xyz (n, 21, 3) m."""
    rng = np.random.default_rng(0)
    xyz = rng.uniform(-0.05, 0.05, (n, 21, 3)) + np.array([0, 0, 0.5])
    K = np.tile(np.array([[500.0, 0, 112], [0, 500.0, 112], [0, 0, 1]]), (n, 1, 1))
    K[:, 0, 0] += np.arange(n)  # tell the annotations' K apart
    (root / which / "rgb").mkdir(parents=True)
    (root / f"{which}_xyz.json").write_text(json.dumps(xyz.tolist()))
    (root / f"{which}_K.json").write_text(json.dumps(K.tolist()))
    (root / f"{which}_mano.json").write_text(json.dumps(rng.normal(size=(n, 1, 61)).tolist()))
    for i in range(versions * n):  # background versions share annotation i % n
        Image.new("RGB", (224, 224), (i * 20 % 255, 0, 0)).save(
            root / which / "rgb" / f"{i:08d}.jpg"
        )
    return xyz


def _val_batch(folder, split="train"):
    cfg = load_config(
        "stage1-tiny", [f"DATA.val.source=[{folder}/{split}-*.tar]", "DATA.val_batch_size=64"]
    )
    (batch,) = list(build_val_stream(cfg))
    return batch


def test_conversion_units_joint_order_and_counts(tmp_path):
    xyz = _freihand(tmp_path / "fh")
    out = tmp_path / "shards"
    cmd = ["-m", "handpose.data.freihand", "--root", str(tmp_path / "fh"), "--out", str(out)]
    proc = subprocess.run(
        [sys.executable, *cmd], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"] == {"train": 12, "val": 0, "missing": 0}
    assert sorted(p.name for p in out.glob("*.tar")) == ["train-000000.tar"]
    with tarfile.open(out / "train-000000.tar") as tar:
        ann = json.loads(tar.extractfile("freihand-00000000.json").read())
    assert ann["theta"] is None and ann["betas"] is None and ann["mano_valid"] == 0
    batch = _val_batch(out)
    assert batch["key"] == [f"freihand-{i:08d}" for i in range(12)]
    for i, key in enumerate(batch["key"]):  # image i + k n shares annotation i
        idx = int(key.split("-")[1]) % 3
        # metres -> millimetres, every joint where it was (joint order unchanged)
        torch.testing.assert_close(
            batch["joints_cam"][i].double(), torch.tensor(xyz[idx] * 1000.0), atol=1e-3, rtol=0
        )
        assert batch["K"][i, 0, 0] == (500.0 + idx) * 112 / 224  # 224 px stored -> 112 px
    assert batch["mano_valid"].sum() == 0 and batch["theta"].abs().sum() == 0


def test_held_out_annotations_keep_their_four_versions_together(tmp_path):
    _freihand(tmp_path / "fh", n=4)
    counts = convert(tmp_path / "fh", tmp_path / "s", val_fraction=0.25)
    assert counts == {"train": 12, "val": 4, "missing": 0}
    val = {int(k.split("-")[1]) for k in _val_batch(tmp_path / "s", "val")["key"]}
    assert len({i % 4 for i in val}) == 1 and len(val) == 4


def test_evaluation_set_missing_images_and_bad_root(tmp_path):
    _freihand(tmp_path / "fh", n=3, which="evaluation", versions=1)
    (tmp_path / "fh" / "evaluation" / "rgb" / "00000001.jpg").unlink()
    counts = convert(tmp_path / "fh", tmp_path / "s", which="evaluation")
    assert counts == {"train": 0, "val": 2, "missing": 1}
    assert _val_batch(tmp_path / "s", "val")["key"] == ["freihand-00000000", "freihand-00000002"]
    assert not list(tmp_path.glob(".s.tmp-*")) and not list((tmp_path / "s").glob("train-*"))
    cmd = [
        "-m",
        "handpose.data.freihand",
        "--root",
        str(tmp_path / "missing"),
        "--out",
        str(tmp_path / "o"),
    ]
    proc = subprocess.run(
        [sys.executable, *cmd], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2 and "missing" in proc.stderr.strip().splitlines()[-1]


def test_principal_point_moves_to_our_pixel_convention(tmp_path):
    """FreiHAND's K centres pixel i at i (its viewer); ours at i + 0.5: cx, cy + 0.5 px."""
    from handpose.data.freihand import load_annotations

    _freihand(tmp_path, n=2, versions=1)
    _, K = load_annotations(tmp_path)
    assert np.allclose(K[:, 0, 2], 112.5) and np.allclose(K[:, 1, 2], 112.5)
    assert np.allclose(K[:, 0, 0], [500.0, 501.0]) and np.allclose(K[:, 2], [0, 0, 1])
