"""FreiHAND conversion on a tiny FreiHAND-format folder written here: units, order, counts."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import torch
from PIL import Image

from handpose.config import load_config
from handpose.data import build_val_stream

from .conftest import REPO


def _freihand(root, n=3):
    rng = np.random.default_rng(0)
    xyz = rng.uniform(-0.05, 0.05, (n, 21, 3)) + np.array([0, 0, 0.5])  # metres
    K = np.tile(np.array([[500.0, 0, 112], [0, 500.0, 112], [0, 0, 1]]), (n, 1, 1))
    (root / "training" / "rgb").mkdir(parents=True)
    (root / "training_xyz.json").write_text(json.dumps(xyz.tolist()))
    (root / "training_K.json").write_text(json.dumps(K.tolist()))
    (root / "training_mano.json").write_text(json.dumps(rng.normal(size=(n, 1, 61)).tolist()))
    for i in range(4 * n):  # four background versions share annotation i % n
        Image.new("RGB", (224, 224), (i * 20 % 255, 0, 0)).save(
            root / "training" / "rgb" / f"{i:08d}.jpg")
    return xyz


def test_conversion_units_order_and_counts(tmp_path):
    xyz = _freihand(tmp_path / "fh")
    out = tmp_path / "shards"
    proc = subprocess.run([sys.executable, "-m", "handpose.data.freihand", "--root",
                           str(tmp_path / "fh"), "--out", str(out)], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"] == {"train": 12, "val": 0}
    cfg = load_config("stage1-tiny", [f"DATA.val.source=[{out}/train-*.tar]",
                                      "DATA.val_batch_size=12"])
    (batch,) = list(build_val_stream(cfg))
    assert batch["key"][:4] == [f"freihand-{i:08d}" for i in range(4)]
    # image 3 + k*3 shares annotation 0; metres -> millimetres, joint order unchanged
    for i, key in enumerate(batch["key"]):
        idx = int(key.split("-")[1]) % 3
        torch.testing.assert_close(batch["joints_cam"][i].double(),
                                   torch.tensor(xyz[idx] * 1000.0), atol=1e-3, rtol=0)
    assert batch["mano_valid"].sum() == 0 and batch["theta"].abs().sum() == 0


def test_val_split_keeps_versions_together_and_bad_root_exits_2(tmp_path):
    from handpose.data.freihand import convert

    _freihand(tmp_path / "fh", n=4)
    counts = convert(tmp_path / "fh", tmp_path / "s", val_fraction=0.25)
    assert counts == {"train": 12, "val": 4}
    proc = subprocess.run([sys.executable, "-m", "handpose.data.freihand", "--root",
                           str(tmp_path / "missing"), "--out", str(tmp_path / "o")], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "missing" in proc.stderr
