"""Shared looks of the report's figures (``sweeps/reporting/plots.py``): one colour per
entry in every figure (the baseline always black), and robust axis limits that keep an
outlier from squashing the range where the answer is."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from sweeps.reporting.data import Entry  # noqa: E402

DPI = 100

BASELINE_COLOR = "black"
FENCE = 3.0  # interquartile ranges beyond the quartiles at which a value is off-scale


def save_figure(fig: plt.Figure, path: Path) -> Path:
    """Write ``fig`` as a PNG at ``path`` and close it."""
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def grid(n: int, width: float = 4.2, height: float = 3.2) -> tuple[plt.Figure, list[Any]]:
    """A figure of ``n`` panels, 3 per row (the spare ones hidden)."""
    cols = min(n, 3)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False)
    flat = list(axes.flat)
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]


def entry_colors(entries: list[Entry]) -> dict[str, Any]:
    """A colour per entry id, the same in every figure: black for the baseline, then the
    tab10 (tab20 beyond 10 entries) colours in ``entries``' order (ranked, best first)."""
    others = [e for e in entries if not e.baseline]
    cmap = plt.get_cmap("tab10" if len(others) <= 10 else "tab20")
    colors = {e.id: cmap(i % cmap.N) for i, e in enumerate(others)}
    colors.update({e.id: BASELINE_COLOR for e in entries if e.baseline})
    return colors


def robust_limits(values: list[float]) -> tuple[float, float] | None:
    """Axis limits (mm) that hold every value within ``FENCE`` interquartile ranges of the
    quartiles (the spread floored at 2% of the median), padded by 8%; None when no value is
    beyond that (the axis then scales itself)."""
    v = np.asarray([x for x in values if x is not None], dtype=float)
    if len(v) < 4:
        return None
    q1, med, q3 = np.percentile(v, (25, 50, 75))
    reach = FENCE * max(q3 - q1, 0.02 * abs(med))
    inside = v[(v >= q1 - reach) & (v <= q3 + reach)]
    if len(inside) == len(v):
        return None
    pad = 0.08 * (inside.max() - inside.min()) or 0.5
    return float(inside.min() - pad), float(inside.max() + pad)


def clip_offscale(
    ax: Any, xy: list[tuple[float, float]], limits: tuple[float, float] | None, axis: str = "y"
) -> int:
    """Set ``axis``'s ``limits`` and mark each point of ``xy`` beyond them with a red
    triangle at the edge, labelled with its value; returns how many were clipped."""
    if limits is None:
        return 0
    lo, hi = limits
    (ax.set_ylim if axis == "y" else ax.set_xlim)(lo, hi)
    clipped = 0
    for x, y in xy:
        value = y if axis == "y" else x
        if lo <= value <= hi:
            continue
        clipped += 1
        edge = hi if value > hi else lo
        where = (x, edge) if axis == "y" else (edge, y)
        marker = ("^" if value > hi else "v") if axis == "y" else (">" if value > hi else "<")
        ax.plot(*where, marker, color="tab:red", ms=9, clip_on=False, zorder=4)
        ax.annotate(
            f"{value:.1f}",
            where,
            textcoords="offset points",
            xytext=(6, -4),
            fontsize=7,
            color="tab:red",
        )
    return clipped
