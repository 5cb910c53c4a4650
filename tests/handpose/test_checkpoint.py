"""Checkpoint files hold tensors and plain containers only: a resume restores every RNG
exactly, and a crafted pickle payload in a checkpoint folder never runs."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from handpose.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from handpose.errors import UserError


class _Payload:
    """Unpickling it creates ``marker`` (``open(marker, "w")``): observable code execution."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (open, (self.marker, "w"))


def _draws() -> tuple:
    return random.random(), np.random.rand(3).tolist(), np.random.randn(), torch.rand(3).tolist()


def _checkpoint(tmp_path, state):
    model = torch.nn.Linear(3, 2)
    cfg = OmegaConf.create({"GENERAL": {"total_step": 4}})
    return save_checkpoint(tmp_path / "checkpoints", 4, cfg, model, state, keep=2)


def test_state_loads_with_weights_only_and_restores_the_rngs(tmp_path):
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 0.5)
    model(torch.randn(4, 3)).sum().backward()
    optimizer.step()
    scheduler.step()
    random.seed(1)
    np.random.seed(2)
    np.random.randn()  # a cached Gaussian in numpy's state
    torch.manual_seed(3)
    state = {
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "data": {"position": [0, 16], "bad_samples": 0, "seen": 16},
        "aim_hash": None,
    }
    ckpt = _checkpoint(tmp_path, state)
    expected = _draws()
    torch.load(ckpt / "state.pt", weights_only=True)  # loadable without unpickling objects
    loaded = load_checkpoint(ckpt)["state"]
    set_rng_state(loaded["rng"])
    assert _draws() == expected
    assert loaded["step"] == 4 and loaded["data"] == state["data"]
    optimizer.load_state_dict(loaded["optimizer"])
    scheduler.load_state_dict(loaded["scheduler"])
    assert scheduler.get_last_lr() == [5e-4]
    assert rng_state()["numpy"]["keys"].dtype == torch.int64


def test_a_pickle_payload_in_state_pt_does_not_run(tmp_path):
    ckpt = _checkpoint(tmp_path, {})
    marker = tmp_path / "payload-ran"
    torch.save({"step": 4, "rng": _Payload(str(marker))}, ckpt / "state.pt")
    with pytest.raises(UserError, match=r"^unreadable checkpoint: .*state\.pt") as err:
        load_checkpoint(ckpt)
    assert len(str(err.value).splitlines()) == 1, str(err.value)
    assert not marker.exists()
    # the payload is live: a plain unpickling of the same file runs it
    torch.load(ckpt / "state.pt", weights_only=False)
    assert marker.exists()
