"""Progressive dropout and learning-rate schedules."""

from __future__ import annotations

import math

import pytest

from handpose.schedules import get_lr_scale, get_progressive_dropout


def dropout(step: int, schedule: str = "step", ramp: int = 0) -> float:
    return get_progressive_dropout(step, 100, 0.2, schedule, ramp)


def test_step_schedule():
    assert [dropout(s) for s in (0, 99, 100, 101, 999, 5000)] == [0, 0, 0.2, 0.2, 0.2, 0.2]
    assert get_progressive_dropout(0, 0, 0.1) == 0.1  # no warmup: target from the start


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_ramps(schedule):
    assert dropout(99, schedule, 200) == 0.0
    assert dropout(100, schedule, 200) == 0.0
    assert dropout(200, schedule, 200) == pytest.approx(0.1)  # half way: half the target
    assert dropout(300, schedule, 200) == pytest.approx(0.2)
    assert dropout(900, schedule, 200) == pytest.approx(0.2)
    values = [dropout(s, schedule, 200) for s in range(100, 301)]
    assert values == sorted(values)
    assert [dropout(s, schedule, 0) for s in (99, 100)] == [0.0, 0.2]  # ramp 0 = step


def test_ramp_shapes():
    assert dropout(150, "linear", 200) == pytest.approx(0.05)
    assert dropout(150, "cosine", 200) == pytest.approx(0.2 * (1 - math.cos(math.pi / 4)) / 2)


def test_unknown_schedule():
    with pytest.raises(ValueError, match="exponential"):
        dropout(500, "exponential")


def test_lr_warmup_then_cosine():
    scale = [get_lr_scale(s, 1100, 100, 0.01) for s in range(1200)]
    assert scale[0] == pytest.approx(0.01) and scale[49] == pytest.approx(0.5)
    assert scale[99] == 1.0 and scale[100] == 1.0
    assert scale[600] == pytest.approx(0.505)  # half way through the decay
    assert scale[1100] == pytest.approx(0.01) and scale[1199] == pytest.approx(0.01)
    assert scale[:100] == sorted(scale[:100]) and scale[100:] == sorted(scale[100:], reverse=True)
    assert get_lr_scale(0, 100, 0, 0.1) == 1.0  # no warmup
