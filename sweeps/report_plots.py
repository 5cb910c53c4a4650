"""The report's figures (matplotlib, Agg backend): each function writes one PNG and returns
its path, or returns None when there is nothing to draw (the caller says why)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib import ticker  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

from sweeps.report_data import Entry  # noqa: E402

DPI = 100
MAX_LABELLED = 12  # more entries than this: only the best ones get a legend entry
STYLE = {  # status -> (line style, end marker)
    "COMPLETED": ("-", "o"),
    "STOPPED_EARLY": ("--", "x"),
    "ERROR": (":", "X"),
}
OTHER_STYLE = ("-.", "s")


def _colors(n: int) -> list[Any]:
    cmap = plt.get_cmap("tab10" if n <= 10 else "tab20")
    return [cmap(i % cmap.N) for i in range(n)]


def _save(fig: plt.Figure, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def mpjpe_curves(entries: list[Entry], total_step: int | None, path: Path) -> Path | None:
    """Validation MPJPE vs step, one line per entry; the line style and end marker show the
    status, so trials ASHA stopped end early with an x."""
    drawn = [(e, e.curve()) for e in entries if e.curve()]
    if not drawn:
        return None
    fig, ax = plt.subplots(figsize=(10, 5.5))
    for i, ((e, curve), color) in enumerate(zip(drawn, _colors(len(drawn)), strict=True)):
        ls, marker = STYLE.get(e.status, OTHER_STYLE)
        steps, values = zip(*curve, strict=True)
        label = e.id if i < MAX_LABELLED else None
        ax.plot(steps, values, ls, color=color, lw=1.6 if label else 0.8, label=label)
        ax.plot(steps[-1], values[-1], marker, color=color, ms=8, mew=2)
    if total_step:
        ax.axvline(total_step, color="grey", lw=0.8, ls=":")
    ax.set_xlabel("training step")
    ax.set_ylabel("validation MPJPE (mm)")
    ax.set_title("Validation MPJPE over training steps")
    ax.grid(alpha=0.3)
    statuses = list(dict.fromkeys(e.status for e, _ in drawn))
    proxies = [Line2D([], [], color="black", ls=STYLE.get(s, OTHER_STYLE)[0],
                      marker=STYLE.get(s, OTHER_STYLE)[1], label=s.lower()) for s in statuses]
    status_legend = ax.legend(handles=proxies, loc="upper right", fontsize=8, title="status")
    ax.add_artist(status_legend)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, title="trial / run")
    return _save(fig, path)


def _time_axis(seconds: list[float]) -> tuple[list[float], str]:
    span = max(seconds, default=0.0)
    scale, unit = (3600.0, "h") if span > 3 * 3600 else (60.0, "min") if span > 180 else (1, "s")
    return [s / scale for s in seconds], unit


def best_so_far(points: list[dict[str, float]], path: Path) -> Path | None:
    """The sweep's best MPJPE so far vs wall time and vs training steps of all trials."""
    if not points:
        return None
    fig, (ax_t, ax_s) = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    times, unit = _time_axis([p["wall_s"] for p in points])
    best = [p["best_mpjpe"] for p in points]
    ax_t.step(times, best, where="post", color="tab:blue")
    ax_t.plot(times, best, ".", color="tab:blue")
    ax_t.set_xlabel(f"wall time since the sweep started ({unit})")
    ax_t.set_ylabel("best validation MPJPE so far (mm)")
    steps = [p["total_steps"] for p in points]
    ax_s.step(steps, best, where="post", color="tab:green")
    ax_s.plot(steps, best, ".", color="tab:green")
    ax_s.set_xlabel("training steps run by all trials together")
    for ax in (ax_t, ax_s):
        ax.grid(alpha=0.3)
    fig.suptitle("Best MPJPE so far")
    return _save(fig, path)


def _markers(series: list[tuple[int, float]]) -> dict[str, Any]:
    """Dots on sparse series (so a one-point series shows), none on dense ones."""
    return {"marker": ".", "ms": 5} if len(series) < 40 else {}


def _grid(n: int, width: float = 4.2, height: float = 3.2) -> tuple[plt.Figure, list[Any]]:
    cols = min(n, 3)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False)
    flat = list(axes.flat)
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]


def dropout(entries: list[Entry], path: Path) -> Path | None:
    """The decoder dropout rate vs step of the given (top) entries, from the train lines."""
    drawn = [(e, e.series("train", "dropout_rate")) for e in entries]
    drawn = [(e, s) for e, s in drawn if s]
    if not drawn:
        return None
    fig, ax = plt.subplots(figsize=(10, 4.2))
    for (e, series), color in zip(drawn, _colors(len(drawn)), strict=True):
        ax.plot(*zip(*series, strict=True), color=color, label=e.id, **_markers(series))
    ax.set_xlabel("training step")
    ax.set_ylabel("decoder dropout rate")
    ax.set_title("Dropout schedule of the top entries")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    return _save(fig, path)


def losses(entries: list[Entry], path: Path) -> Path | None:
    """Train vs validation total loss per (top) entry, one panel each."""
    drawn = [(e, e.series("train", "total"), e.series("val", "val_total")) for e in entries]
    drawn = [d for d in drawn if d[1] or d[2]]
    if not drawn:
        return None
    fig, axes = _grid(len(drawn))
    for ax, (e, train, val) in zip(axes, drawn, strict=True):
        if train:
            ax.plot(*zip(*train, strict=True), color="tab:blue", lw=1.2, label="train",
                    **_markers(train))
        if val:
            ax.plot(*zip(*val, strict=True), "o-", color="tab:orange", lw=1.2, ms=3,
                    label="validation")
        values = [v for _, v in train + val]
        if min(values) > 0 and max(values) / min(values) > 10:  # a long run's early drop
            ax.set_yscale("log")
            ax.yaxis.set_major_formatter(ticker.FormatStrFormatter("%g"))
            ax.yaxis.set_minor_formatter(ticker.NullFormatter())
        ax.set_title(f"{e.id} ({e.status.lower()})", fontsize=10)
        ax.set_xlabel("training step")
        ax.set_ylabel("total loss (weighted)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("Train vs validation loss")
    return _save(fig, path)


def gap(entries: list[Entry], path: Path) -> Path | None:
    """Generalisation gap (val minus train MPJPE, mm) vs step for the given entries."""
    drawn = [(e, e.series("val", "gap_mpjpe")) for e in entries]
    drawn = [(e, s) for e, s in drawn if s]
    if not drawn:
        return None
    fig, ax = plt.subplots(figsize=(10, 4.2))
    for (e, series), color in zip(drawn, _colors(len(drawn)), strict=True):
        ax.plot(*zip(*series, strict=True), "o-", color=color, ms=3, label=e.id)
    ax.axhline(0, color="grey", lw=0.8)
    ax.set_xlabel("training step")
    ax.set_ylabel("val MPJPE - train MPJPE (mm)")
    ax.set_title("Generalisation gap (train subset measured in eval mode)")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    return _save(fig, path)


def _is_log(values: list[float]) -> bool:
    """Positive values spread over more than 1.5 decades read better on a log axis."""
    return min(values) > 0 and max(values) / min(values) > 30


def params(entries: list[Entry], keys: list[str], path: Path) -> Path | None:
    """Each searched parameter vs final validation MPJPE, one panel per parameter; hollow
    markers are entries whose last MPJPE came before the full budget."""
    scored = [e for e in entries if e.final["mpjpe"] is not None]
    if not keys or not scored:
        return None
    fig, axes = _grid(len(keys), width=3.8, height=3.0)
    for ax, key in zip(axes, keys, strict=True):
        points = [(e.params.get(key), e.final["mpjpe"], e.status == "COMPLETED")
                  for e in scored if e.params.get(key) is not None]
        numeric = all(isinstance(x, (int, float)) and not isinstance(x, bool)
                      for x, _, _ in points)
        if not numeric:  # a choice: categories on the x axis
            cats = list(dict.fromkeys(str(x) for x, _, _ in points))
            points = [(cats.index(str(x)), y, full) for x, y, full in points]
            ax.set_xticks(range(len(cats)), cats)
        elif points and _is_log([x for x, _, _ in points]):
            ax.set_xscale("log")
        for x, y, full in points:
            ax.plot(x, y, "o", color="tab:blue", mfc="tab:blue" if full else "none", ms=7)
        ax.set_title(key, fontsize=9)
        ax.set_ylabel("final MPJPE (mm)")
        ax.grid(alpha=0.3)
    fig.suptitle("Searched parameters vs final MPJPE (filled: full budget, hollow: stopped "
                 "early or unfinished)", fontsize=10)
    return _save(fig, path)


def importance(values: dict[str, float], path: Path) -> Path | None:
    """Horizontal bars of hyperparameter importance (largest on top)."""
    if not values:
        return None
    items = sorted(values.items(), key=lambda kv: kv[1])
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(items) + 1.4))
    ax.barh([k for k, _ in items], [v for _, v in items], color="tab:purple")
    ax.set_xlabel("importance (PED-ANOVA, fraction of total)")
    ax.set_title("Hyperparameter importance for final MPJPE")
    ax.grid(alpha=0.3, axis="x")
    return _save(fig, path)
