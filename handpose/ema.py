"""An exponential moving average of a model's weights (``TRAIN.ema_decay``).

When it is on, the average is what a run validates and what ``model.pt`` of its checkpoints
holds (so ``handpose.evaluate`` and a decoder initialised from the checkpoint get the
validated weights); the weights being trained travel in ``state.pt`` as ``train_model`` for
an exact resume. It lives on the validating process only (rank 0), one more copy of the
model there: about 1.2 GB in float32 for DINOv2-L + decoder.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


class WeightAverage:
    """``module`` holds ``decay * module + (1 - decay) * model`` after every :meth:`update`
    (floating-point parameters and buffers; other buffers are copied). It starts as a copy
    of ``model``."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"decay {decay} not in (0, 1)")
        self.decay = decay
        self.module = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        averaged, current = [], []
        for avg, cur in zip(
            self.module.state_dict().values(), model.state_dict().values(), strict=True
        ):
            if avg.is_floating_point():
                averaged.append(avg)
                current.append(cur.detach())
            else:
                avg.copy_(cur)
        torch._foreach_lerp_(averaged, current, 1.0 - self.decay)
