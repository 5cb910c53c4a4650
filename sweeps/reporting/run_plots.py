"""The report's figures of each top entry's training: its dropout schedule, its loss terms
(train vs validation) and its generalisation gap; each function writes one PNG and returns
its path, or None when there is nothing to draw."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from matplotlib import ticker
from matplotlib.lines import Line2D

from sweeps.reporting.axes import grid, plt, save_figure
from sweeps.reporting.data import Entry, dropout_schedule


def plot_dropout_schedule(
    entries: list[Entry], total_step: int | None, path: Path, colors: dict[str, Any]
) -> Path | None:
    """The decoder dropout rate vs step of the given (top) entries, exactly as
    ``handpose.schedules`` gives it at every step (``dropout_schedule``), drawn as steps."""
    drawn = [(e, dropout_schedule(e, total_step)) for e in entries]
    drawn = [(e, s) for e, s in drawn if s]
    if not drawn:
        return None
    fig, ax = plt.subplots(figsize=(10, 4.2))
    for e, series in drawn:
        ax.plot(
            *zip(*series, strict=True),
            drawstyle="steps-post",
            color=colors[e.id],
            lw=2.2 if e.baseline else 1.4,
            label=e.id + (f" ({e.role})" if e.role else ""),
            gid=e.id,
        )
    ax.set_xlabel("training step")
    ax.set_ylabel("decoder dropout rate")
    ax.set_title("Dropout schedule of the top entries (the rate in effect at each step)")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    return save_figure(fig, path)


def loss_terms(entries: list[Entry]) -> list[str]:
    """The unweighted loss terms (``loss_theta``, ...) in the entries' train lines."""
    keys = {k for e in entries for r in e.train for k in r if k.startswith("loss_")}
    return sorted(keys)


def plot_losses(entries: list[Entry], path: Path, colors: dict[str, Any]) -> Path | None:
    """Train vs validation loss of the given (top) entries, one panel per unweighted loss
    term (``loss_<term>`` in the train lines, ``val_loss_<term>`` in the val lines): each
    term in its own unit, comparable across trials whatever their lambdas."""
    terms = loss_terms(entries)
    if not terms:
        return None
    fig, axes = grid(len(terms))
    for ax, term in zip(axes, terms, strict=True):
        values = []
        for e in entries:
            train, val = e.series("train", term), e.series("val", f"val_{term}")
            if train:
                ax.plot(*zip(*train, strict=True), color=colors[e.id], lw=1.0, gid=e.id)
            if val:
                ax.plot(*zip(*val, strict=True), "o--", color=colors[e.id], lw=1.0, ms=3, gid=e.id)
            values += [v for _, v in train + val]
        if values and min(values) > 0 and max(values) / min(values) > 10:
            ax.set_yscale("log")
            ax.yaxis.set_major_formatter(ticker.FormatStrFormatter("%g"))
            ax.yaxis.set_minor_formatter(ticker.NullFormatter())
        ax.set_title(term, fontsize=10)
        ax.set_xlabel("training step")
        ax.set_ylabel("unweighted loss")
        ax.grid(alpha=0.3)
    handles = [
        Line2D([], [], color=colors[e.id], label=e.id + (f" ({e.role})" if e.role else ""))
        for e in entries
    ] + [
        Line2D([], [], color="grey", label="train (solid)"),
        Line2D([], [], color="grey", ls="--", marker="o", ms=3, label="validation (dashed)"),
    ]
    axes[-1].legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    fig.suptitle(
        "Train vs validation loss per term, unweighted (not multiplied by the trial's "
        "lambdas, so comparable across trials)",
        fontsize=10,
    )
    return save_figure(fig, path)


def plot_gap(entries: list[Entry], path: Path, colors: dict[str, Any]) -> Path | None:
    """Generalisation gap (val minus train MPJPE, mm) vs step for the given entries."""
    drawn = [(e, e.series("val", "gap_mpjpe")) for e in entries]
    drawn = [(e, s) for e, s in drawn if s]
    if not drawn:
        return None
    fig, ax = plt.subplots(figsize=(10, 4.2))
    for e, series in drawn:
        ax.plot(*zip(*series, strict=True), "o-", color=colors[e.id], ms=3, label=e.id, gid=e.id)
    ax.axhline(0, color="grey", lw=0.8)
    ax.set_xlabel("training step")
    ax.set_ylabel("val MPJPE - train MPJPE (mm)")
    ax.set_title("Generalisation gap (train subset measured in eval mode)")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    return save_figure(fig, path)
