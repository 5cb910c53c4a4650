"""Synthetic data: deterministic, schema-correct, consistent with the kinematic model."""

from __future__ import annotations

import hashlib
import json
import tarfile

import numpy as np
import pytest
import torch

from handpose.data.difficulty import DEFAULT, FINGER_RGB
from handpose.data.render import project
from handpose.data.synthetic import generate
from handpose.model.kinematics import HandKinematics
from tests.helpers import REPO


def _digest(folder) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_same_arguments_give_byte_identical_shards(tmp_path):
    a = generate(tmp_path / "a", train=12, val=4, seed=3, quiet=True)
    b = generate(tmp_path / "b", train=12, val=4, seed=3, quiet=True)
    c = generate(tmp_path / "c", train=12, val=4, seed=4, quiet=True)
    assert _digest(a) == _digest(b)
    assert _digest(a)["train-000000.tar"] != _digest(c)["train-000000.tar"]
    manifest = json.loads((a / "manifest.json").read_text())
    assert manifest["counts"] == {"train": 12, "val": 4} and manifest["seed"] == 3
    assert manifest["version"]


def test_samples_follow_the_schema_and_the_kinematic_model(data_dir):
    with tarfile.open(data_dir / "train-000000.tar") as tar:
        names = tar.getnames()
        anns = [json.loads(tar.extractfile(n).read()) for n in names if n.endswith(".json")][:20]
    assert len([n for n in names if n.endswith(".jpg")]) == len(anns) or len(anns) == 20
    kin = HandKinematics()
    for ann in anns:
        joints, K = np.array(ann["joints_cam"]), np.array(ann["K"])
        assert joints.shape == (21, 3) and K.shape == (3, 3)
        assert ann["mano_valid"] == 1 and ann["side"] == "right" and sum(ann["joint_valid"]) == 21
        assert DEFAULT.depth_mm[0] <= joints[0, 2] <= DEFAULT.depth_mm[1], "root depth in mm"
        uv = project(joints, K)
        assert (uv > 0).all() and (uv < 128).all(), "every joint is inside the image"
        rel = kin.forward_theta(
            torch.tensor([ann["theta"]], dtype=torch.float32),
            torch.tensor([ann["betas"]], dtype=torch.float32),
        )[0].numpy()
        np.testing.assert_allclose(rel + joints[0], joints, atol=0.05)  # mm


def test_cli_writes_shards_and_rejects_bad_sizes(tmp_path):
    import subprocess
    import sys

    out = tmp_path / "cli"
    ok = subprocess.run(
        [
            sys.executable,
            "-m",
            "handpose.data.synthetic",
            "--out",
            str(out),
            "--train",
            "3",
            "--val",
            "2",
            "--image-size",
            "64",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ok.returncode == 0, ok.stderr
    assert sorted(p.name for p in out.glob("*.tar")) == ["train-000000.tar", "val-000000.tar"]
    bad = subprocess.run(
        [sys.executable, "-m", "handpose.data.synthetic", "--out", str(out), "--train", "0"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0


@pytest.mark.parametrize("size", [64, 128])
def test_rendered_images_depend_on_the_pose(tmp_path, size):
    from handpose.data.synthetic import make_sample

    kin = HandKinematics()
    a = make_sample(kin, 0, "train", 0, size)
    b = make_sample(kin, 0, "train", 1, size)
    assert a["jpg"] != b["jpg"] and a["json"]["joints_cam"] != b["json"]["joints_cam"]


def test_difficulty_knobs_shape_and_clutter_change_what_they_say():
    from dataclasses import replace

    from handpose.data.synthetic import make_sample

    kin = HandKinematics()
    base = make_sample(kin, 0, "train", 3, 64)
    rigid = make_sample(kin, 0, "train", 3, 64, replace(DEFAULT, betas_std=0.0))
    assert np.abs(base["json"]["betas"]).max() > 0 and not np.any(rigid["json"]["betas"])
    busy = replace(DEFAULT, clutter_strokes=(3, 4))
    finger, plain = (
        make_sample(kin, 0, "train", 3, 64, replace(busy, clutter_finger_colour_p=p))
        for p in (1.0, 0.0)
    )
    # only the distractors' colours change: same scene, labels and random stream
    assert plain["json"] == finger["json"] and plain["jpg"] != finger["jpg"]


LOOK = (
    "finger_rgb",
    "palm_rgb",
    "bone_radius_scale",
    "background_rgb",
    "light_falloff",
    "light_ref_mm",
)


def test_look_knobs_change_the_pixels_not_the_labels():
    """The appearance knobs (finger/palm colours, bone width, background, light) change the
    pixels only; the manifest records them as JSON lists."""
    from dataclasses import replace

    from handpose.data.synthetic import make_sample

    kin = HandKinematics()
    other = replace(
        DEFAULT,
        finger_rgb=DEFAULT.finger_rgb[::-1],
        palm_rgb=(225, 180, 150),
        bone_radius_scale=1.0,
        background_rgb=(20.0, 235.0),
        light_falloff=2.0,
    )
    a, b = (make_sample(kin, 0, "train", 5, 64, d) for d in (DEFAULT, other))
    assert a["json"] == b["json"] and a["jpg"] != b["jpg"]
    assert json.loads(json.dumps(DEFAULT.as_dict()))["finger_rgb"][0] == list(FINGER_RGB[0])


def test_source_domain_shares_the_look_and_made_the_shipped_weights():
    """The pretraining source differs from the default set in its statistics (sizes, poses,
    depths, nuisance), not in its look; and it is the domain the shipped weights' manifest
    records, so the manifest's command remakes them."""
    from handpose.pretrain import SOURCE

    assert all(getattr(SOURCE, k) == getattr(DEFAULT, k) for k in LOOK)
    assert SOURCE.depth_mm != DEFAULT.depth_mm and SOURCE.betas_std != DEFAULT.betas_std
    shipped = json.loads((REPO / "weights" / "MANIFEST.json").read_text())
    assert shipped["source_data"]["difficulty"] == SOURCE.as_dict()


def test_light_falloff_makes_absolute_depth_visible():
    from dataclasses import replace

    from handpose.data.render import _shade

    rgb = np.array([200.0, 100.0, 50.0])
    # the nearest part of a near hand and of a far hand: relative shading alone (falloff 0)
    # cannot tell them apart, the light does
    near, far = (_shade(rgb, z, z, z + 50, DEFAULT) for z in (300.0, 500.0))
    assert all(n > f for n, f in zip(near, far, strict=True))
    flat = replace(DEFAULT, light_falloff=0.0)
    assert _shade(rgb, 300.0, 300.0, 350.0, flat) == _shade(rgb, 500.0, 500.0, 550.0, flat)


def _syn_cfg(folder, pattern="train-*.tar", n_train=6):
    from handpose.config import load_config

    return load_config(
        "stage1-tiny",
        [
            f"DATA.synthetic.dir={folder}",
            f"DATA.train.source=['{folder}/{pattern}']",
            f"DATA.val.source=[{folder}/val-*.tar]",
            f"DATA.synthetic.train={n_train}",
            "DATA.synthetic.val=3",
        ],
    )


def test_ensure_dataset_generates_once_and_refreshes_stale_generations(tmp_path, monkeypatch):
    from handpose.data import ensure_dataset, synthetic

    syn = tmp_path / "syn"
    ensure_dataset(_syn_cfg(syn))
    manifest = json.loads((syn / "manifest.json").read_text())
    assert manifest["counts"] == {"train": 6, "val": 3} and manifest["difficulty"]["depth_mm"]

    def must_not_run(*args, **kwargs):
        raise AssertionError("regenerated a present data set")

    with monkeypatch.context() as m:
        m.setattr(synthetic, "generate", must_not_run)
        ensure_dataset(_syn_cfg(syn, "train-{000000..000000}.tar"))  # braces: present
        ensure_dataset(_syn_cfg(syn, n_train=7))  # other counts: a warning, the data stays
    manifest["difficulty"]["depth_mm"] = [1, 2]  # written with other difficulty knobs
    (syn / "manifest.json").write_text(json.dumps(manifest))
    ensure_dataset(_syn_cfg(syn))
    assert json.loads((syn / "manifest.json").read_text())["difficulty"]["depth_mm"] != [1, 2]
    assert not list(tmp_path.glob(".syn.tmp-*")), "no temporary folder left behind"


def test_foreign_data_is_never_replaced(tmp_path):
    from handpose.data import ensure_dataset
    from handpose.errors import UserError

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "train-000000.tar").write_bytes(b"")
    (mine / "val-000000.tar").write_bytes(b"")
    ensure_dataset(_syn_cfg(mine))  # sources match files: nothing to do
    assert sorted(p.name for p in mine.iterdir()) == ["train-000000.tar", "val-000000.tar"]
    with pytest.raises(UserError, match="not written by"):
        generate(mine, train=2, val=1, quiet=True)
