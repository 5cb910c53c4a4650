"""Every number the report draws is what its label says (issue 30): best-so-far by the rule
of "best", exact dropout schedules, unweighted loss terms, robust y limits that say what they
clip, and one colour for the baseline in every figure. Figures are caught before they are
saved (no PNG decoding); entries are built by hand or from the fake sweep (no Ray)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from handpose.schedules import get_progressive_dropout
from sweeps.reporting import plots, run_plots
from sweeps.reporting.axes import BASELINE_COLOR, entry_colors, robust_limits
from sweeps.reporting.content import compute
from sweeps.reporting.data import Entry, best_so_far, dropout_schedule, load_report_data
from sweeps.results.trials import COMPLETED, STOPPED_EARLY
from tests.sweeps.report_helpers import make_sweep


def _entry(tid: str, status: str, reports: list[tuple[int, float, float]], **kw: Any) -> Entry:
    """An entry whose Ray reports are ``(step, mpjpe, timestamp)``."""
    timeline = [
        {"step": s, "mpjpe": v, "timestamp": ts, "time_total_s": 0.0} for s, v, ts in reports
    ]
    final = {"mpjpe": reports[-1][1], "last_step": reports[-1][0]}
    return Entry(tid, "trial", status, kw.pop("params", {}), final, timeline=timeline, **kw)


@pytest.fixture
def figures(monkeypatch) -> dict[str, Any]:
    """The figures the plot functions draw, by file stem, still open for inspection."""
    caught: dict[str, Any] = {}

    def keep(fig: Any, path: Path) -> Path:
        caught[path.stem] = fig
        return path

    monkeypatch.setattr(plots, "save_figure", keep)
    monkeypatch.setattr(run_plots, "save_figure", keep)
    return caught


def test_best_so_far_is_the_best_final_of_a_full_budget_trial():
    """A stopped trial's 60 mm at step 20 and a full-budget trial's 70 mm at step 40 are
    not "best": the curve steps only when a full-budget trial ends, to its final MPJPE."""
    entries = [
        _entry("full1", COMPLETED, [(20, 75.0, 10.0), (40, 70.0, 20.0), (60, 80.0, 30.0)]),
        _entry("stopped", STOPPED_EARLY, [(20, 60.0, 15.0)]),
        _entry("full2", COMPLETED, [(20, 90.0, 40.0), (40, 85.0, 50.0), (60, 78.0, 60.0)]),
        _entry("late", COMPLETED, [(20, 99.0, 45.0), (40, 95.0, 55.0), (60, 81.0, 70.0)]),
    ]
    progress = best_so_far(entries, total_step=60)
    assert [(p["trial_id"], p["best_mpjpe"], p["wall_s"]) for p in progress["points"]] == [
        ("full1", 80.0, 20.0),  # seconds since the first report (at 10 s, 0 s in)
        ("full2", 78.0, 50.0),
        ("late", 78.0, 60.0),
    ]
    assert progress["points"][0]["total_steps"] == 60 + 20  # full1's 60 and stopped's 20
    assert (progress["end_wall_s"], progress["end_total_steps"]) == (60.0, 60 + 20 + 60 + 60)


@pytest.mark.parametrize(
    "schedule, warmup, ramp",
    [("step", 38, 0), ("step", 42, 0), ("linear", 30, 17), ("cosine", 30, 17)],
)
def test_dropout_schedule_is_exact_at_every_step(schedule, warmup, ramp):
    """Read as steps-post (the rate holds until the next point), the drawn points give
    handpose's own rate at every step: a step at 38 is at 38, not on a 25-step grid."""
    e = Entry(
        "t",
        "trial",
        COMPLETED,
        {"GENERAL.dropout_warmup_step": warmup, "MODEL.handec.dropout": 0.2},
        {},
        config={
            "GENERAL.total_step": 300,
            "GENERAL.dropout_schedule": schedule,
            "GENERAL.dropout_ramp_step": ramp,
            "MODEL.handec.dropout": 0.5,  # the searched value wins over the run's config
        },
    )
    points = dropout_schedule(e, total_step=None)
    assert points[0][0] == 0 and points[-1][0] == 300
    for step in range(301):
        held = next(v for s, v in reversed(points) if s <= step)
        assert held == pytest.approx(get_progressive_dropout(step, warmup, 0.2, schedule, ramp))


def test_dropout_plot_draws_the_exact_steps(figures, tmp_path):
    sweep = make_sweep(tmp_path, confirm=False)  # aaaa0001: warmup 6, logged every 10 steps
    data = load_report_data([sweep])
    run_plots.plot_dropout_schedule(
        data.entries[:1], 60, tmp_path / "d.png", entry_colors(data.entries)
    )
    (line,) = figures["d"].axes[0].get_lines()
    assert line.get_drawstyle() == "steps-post"
    assert list(line.get_xdata())[:3] == [0, 6, 60] and list(line.get_ydata())[:2] == [0.0, 0.1]


def test_losses_are_drawn_per_term_unweighted(figures, tmp_path):
    sweep = make_sweep(tmp_path, confirm=False)
    data = load_report_data([sweep])
    run_plots.plot_losses(data.entries[:2], tmp_path / "l.png", entry_colors(data.entries))
    fig = figures["l"]
    panels = {ax.get_title(): ax for ax in fig.axes if ax.get_visible() and ax.get_title()}
    assert set(panels) == {"loss_theta", "loss_shape", "loss_trans", "loss_rel", "loss_img"}
    trans = {tuple(line.get_ydata())[0] for line in panels["loss_trans"].get_lines()}
    assert trans == {4.0, 4.5}  # the logged train and val terms, not times lambda_trans
    assert "unweighted" in fig._suptitle.get_text()


def test_an_outlier_is_clipped_and_said(figures, tmp_path):
    """One 76.9 mm trial among 50-57 mm ones: the y axis keeps to 50-57, the outlier is a
    red triangle at the top edge, and the title says one entry is clipped."""
    finals = [50.2, 51.0, 52.5, 53.1, 54.0, 55.2, 56.0, 57.0, 76.9]
    assert robust_limits(finals[:-1]) is None  # no outlier: the axis scales itself
    entries = [
        Entry(f"t{i}", "trial", COMPLETED, {"MODEL.handec.dropout": 0.02 * i}, {"mpjpe": v})
        for i, v in enumerate(finals)
    ]
    plots.plot_params(entries, ["MODEL.handec.dropout"], tmp_path / "p.png")
    fig = figures["p"]
    ax = fig.axes[0]
    lo, hi = ax.get_ylim()
    assert 49.0 < lo < 50.2 and 57.0 < hi < 58.0
    marks = [m for m in ax.get_lines() if m.get_marker() == "^"]
    assert len(marks) == 1 and marks[0].get_ydata()[0] == hi
    assert "1 off-scale entry clipped" in fig._suptitle.get_text()


def test_the_baseline_has_one_colour_in_every_figure(figures, tmp_path):
    sweep = make_sweep(tmp_path, confirm=False)
    data = load_report_data([sweep])
    compute(data, tmp_path, top=3, window=2, steps=None)
    base = next(e.id for e in data.entries if e.baseline)
    for stem in ("mpjpe_vs_step", "dropout_schedule", "train_vs_val_loss", "generalisation_gap"):
        lines = [ln for ax in figures[stem].axes for ln in ax.get_lines() if ln.get_gid() == base]
        assert lines and {ln.get_color() for ln in lines} == {BASELINE_COLOR}, stem
    others = {
        ln.get_color()
        for ax in figures["dropout_schedule"].axes
        for ln in ax.get_lines()
        if ln.get_gid() != base
    }
    assert BASELINE_COLOR not in others
