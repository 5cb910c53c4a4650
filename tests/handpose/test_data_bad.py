"""Bad data: corrupt samples are skipped and counted; too many stop with the shard named."""

from __future__ import annotations

import io
import json
import shutil
import tarfile

import pytest

from handpose.data import build_train_stream, build_val_stream
from handpose.errors import DataError
from tests.handpose.helpers import stream_config


def _copy_with(src, dst, damage):
    """Copy tar ``src`` to ``dst`` passing each (name, bytes) through ``damage``."""
    with tarfile.open(src) as tin, tarfile.open(dst, "w") as tout:
        for m in tin.getmembers():
            name, data = damage(m.name, tin.extractfile(m).read())
            if name is None:
                continue
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tout.addfile(info, io.BytesIO(data))


def _cut(src, where: str) -> bytes:
    """The bytes of tar ``src`` cut at its middle member: inside its data (``"data"``),
    inside its header (``"header"``) or exactly where its header starts (``"boundary"``)."""
    with tarfile.open(src) as tar:
        members = tar.getmembers()
    m = members[len(members) // 2]
    at = {"data": m.offset_data + m.size // 2, "header": m.offset + 100, "boundary": m.offset}
    return src.read_bytes()[: at[where]]


def _cfg(folder, *extra):
    return stream_config(folder, *extra, batch=16)


@pytest.fixture()
def damaged(data_dir, tmp_path):
    """val: 3 bad samples of 64 (undecodable jpg, malformed json, missing json)."""
    bad = {"val-0000003.jpg": b"not a jpeg", "val-0000010.json": b"{nope"}

    def damage(name, data):
        if name == "val-0000020.json":
            return None, data
        return name, bad.get(name, data)

    _copy_with(data_dir / "val-000000.tar", tmp_path / "val-000000.tar", damage)
    shutil.copy(data_dir / "train-000000.tar", tmp_path / "train-000000.tar")
    return tmp_path


def test_bad_samples_are_skipped_and_counted(damaged):
    stream = build_val_stream(_cfg(damaged, "DATA.max_bad_fraction=0.1"))
    keys = [k for b in stream for k in b["key"]]
    assert len(keys) == 61 and stream.bad_samples == 3 and stream.num_samples == 61
    assert not {"val-0000003", "val-0000010", "val-0000020"} & set(keys)


def test_too_many_bad_samples_stop_naming_the_shard(damaged):
    stream = build_val_stream(_cfg(damaged, "DATA.max_bad_fraction=0.01"))
    with pytest.raises(DataError, match=r"val-000000\.tar"):
        list(stream)


def test_truncated_tar_is_skipped_and_training_goes_on(data_dir, tmp_path):
    (tmp_path / "train-000000.tar").write_bytes(_cut(data_dir / "train-000000.tar", "data"))
    shutil.copy(data_dir / "val-000000.tar", tmp_path / "val-000000.tar")
    stream = build_train_stream(_cfg(tmp_path, "DATA.max_bad_fraction=0.5"))
    batches = [next(stream) for _ in range(12)]  # several epochs of the surviving half
    assert all(len(b["key"]) == 16 for b in batches)
    assert stream.bad_samples >= 1


@pytest.mark.parametrize("where", ["data", "header", "boundary"])
def test_a_tar_cut_anywhere_counts_as_bad(data_dir, tmp_path, where):
    # tarfile itself ends quietly at a cut header: without the end-of-archive check a tar
    # cut there would pass for a shorter, complete one
    (tmp_path / "val-000000.tar").write_bytes(_cut(data_dir / "val-000000.tar", where))
    stream = build_val_stream(_cfg(tmp_path, "DATA.max_bad_fraction=0.6"))
    keys = [k for b in stream for k in b["key"]]
    assert stream.bad_samples == 1 and 25 <= len(keys) <= 32  # of 64; the rest are lost


def test_bad_json_values_are_rejected(damaged, tmp_path):
    ann = {"joints_cam": [[0, 0, float("nan")]] * 21, "K": [[1, 0, 0], [0, 1, 0], [0, 0, 1]]}
    folder = tmp_path / "nan"
    folder.mkdir()

    def damage(name, data):
        return name, json.dumps(ann).encode() if name == "val-0000001.json" else data

    _copy_with(damaged / "val-000000.tar", folder / "val-000000.tar", damage)
    stream = build_val_stream(_cfg(folder, "DATA.max_bad_fraction=0.2"))
    list(stream)
    assert stream.bad_samples == 4


def test_problems_found_mid_epoch_are_counted(data_dir, tmp_path):
    """A truncated shard read after the first batch still counts, once per epoch."""
    shutil.copy(data_dir / "train-000000.tar", tmp_path / "train-000000.tar")
    (tmp_path / "train-000001.tar").write_bytes(_cut(data_dir / "val-000000.tar", "data"))
    shutil.copy(data_dir / "val-000000.tar", tmp_path / "val-000000.tar")
    cfg = _cfg(tmp_path, "DATA.train.shuffle_buffer=4", "DATA.max_bad_fraction=0.5")
    stream, states = build_train_stream(cfg), []
    while stream.state_dict()["position"][0] < 2:
        next(stream)
        states.append(stream.state_dict())
    assert stream.bad_samples == 2
    resumed = build_train_stream(cfg)  # from the middle of the second epoch
    resumed.load_state_dict(states[len(states) * 3 // 4])
    while resumed.state_dict()["position"] != stream.state_dict()["position"]:
        next(resumed)
    assert resumed.bad_samples == 2, "a resumed stream counts no problem twice"


def test_a_shard_of_undecodable_images_stops_training_naming_it(data_dir, tmp_path):
    def garble(name, data):
        return name, b"garbage" if name.endswith(".jpg") else data

    _copy_with(data_dir / "val-000000.tar", tmp_path / "train-000000.tar", garble)
    shutil.copy(data_dir / "val-000000.tar", tmp_path / "val-000000.tar")
    stream = build_train_stream(_cfg(tmp_path, "DATA.max_bad_fraction=0.5"))
    with pytest.raises(DataError, match=r"train-000000\.tar"):
        next(stream)  # every batch is empty: no crash, the bad fraction check speaks


def test_a_val_source_without_samples_is_an_error(tmp_path):
    with tarfile.open(tmp_path / "val-000000.tar", "w"):
        pass
    stream = build_val_stream(_cfg(tmp_path, f"DATA.train.source=[{tmp_path}/val-*.tar]"))
    with pytest.raises(DataError, match="no sample"):
        list(stream)
