"""The report's figures (matplotlib, Agg backend): each function writes one PNG and returns
its path, or returns None when there is nothing to draw (the caller says why)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from matplotlib import ticker
from matplotlib.lines import Line2D

from sweeps.reporting.axes import clip_offscale, grid, plt, robust_limits, save_figure
from sweeps.reporting.data import Entry
from sweeps.results.trials import COMPLETED

STYLE = {  # status -> (line style, end marker)
    "COMPLETED": ("-", "o"),
    "STOPPED_EARLY": ("--", "x"),
    "ERROR": (":", "X"),
    "UNFINISHED": ("-.", "|"),
}
OTHER_STYLE = ("-.", "s")  # e.g. UNKNOWN


def _band(entries: list[Entry]) -> tuple[list[int], list[float], list[float]] | None:
    """Per validation step, the 10th and 90th percentile of ``entries``' MPJPE there (min and
    max with fewer than 10 values): the faint band behind the drawn lines."""
    by_step: dict[int, list[float]] = {}
    for e in entries:
        for s, v in e.curve():
            by_step.setdefault(s, []).append(v)
    if not by_step:
        return None
    steps = sorted(by_step)
    q = [(10, 90) if len(by_step[s]) >= 10 else (0, 100) for s in steps]
    lo = [float(np.percentile(by_step[s], a)) for s, (a, _) in zip(steps, q, strict=True)]
    hi = [float(np.percentile(by_step[s], b)) for s, (_, b) in zip(steps, q, strict=True)]
    return steps, lo, hi


def plot_mpjpe_curves(
    entries: list[Entry],
    total_step: int | None,
    path: Path,
    colors: dict[str, Any],
    lines: int = 10,
    rungs: list[int] | None = None,
) -> Path | None:
    """Validation MPJPE vs step: the best ``lines`` entries (``entries`` come ranked) and the
    baseline as lines in their ``colors``, line style and end marker by status (ASHA-stopped
    trials end early with an x); every other entry in one faint band (10-90% per step)."""
    with_curve = [e for e in entries if e.curve()]
    if not with_curve:
        return None
    drawn = [e for i, e in enumerate(with_curve) if i < lines or e.baseline]
    rest = [e for i, e in enumerate(with_curve) if not (i < lines or e.baseline)]
    fig, ax = plt.subplots(figsize=(10, 5.5))
    band = _band(rest)
    if band is not None:
        steps, lo, hi = band
        pct = "10-90%" if len(rest) >= 10 else "min-max"
        ax.fill_between(
            steps,
            lo,
            hi,
            color="grey",
            alpha=0.18,
            lw=0,
            label=f"other {len(rest)}: {pct} per step",
        )
    for e in drawn:
        ls, marker = STYLE.get(e.status, OTHER_STYLE)
        steps, values = zip(*e.curve(), strict=True)
        color = colors[e.id]
        label = e.id + (f" ({e.role})" if e.role else "")
        ax.plot(
            steps, values, ls, color=color, lw=2.4 if e.baseline else 1.4, label=label, gid=e.id
        )
        ax.plot(steps[-1], values[-1], marker, color=color, ms=8, mew=2)
    for step in rungs or []:
        ax.axvline(step, color="tab:red", lw=0.6, ls=":", alpha=0.6)
    if total_step:
        ax.axvline(total_step, color="grey", lw=0.8, ls=":")
    ax.set_xlabel("training step" + (" (red dotted: ASHA rungs)" if rungs else ""))
    ax.set_ylabel("validation MPJPE (mm)")
    ax.set_title("Validation MPJPE over training steps")
    ax.grid(alpha=0.3)
    statuses = list(dict.fromkeys(e.status for e in drawn))
    proxies = [
        Line2D(
            [],
            [],
            color="black",
            ls=STYLE.get(s, OTHER_STYLE)[0],
            marker=STYLE.get(s, OTHER_STYLE)[1],
            label=s.lower(),
        )
        for s in statuses
    ]
    status_legend = ax.legend(handles=proxies, loc="upper right", fontsize=8, title="status")
    ax.add_artist(status_legend)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, title="trial / run")
    return save_figure(fig, path)


def _time_axis(seconds: list[float]) -> tuple[list[float], str]:
    span = max(seconds, default=0.0)
    scale, unit = (3600.0, "h") if span > 3 * 3600 else (60.0, "min") if span > 180 else (1, "s")
    return [s / scale for s in seconds], unit


def plot_best_so_far(progress: dict[str, Any], path: Path) -> Path | None:
    """The sweep's best final MPJPE of a full-budget trial so far, vs wall time and vs
    training steps of all trials: a step at each full-budget trial's end, flat to the
    sweep's end."""
    points = progress["points"]
    if not points:
        return None
    fig, (ax_t, ax_s) = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    best = [p["best_mpjpe"] for p in points]
    times, unit = _time_axis([p["wall_s"] for p in points] + [progress["end_wall_s"]])
    steps = [p["total_steps"] for p in points] + [progress["end_total_steps"]]
    for ax, xs, color in ((ax_t, times, "tab:blue"), (ax_s, steps, "tab:green")):
        ax.step(xs, best + best[-1:], where="post", color=color)
        ax.plot(xs[:-1], [p["final_mpjpe"] for p in points], ".", color=color, ms=8)
        ax.grid(alpha=0.3)
    ax_t.set_xlabel(f"wall time since the sweep started ({unit})")
    ax_t.set_ylabel("best final MPJPE so far (mm)")
    ax_s.set_xlabel("training steps run by all trials together")
    fig.suptitle(
        "Best MPJPE so far: the final MPJPE of trials that ran the full budget (dots: "
        "each such trial's final MPJPE when it finished)",
        fontsize=10,
    )
    return save_figure(fig, path)


def _log_x(ax: Any, values: list[float]) -> None:
    """A log x axis labelled in plain numbers (0.005, 0.01, ...): at 1 and 3 times each
    decade when the values span under 3 decades, else at each decade."""
    ax.set_xscale("log")
    subs = (1.0, 3.0) if max(values) / min(values) < 1e3 else (1.0,)
    ax.xaxis.set_major_locator(ticker.LogLocator(subs=subs))
    ax.xaxis.set_major_formatter(ticker.FormatStrFormatter("%g"))
    ax.xaxis.set_minor_formatter(ticker.NullFormatter())
    ax.tick_params(axis="x", labelsize=8)


def plot_params(
    entries: list[Entry], keys: list[str], path: Path, log: set[str] | None = None
) -> Path | None:
    """Each searched parameter vs final validation MPJPE, one panel per parameter; hollow
    markers are entries whose last MPJPE came before the full budget, the star is the
    baseline. Keys in ``log`` (searched with ``log: true``) get a log x axis."""
    scored = [e for e in entries if e.final["mpjpe"] is not None]
    if not keys or not scored:
        return None
    fig, axes = grid(len(keys), width=3.8, height=3.0)
    limits = robust_limits([e.final["mpjpe"] for e in scored])
    clipped = 0
    for ax, key in zip(axes, keys, strict=True):
        points = [
            (e.params.get(key), e.final["mpjpe"], e)
            for e in scored
            if e.params.get(key) is not None
        ]
        numeric = all(isinstance(x, (int, float)) and not isinstance(x, bool) for x, _, _ in points)
        if not numeric:  # a choice: categories on the x axis
            cats = list(dict.fromkeys(str(x) for x, _, _ in points))
            points = [(cats.index(str(x)), y, e) for x, y, e in points]
            ax.set_xticks(range(len(cats)), cats)
        elif key in (log or ()) and points and min(x for x, _, _ in points) > 0:
            _log_x(ax, [x for x, _, _ in points])
        for full in (True, False):  # one scatter call per kind: fast for 1000 trials
            xy = [(x, y) for x, y, e in points if (e.status == COMPLETED) == full]
            if xy:
                ax.scatter(
                    *zip(*xy, strict=True),
                    s=30 if len(points) < 100 else 12,
                    facecolors="tab:blue" if full else "none",
                    edgecolors="tab:blue",
                    alpha=1.0 if len(points) < 100 else 0.6,
                )
        for x, y, _ in (p for p in points if p[2].baseline):
            ax.plot(x, y, "*", color="black", ms=13, zorder=3)
        clipped = max(clipped, clip_offscale(ax, [(x, y) for x, y, _ in points], limits))
        ax.set_title(key + (" (log)" if key in (log or ()) else ""), fontsize=9)
        ax.set_ylabel("final MPJPE (mm)")
        ax.grid(alpha=0.3)
    fig.suptitle(
        "Searched parameters vs final MPJPE (filled: full budget, hollow: stopped "
        "early or unfinished, star: baseline)"
        + (
            f"\n{clipped} off-scale entr{'y' if clipped == 1 else 'ies'} clipped: red "
            "triangles at the edge, labelled with the MPJPE"
            if clipped
            else ""
        ),
        fontsize=10,
    )
    return save_figure(fig, path)


def plot_importance(rows: list[dict[str, Any]], path: Path, step: int | None) -> Path | None:
    """Horizontal bars of hyperparameter importance (largest on top): the bootstrap median
    with its 5-95% interval as whiskers; for the final MPJPE (``step`` None) or the MPJPE
    at ``step``."""
    if not rows:
        return None
    items = sorted(rows, key=lambda r: r["median"])
    med = np.array([r["median"] for r in items])
    err = np.array(
        [
            [m - r["p5"] for m, r in zip(med, items, strict=True)],
            [r["p95"] - m for m, r in zip(med, items, strict=True)],
        ]
    ).clip(min=0)
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(items) + 1.4))
    ax.barh(
        [r["parameter"] for r in items],
        med,
        xerr=err,
        color="tab:purple",
        alpha=0.8,
        error_kw={"ecolor": "black", "capsize": 3, "lw": 1},
    )
    ax.set_xlabel("importance (PED-ANOVA, fraction of total): bootstrap median, 5-95%")
    ax.set_title(
        "Hyperparameter importance for "
        + ("final MPJPE" if step is None else f"MPJPE at step {step}\n(not the final MPJPE)")
    )
    ax.set_xlim(0, 1)
    ax.grid(alpha=0.3, axis="x")
    return save_figure(fig, path)


def plot_fidelity(
    rows: list[dict[str, Any]], per_rung: list[dict[str, Any]], path: Path
) -> Path | None:
    """MPJPE at each ASHA rung vs final MPJPE of the full-budget trials, one panel per
    rung, with the summary's Spearman rho; points on a rising line: the rung ranks trials
    as the full budget does."""
    panels = [r for r in per_rung if any(row.get(str(r["step"])) is not None for row in rows)]
    if not panels:
        return None
    fig, axes = grid(len(panels), width=3.8, height=3.4)
    y_limits = robust_limits([row["final"] for row in rows])
    clipped = 0
    for ax, rung in zip(axes, panels, strict=True):
        key = str(rung["step"])
        pts = [(row[key], row["final"], row["role"]) for row in rows if row.get(key) is not None]
        for role, marker, color in (
            ("", "o", "tab:blue"),
            ("sentinel", "D", "tab:orange"),
            ("baseline", "*", "black"),
        ):
            xy = [(x, y) for x, y, r in pts if r == role]
            if xy:
                ax.plot(
                    *zip(*xy, strict=True),
                    marker,
                    ls="",
                    color=color,
                    ms=11 if role == "baseline" else 5,
                    label=role or "ASHA kept",
                )
        xy = [(x, y) for x, y, _ in pts]
        clipped += clip_offscale(ax, xy, y_limits)
        clipped += clip_offscale(ax, xy, robust_limits([x for x, _ in xy]), axis="x")
        rho = rung.get("spearman")
        ax.set_title(
            f"step {rung['step']}: rho = "
            + (f"{rho:.2f}" if rho is not None else "n/a")
            + f" (n={rung['n']})",
            fontsize=10,
        )
        ax.set_xlabel(f"MPJPE at step {rung['step']} (mm)")
        ax.set_ylabel("final MPJPE (mm)")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(
        "Rung MPJPE vs final MPJPE (trials that ran the full budget)"
        + (f"\n{clipped} off-scale values clipped: red triangles at the edge" if clipped else ""),
        fontsize=10,
    )
    return save_figure(fig, path)
