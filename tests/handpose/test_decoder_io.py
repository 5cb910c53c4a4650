"""MODEL.handec.checkpoint: a decoder state dict loads strictly into the decoder of the same
config; every mismatch or bad file is a one-line UserError naming the path."""

from __future__ import annotations

import pytest
import torch

from handpose.config import load_config
from handpose.errors import UserError
from handpose.model import build_model
from handpose.model.decoder_io import load_decoder_checkpoint
from tests.helpers import SMALL_MODEL

SMALL = ["MODEL.img_size=56", *SMALL_MODEL]


def model(*overrides: str):
    return build_model(load_config("stage1-tiny", [*SMALL, *overrides]))


def test_a_saved_decoder_loads_through_the_config(tmp_path):
    torch.manual_seed(0)
    src = model().decoder.state_dict()
    torch.save({k: v.half() for k, v in src.items()}, tmp_path / "dec.pth")
    torch.manual_seed(1)  # another init: only the checkpoint can make them equal
    loaded = model(f"MODEL.handec.checkpoint={tmp_path / 'dec.pth'}").decoder.state_dict()
    assert any(not torch.equal(v, model().decoder.state_dict()[k]) for k, v in loaded.items())
    for key, value in src.items():
        assert torch.equal(loaded[key], value.half().float()), key


@pytest.mark.parametrize(
    ("save", "fragments"),
    [
        (["MODEL.handec.num_layer=2"], ["unexpected", "layers.1."]),
        (["MODEL.handec.dim=64"], ["shape"]),
        (None, ["unreadable"]),
    ],
)
def test_bad_decoder_checkpoints_are_user_errors(tmp_path, save, fragments):
    path = tmp_path / "dec.pth"
    if save is None:
        path.write_bytes(b"not a checkpoint")
    else:
        torch.save(model(*save).decoder.state_dict(), path)
    with pytest.raises(UserError) as info:
        load_decoder_checkpoint(model().decoder, path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message
    assert all(f in message for f in fragments), message
