"""Step schedules: progressive dropout for the decoder and the learning-rate factor.

Both are pure functions of the step, so a resumed run recomputes them from the resumed
step.
"""

from __future__ import annotations

import math

DROPOUT_SCHEDULES = ("step", "linear", "cosine")


def check_dropout_rate(p: float, what: str = "dropout rate") -> float:
    """``p`` if it is a usable dropout rate, in [0, 1); else ValueError naming ``what``.
    The one range check of a dropout rate (config validation and ``set_dropout_rate``)."""
    if not 0.0 <= p < 1.0:
        raise ValueError(f"{what}={p!r}: must be in [0, 1)")
    return float(p)


def dropout_target_step(warmup_steps: int, schedule: str = "step", ramp_steps: int = 0) -> int:
    """The first step at which :func:`get_progressive_dropout` gives the target rate:
    ``warmup_steps``, plus ``ramp_steps`` for the ``linear`` and ``cosine`` schedules."""
    return warmup_steps + (ramp_steps if schedule != "step" else 0)


def get_progressive_dropout(
    step: int,
    warmup_steps: int,
    target_dropout: float,
    schedule: str = "step",
    ramp_steps: int = 0,
) -> float:
    """Decoder dropout rate at ``step``: 0 before ``warmup_steps``, then ``target_dropout``.

    ``step``: jumps to the target at ``warmup_steps``. ``linear`` / ``cosine``: ramp from 0 at
    ``warmup_steps`` to the target at ``warmup_steps + ramp_steps`` (with ``ramp_steps`` 0
    they equal ``step``); :func:`dropout_target_step` is that step. Unknown ``schedule``:
    ValueError.
    """
    if schedule not in DROPOUT_SCHEDULES:
        raise ValueError(
            f"unknown dropout schedule {schedule!r}: expected one of {', '.join(DROPOUT_SCHEDULES)}"
        )
    if step < warmup_steps:
        return 0.0
    if step >= dropout_target_step(warmup_steps, schedule, ramp_steps):
        return float(target_dropout)
    frac = (step - warmup_steps) / ramp_steps
    if schedule == "cosine":
        frac = 0.5 * (1.0 - math.cos(math.pi * frac))
    return float(target_dropout) * frac


def get_lr_scale(step: int, total_steps: int, warmup_steps: int, min_ratio: float) -> float:
    """Learning-rate factor: linear warmup ``(step + 1) / warmup_steps`` up to 1, then a
    cosine decay from 1 at ``warmup_steps`` to ``min_ratio`` at ``total_steps`` (and after)."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))
