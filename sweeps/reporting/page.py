"""Sweep report: compares sweep trials and training runs in one self-contained HTML page.

    python sweeps/report.py DIR [DIR ...] [--out OUT] [--top N] [--lines K] [--rows R]
                            [--window K] [--steps S,S,...]

Each DIR is a sweep folder (has ``summary.json``) or a training run folder (has
``metrics.jsonl``): at most one sweep, any number of runs (e.g. a before and an after run).
Writes ``OUT/report.html`` (images embedded, opens offline), the PNGs, ``trials.csv``,
``mpjpe_at_steps.csv``, ``trial_stats.csv`` and ``report.json``. OUT defaults to
``<sweep>/report/``, or ``<first run>/report/`` when there is no sweep.
"""

from __future__ import annotations

import argparse
import html
import time
from pathlib import Path

from handpose.errors import UserError
from sweeps.reporting.content import compute, write_data
from sweeps.reporting.data import load_report_data
from sweeps.reporting.html import CSS
from sweeps.reporting.sections import SECTIONS, sections


def write_report(
    paths: list[Path],
    out: Path | None = None,
    top: int = 5,
    window: int = 5,
    steps: list[int] | None = None,
    lines: int = 10,
    rows: int = 50,
) -> Path:
    """Write the report of ``paths`` (a sweep and/or run folders) to ``out`` (default
    ``<sweep or first run>/report``); returns the HTML file's path. ``top``: entries in the
    dropout/loss/gap plots; ``lines``: entries drawn as lines in the MPJPE plot (the rest: a
    band); ``rows``: entries in the HTML tables (all of them in the CSVs)."""
    data = load_report_data(paths)
    if out is None:
        out = (data.sweep.dir if data.sweep is not None else paths[0]) / "report"
    out.mkdir(parents=True, exist_ok=True)
    r = compute(data, out, top, window, steps, lines, rows)
    body = sections(r, write_data(r, out))
    name = data.sweep.dir.name if data.sweep else " vs ".join(p.name for p in paths)
    title = html.escape(f"Report: {name}")
    nav = "".join(f'<a href="#{k}">{html.escape(v)}</a>' for k, v in SECTIONS.items())
    parts = "".join(
        f'<section id="{k}"><h2>{html.escape(v)}</h2>{body[k]}</section>'
        for k, v in SECTIONS.items()
    )
    (out / "report.html").write_text(
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{title}</title>'
        f'<style>{CSS}</style></head><body><h1>{title}</h1><p class="note">generated '
        f"{time.strftime('%Y-%m-%d %H:%M:%S')}; MPJPE in mm, lower is better</p>"
        f"<nav>{nav}</nav>{parts}</body></html>\n",
        encoding="utf-8",
    )
    return out / "report.html"


def parse_steps(text: str | None) -> list[int] | None:
    """``"3000,6000,9000"`` -> ``[3000, 6000, 9000]``."""
    if not text:
        return None
    try:
        return sorted({int(s) for s in text.split(",") if s.strip()})
    except ValueError:
        raise UserError(f"--steps {text}: want comma-separated integers") from None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "dirs",
        nargs="+",
        type=Path,
        metavar="DIR",
        help="a sweep folder (summary.json) and/or training run folders (metrics.jsonl)",
    )
    p.add_argument(
        "--out",
        type=Path,
        help="output folder (default: <sweep>/report/, else <first run>/report/)",
    )
    p.add_argument(
        "--top", type=int, default=5, help="entries in the dropout, loss and gap plots (default 5)"
    )
    p.add_argument(
        "--lines",
        type=int,
        default=10,
        help="entries drawn as lines in the MPJPE plot, besides the baseline; the "
        "others form a grey band (default 10)",
    )
    p.add_argument(
        "--rows",
        type=int,
        default=50,
        help="entries in the page's tables, besides the baseline; the CSVs have all (default 50)",
    )
    p.add_argument(
        "--window",
        type=int,
        default=5,
        help="last K validations for the std and mean gap columns (default 5)",
    )
    p.add_argument(
        "--steps",
        help="steps of the MPJPE-at-steps table, e.g. 3000,6000,9000 "
        "(default: every validation step)",
    )
    args = p.parse_args(argv)
    if min(args.top, args.lines, args.rows) < 1 or args.window < 2:
        raise UserError(
            f"--top {args.top} --lines {args.lines} --rows {args.rows} --window "
            f"{args.window}: want top, lines, rows >= 1 and window >= 2"
        )
    path = write_report(
        args.dirs, args.out, args.top, args.window, parse_steps(args.steps), args.lines, args.rows
    )
    print(f"report: {path}")
    return 0
