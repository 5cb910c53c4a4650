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
    of ``model``; ``model``'s tensors are paired with the copy's once, here (loading a state
    dict or wrapping the model in DDP copies into them, it does not replace them)."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"decay {decay} not in (0, 1)")
        self.decay = decay
        self.module = copy.deepcopy(model).eval().requires_grad_(False)
        pairs = list(
            zip(self.module.state_dict().values(), model.state_dict().values(), strict=True)
        )
        self._averaged = [a for a, _ in pairs if a.is_floating_point()]
        self._current = [c.detach() for a, c in pairs if a.is_floating_point()]
        self._copied = [(a, c) for a, c in pairs if not a.is_floating_point()]

    @torch.no_grad()
    def update(self) -> None:
        """One step of the average towards the model's current weights."""
        torch._foreach_lerp_(self._averaged, self._current, 1.0 - self.decay)
        for avg, cur in self._copied:
            avg.copy_(cur)
