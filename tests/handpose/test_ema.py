"""The weight average (TRAIN.ema_decay): its arithmetic and the config's bounds."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from handpose.config import load_config
from handpose.ema import WeightAverage
from handpose.errors import UserError


def test_the_average_is_decay_times_itself_plus_the_rest_times_the_weights():
    model = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    avg = WeightAverage(model, 0.75)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    model.train()(torch.randn(4, 3))  # moves the float running stats and the int counter
    avg.update()
    now = model.state_dict()
    for k, v in avg.module.state_dict().items():
        if v.is_floating_point():
            torch.testing.assert_close(v, 0.75 * before[k] + 0.25 * now[k])
        else:
            assert torch.equal(v, now[k]), k  # num_batches_tracked: copied
    assert not avg.module.training and not any(p.requires_grad for p in avg.module.parameters())


@pytest.mark.parametrize("decay", [-0.1, 1.0])
def test_a_decay_outside_0_1_is_refused(decay):
    with pytest.raises(UserError, match=r"TRAIN\.ema_decay"):
        load_config("stage1-tiny", [f"TRAIN.ema_decay={decay}"])
    with pytest.raises(ValueError):
        WeightAverage(nn.Linear(1, 1), decay)
