"""The sweep report's content (``sweeps/reporting/page.py``): every table computed from the loaded
entries, every figure drawn, and the tables written as CSV and everything as ``report.json``."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sweeps.reporting.axes import entry_colors
from sweeps.reporting.data import (
    ReportData,
    best_so_far,
    fidelity_points,
    leaderboard,
    mpjpe_at_steps,
    shared_steps,
    trial_stats,
)
from sweeps.reporting.html import clean, write_csv
from sweeps.reporting.plots import (
    plot_best_so_far,
    plot_fidelity,
    plot_importance,
    plot_mpjpe_curves,
    plot_params,
)
from sweeps.reporting.run_plots import plot_dropout_schedule, plot_gap, plot_losses
from sweeps.reporting.study import Importance, log_keys, open_study, param_importance
from sweeps.run.study_file import STUDY_FILE

CURVES = (
    ("train", "total"),
    ("train", "dropout_rate"),
    ("val", "val_total"),
    ("val", "train_mpjpe"),
    ("val", "gap_mpjpe"),
)  # series in report.json's curves


@dataclass
class Report:
    """The report's content: the loaded entries, every table and the drawn figures."""

    data: ReportData
    top: int
    rows: int
    window: int
    steps: list[int]
    board: list[dict[str, Any]]
    at_steps: list[dict[str, Any]]
    stats: list[dict[str, Any]]
    progress: dict[str, Any]
    fidelity_points: list[dict[str, Any]]
    importance: Importance
    log_keys: set[str] | None
    figs: dict[str, Path | None]


def compute(
    data: ReportData,
    out: Path,
    top: int,
    window: int,
    steps: list[int] | None,
    lines: int = 10,
    rows: int = 50,
) -> Report:
    """Every table, and every figure drawn into ``out``."""
    entries, best = data.entries, data.entries[:top]
    summary = data.sweep.summary if data.sweep is not None else {}
    total_step, rungs = summary.get("total_step"), summary.get("rungs") or []
    progress = best_so_far(entries, total_step)
    colors = entry_colors(entries)
    study, why = (
        open_study(data.sweep.dir)
        if data.sweep is not None
        else (
            None,
            f"hyperparameter importance needs a sweep folder with its Optuna study ({STUDY_FILE})",
        )
    )
    importance = param_importance(study, why)
    log = log_keys(study, data.sweep.dir if data.sweep is not None else None)
    fidelity = fidelity_points(entries, rungs, total_step)
    figs = {
        "curves": plot_mpjpe_curves(
            entries, total_step, out / "mpjpe_vs_step.png", colors, lines, rungs
        ),
        "fidelity": plot_fidelity(
            fidelity, (summary.get("fidelity") or {}).get("per_rung") or [], out / "fidelity.png"
        ),
        "best-so-far": plot_best_so_far(progress, out / "best_so_far.png"),
        "gap": plot_gap(best, out / "generalisation_gap.png", colors),
        "dropout": plot_dropout_schedule(best, total_step, out / "dropout_schedule.png", colors),
        "losses": plot_losses(best, out / "train_vs_val_loss.png", colors),
        "params": plot_params(entries, data.param_keys, out / "params_vs_mpjpe.png", log),
        "importance": plot_importance(importance.rows, out / "importance.png", importance.step),
    }
    steps = steps or shared_steps(entries)
    return Report(
        data,
        len(best),
        rows,
        window,
        steps,
        leaderboard(data),
        mpjpe_at_steps(entries, steps),
        trial_stats(entries, window),
        progress,
        fidelity,
        importance,
        log,
        figs,
    )


def write_data(r: Report, out: Path) -> list[str]:
    """The tables as CSV and everything as ``report.json``; returns the file names."""
    write_csv(out / "trials.csv", r.board)
    write_csv(out / "mpjpe_at_steps.csv", r.at_steps)
    write_csv(out / "trial_stats.csv", r.stats)
    sweep = r.data.sweep
    curves = {
        e.id: {"val_mpjpe": e.curve(), **{k: e.series(split, k) for split, k in CURVES}}
        for e in r.data.entries
    }
    imp = r.importance
    (out / "report.json").write_text(
        json.dumps(
            clean(
                {
                    "sweep": None
                    if sweep is None
                    else {
                        "dir": sweep.dir,
                        **{k: v for k, v in sweep.summary.items() if k != "trials"},
                    },
                    "param_keys": r.data.param_keys,
                    "log_keys": None if r.log_keys is None else sorted(r.log_keys),
                    "leaderboard": r.board,
                    "mpjpe_at_steps": {"steps": r.steps, "rows": r.at_steps},
                    "trial_stats": {"window": r.window, "rows": r.stats},
                    "best_so_far": r.progress,
                    "fidelity_points": r.fidelity_points,
                    "importance": {
                        "rows": imp.rows,
                        "n_finished": imp.n_finished,
                        "step": imp.step,
                        "n_trials": imp.n_trials,
                        "resamples": imp.resamples,
                        "seconds": imp.seconds,
                        "note": imp.note,
                    },
                    "confirm": sweep.confirm if sweep is not None else None,
                    "curves": curves,
                    "images": {k: p.name for k, p in r.figs.items() if p is not None},
                }
            )
        )
    )
    return ["trials.csv", "mpjpe_at_steps.csv", "trial_stats.csv", "report.json"]
