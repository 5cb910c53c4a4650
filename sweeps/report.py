"""Sweep report: compares sweep trials and training runs in one self-contained HTML page.

    python sweeps/report.py DIR [DIR ...] [--out OUT] [--top N] [--window K] [--steps S,S,...]

Each DIR is a sweep folder (has ``summary.json``) or a training run folder (has
``metrics.jsonl``): at most one sweep, any number of runs (e.g. a before and an after run).
Writes ``OUT/report.html`` (images embedded, opens offline), the PNGs, ``trials.csv``,
``mpjpe_at_steps.csv``, ``trial_stats.csv`` and ``report.json``. OUT defaults to
``<sweep>/report/``, or ``<first run>/report/`` when there is no sweep.
"""

from __future__ import annotations

import argparse
import base64
import csv
import html
import json
import math
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # `python sweeps/report.py` without an install
    sys.path.insert(0, str(REPO))

from handpose.errors import UserError, run_cli  # noqa: E402
from sweeps import report_data as D  # noqa: E402
from sweeps import report_plots as P  # noqa: E402

SECTIONS = {
    "overview": "Overview",
    "leaderboard": "Leaderboard",
    "curves": "Validation MPJPE over steps",
    "at-steps": "MPJPE at shared validation steps",
    "best-so-far": "Best MPJPE so far",
    "stats": "Validation std and generalisation gap",
    "dropout": "Dropout schedule",
    "losses": "Train vs validation loss",
    "params": "Searched parameters vs final MPJPE",
    "importance": "Hyperparameter importance",
    "confirm": "Confirmation (multi-seed)",
    "files": "Data files",
}
CURVES = (("train", "total"), ("train", "dropout_rate"), ("val", "val_total"),
          ("val", "train_mpjpe"), ("val", "gap_mpjpe"))  # series in report.json's curves
OPTIONAL_COLUMNS = ("kind", "val_fingerprint", "error")  # in the HTML only if they vary
CSS = """
body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;color:#222;
 max-width:1200px;margin:0 auto;padding:16px 24px;background:#fff}
h1{font-size:22px;margin:8px 0}h2{font-size:18px;margin:28px 0 8px;padding-top:8px;
 border-top:1px solid #ddd}
nav{font-size:13px;columns:3;background:#f6f8fa;padding:8px 12px;border-radius:6px}
nav a{display:block;color:#0366d6;text-decoration:none}
.scroll{overflow-x:auto;max-width:100%}
table{border-collapse:collapse;font-size:12px;margin:6px 0}
th,td{border:1px solid #d0d7de;padding:3px 5px;white-space:nowrap}
td.w{white-space:normal;min-width:320px}
th{background:#f6f8fa;text-align:left;white-space:normal;vertical-align:bottom}td.n{text-align:right;font-variant-numeric:tabular-nums}
tr:nth-child(even) td{background:#fafbfc}
img{max-width:100%;height:auto;display:block;margin:8px 0;border:1px solid #eee}
.note{color:#555;background:#f6f8fa;border-left:3px solid #999;padding:6px 10px;margin:6px 0}
.warn{background:#fff8c5;border-left:3px solid #d4a72c;padding:6px 10px;margin:6px 0}
dl{display:grid;grid-template-columns:max-content auto;gap:2px 14px;margin:6px 0}
dt{color:#555}dd{margin:0}
"""


def fmt(v: Any) -> str:
    """A cell's text: numbers rounded for reading, None as a dash."""
    if v is None:
        return "–"
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, float):
        return "nan" if not math.isfinite(v) else f"{v:.2f}" if abs(v) >= 1 else f"{v:.4g}"
    if isinstance(v, dict):
        return ", ".join(f"{k}={fmt(x)}" for k, x in v.items())
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(fmt(x) for x in v) + "]"
    return str(v)


def short_keys(keys: list[str]) -> dict[str, str]:
    """Config keys by their last part (``LOSS.lambda_trans`` -> ``lambda_trans``) if unique."""
    last = Counter(k.rsplit(".", 1)[-1] for k in keys)
    return {k: k.rsplit(".", 1)[-1] if last[k.rsplit(".", 1)[-1]] == 1 else k for k in keys}


def cell(v: Any) -> str:
    """One ``<td>``: numbers right-aligned, long text (e.g. a dict of overrides) wrapped."""
    text = fmt(v)
    cls = ' class="n"' if isinstance(v, (int, float)) else ' class="w"' if len(text) > 60 else ""
    return f"<td{cls}>{html.escape(text)}</td>"


def table(rows: list[dict[str, Any]], headers: dict[str, str] | None = None) -> str:
    """An HTML table of row dicts (columns: the first row's keys); ``headers`` renames."""
    if not rows:
        return note("no rows")
    cols = list(rows[0])
    names = {c: (headers or {}).get(c, c) for c in cols}
    head = "".join(f'<th title="{html.escape(c)}">'  # long names may wrap after a "_"
                   f'{html.escape(names[c]).replace("_", "_<wbr>")}</th>' for c in cols)
    body = "".join("<tr>" + "".join(cell(r.get(c)) for c in cols) + "</tr>" for r in rows)
    return f'<div class="scroll"><table><tr>{head}</tr>{body}</table></div>'


def drop_constant(rows: list[dict[str, Any]], cols: tuple[str, ...]) -> list[dict[str, Any]]:
    """``rows`` without those of ``cols`` that hold one value in every row (the overview
    says it once)."""
    same = {c for c in cols if len({fmt(r.get(c)) for r in rows}) == 1}
    return [{k: v for k, v in r.items() if k not in same} for r in rows]


def note(text: str, cls: str = "note") -> str:
    return f'<p class="{cls}">{html.escape(text)}</p>'


def image(path: Path | None, why_not: str) -> str:
    """The PNG embedded as a data URI, or a note saying why there is none."""
    if path is None:
        return note(why_not)
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{html.escape(path.stem)}">'


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    """Row dicts as CSV (columns: the first row's keys; None as empty)."""
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        if rows:
            w.writerow(list(rows[0]))
            w.writerows([["" if v is None else v for v in r.values()] for r in rows])


def clean(x: Any) -> Any:
    """JSON-safe copy: non-finite floats become None, paths strings."""
    if isinstance(x, dict):
        return {str(k): clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [clean(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return str(x) if isinstance(x, Path) else x


def overview(data: D.ReportData) -> str:
    """Sources, budget, comparability of the validation streams and the best entry."""
    items: dict[str, Any] = {}
    if data.sweep is not None:
        s = data.sweep.summary
        items["sweep"] = data.sweep.dir
        items.update({k: s.get(k) for k in ("preset", "metric", "mode", "total_step",
                                             "val_seed")})
        best = s.get("best") or {}
        items["best trial"] = (f"{best['trial_id']}: {fmt(best.get('mpjpe'))} mm at step "
                               f"{best.get('step')}" if best else None)
    runs = [e for e in data.entries if e.kind == "run"]
    if runs:
        items["run folders"] = ", ".join(str(e.run_dir) for e in runs)
    counts = Counter(e.status for e in data.entries)
    items["entries"] = ", ".join(f"{n} {s.lower()}" for s, n in counts.items())
    prints = sorted({e.final["val_fingerprint"] for e in data.entries
                     if e.final["val_fingerprint"]})
    out = "<dl>" + "".join(f"<dt>{html.escape(k)}</dt><dd>{html.escape(fmt(v))}</dd>"
                           for k, v in items.items()) + "</dl>"
    if len(prints) > 1:
        return out + note(f"validated on {len(prints)} different streams (fingerprints "
                          f"{', '.join(prints)}): MPJPE values are not comparable across "
                          "them", "warn")
    return out + note(f"every entry validated on the same stream (fingerprint "
                      f"{prints[0] if prints else 'unknown'}): MPJPE at equal steps is "
                      "comparable")


def confirm_section(sweep: D.Sweep | None) -> str:
    """``confirm.json``'s rows as a table (generic: whatever keys the rows have)."""
    report = sweep.confirm if sweep is not None else None
    if not report:
        return note("no confirm.json in the sweep folder (python sweeps/confirm.py SWEEP_DIR "
                    "re-trains the top trials and the baseline with several seeds)")
    rows = [r for r in report.get("rows") or [] if isinstance(r, dict)]
    cols = list(dict.fromkeys(k for r in rows for k in r))
    rows = [{c: r.get(c) for c in cols} for r in rows]
    sentence = report.get("sentence")
    return (note(sentence) if isinstance(sentence, str) else "") + table(rows)


@dataclass
class Report:
    """The report's content: the loaded entries, every table and the drawn figures."""

    data: D.ReportData
    top: int
    window: int
    steps: list[int]
    board: list[dict[str, Any]]
    at_steps: list[dict[str, Any]]
    stats: list[dict[str, Any]]
    progress: list[dict[str, float]]
    importance: dict[str, float] | None
    importance_note: str
    figs: dict[str, Path | None]


def compute(data: D.ReportData, out: Path, top: int, window: int,
            steps: list[int] | None) -> Report:
    """Every table, and every figure drawn into ``out``."""
    entries, best = data.entries, data.entries[:top]
    total_step = data.sweep.summary.get("total_step") if data.sweep is not None else None
    progress = D.best_so_far(entries)
    importance, importance_note = (D.param_importance(data.sweep.dir) if data.sweep is not None
                                   else (None, "hyperparameter importance needs a sweep "
                                         "folder with its Optuna study (optuna.db)"))
    figs = {
        "curves": P.mpjpe_curves(entries, total_step, out / "mpjpe_vs_step.png"),
        "best-so-far": P.best_so_far(progress, out / "best_so_far.png"),
        "gap": P.gap(best, out / "generalisation_gap.png"),
        "dropout": P.dropout(best, out / "dropout_schedule.png"),
        "losses": P.losses(best, out / "train_vs_val_loss.png"),
        "params": P.params(entries, data.param_keys, out / "params_vs_mpjpe.png"),
        "importance": P.importance(importance or {}, out / "importance.png"),
    }
    steps = steps or D.shared_steps(entries)
    return Report(data, len(best), window, steps, D.leaderboard(data),
                  D.mpjpe_at_steps(entries, steps), D.trial_stats(entries, window), progress,
                  importance, importance_note, figs)


def write_data(r: Report, out: Path) -> list[str]:
    """The tables as CSV and everything as ``report.json``; returns the file names."""
    write_csv(out / "trials.csv", r.board)
    write_csv(out / "mpjpe_at_steps.csv", r.at_steps)
    write_csv(out / "trial_stats.csv", r.stats)
    sweep = r.data.sweep
    curves = {e.id: {"val_mpjpe": e.curve(), **{k: e.series(split, k) for split, k in CURVES}}
              for e in r.data.entries}
    (out / "report.json").write_text(json.dumps(clean({
        "sweep": None if sweep is None else {
            "dir": sweep.dir, **{k: v for k, v in sweep.summary.items() if k != "trials"}},
        "param_keys": r.data.param_keys, "leaderboard": r.board,
        "mpjpe_at_steps": {"steps": r.steps, "rows": r.at_steps},
        "trial_stats": {"window": r.window, "rows": r.stats}, "best_so_far": r.progress,
        "importance": {"values": r.importance, "note": r.importance_note},
        "confirm": sweep.confirm if sweep is not None else None, "curves": curves,
        "images": {k: p.name for k, p in r.figs.items() if p is not None},
    }), indent=1))
    return ["trials.csv", "mpjpe_at_steps.csv", "trial_stats.csv", "report.json"]


def sections(r: Report, files: list[str]) -> dict[str, str]:
    """Each section's HTML body, keyed like :data:`SECTIONS`."""
    figs, window = r.figs, r.window
    top = f"the top {r.top} entries by final MPJPE"
    importance = table([{"parameter": k, "importance": v}
                        for k, v in (r.importance or {}).items()])
    return {
        "overview": overview(r.data),
        "leaderboard": table(drop_constant(r.board, OPTIONAL_COLUMNS),
                             short_keys(r.data.param_keys)) + note(
            "ranked by the last validation MPJPE (mm); best_mpjpe is the lowest over all "
            "validations. Stopped-early trials' last MPJPE is from an earlier step."),
        "curves": image(figs["curves"], "no validation MPJPE to plot") + note(
            "solid: full budget; dashed, ending in x: stopped early by ASHA; dotted: error"),
        "at-steps": table(r.at_steps, {str(s): f"step {s}" for s in r.steps}) + note(
            "validation MPJPE (mm) of every entry at the same steps; a dash: it did not "
            "validate there (stopped before, or another schedule)"),
        "best-so-far": image(figs["best-so-far"], "no Ray results (result.json) with "
                             "timestamps: best-so-far needs a sweep's trial folders"),
        "stats": table(r.stats) + note(
            f"mpjpe_std: sample std of validation MPJPE over all validations (mm); "
            f"mpjpe_std_last{window}: over the last {window}; gap: val minus train MPJPE "
            "(mm), train measured in eval mode on a fixed train subset")
        + image(figs["gap"], "no gap_mpjpe in metrics.jsonl (DATA.train_eval_samples=0?)"),
        "dropout": image(figs["dropout"], "no dropout_rate in the train lines of "
                         "metrics.jsonl") + note(f"{top}; logged every GENERAL.log_step"),
        "losses": image(figs["losses"], "no losses in metrics.jsonl") + note(
            f"{top}: train total loss (train mode, with dropout) every GENERAL.log_step "
            "and validation total loss (eval mode) at every validation"),
        "params": image(figs["params"], "no searched parameters (run folders only) or no "
                        "final MPJPE"),
        "importance": image(figs["importance"], r.importance_note) + (
            note(r.importance_note) + importance if r.importance else ""),
        "confirm": confirm_section(r.data.sweep),
        "files": "<ul>" + "".join(f'<li><a href="{f}">{f}</a></li>' for f in files + [
            p.name for p in figs.values() if p is not None]) + "</ul>",
    }


def build_report(paths: list[Path], out: Path | None = None, top: int = 5, window: int = 5,
                 steps: list[int] | None = None) -> Path:
    """Write the report of ``paths`` (a sweep and/or run folders) to ``out`` (default
    ``<sweep or first run>/report``); returns the HTML file's path."""
    data = D.load(paths)
    if out is None:
        out = (data.sweep.dir if data.sweep is not None else paths[0]) / "report"
    out.mkdir(parents=True, exist_ok=True)
    r = compute(data, out, top, window, steps)
    body = sections(r, write_data(r, out))
    name = data.sweep.dir.name if data.sweep else " vs ".join(p.name for p in paths)
    title = html.escape(f"Report: {name}")
    nav = "".join(f'<a href="#{k}">{html.escape(v)}</a>' for k, v in SECTIONS.items())
    parts = "".join(f'<section id="{k}"><h2>{html.escape(v)}</h2>{body[k]}</section>'
                    for k, v in SECTIONS.items())
    (out / "report.html").write_text(
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{title}</title>'
        f"<style>{CSS}</style></head><body><h1>{title}</h1><p class=\"note\">generated "
        f"{time.strftime('%Y-%m-%d %H:%M:%S')}; MPJPE in mm, lower is better</p>"
        f"<nav>{nav}</nav>{parts}</body></html>\n", encoding="utf-8")
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
    p.add_argument("dirs", nargs="+", type=Path, metavar="DIR",
                   help="a sweep folder (summary.json) and/or training run folders "
                        "(metrics.jsonl)")
    p.add_argument("--out", type=Path, help="output folder (default: <sweep>/report/, "
                                            "else <first run>/report/)")
    p.add_argument("--top", type=int, default=5,
                   help="entries in the dropout, loss and gap plots (default 5)")
    p.add_argument("--window", type=int, default=5,
                   help="last K validations for the std and mean gap columns (default 5)")
    p.add_argument("--steps", help="steps of the MPJPE-at-steps table, e.g. 3000,6000,9000 "
                                   "(default: every validation step)")
    args = p.parse_args(argv)
    if args.top < 1 or args.window < 2:
        raise UserError(f"--top {args.top} --window {args.window}: want top >= 1, window >= 2")
    path = build_report(args.dirs, args.out, args.top, args.window, parse_steps(args.steps))
    print(f"report: {path}")
    return 0


if __name__ == "__main__":
    run_cli(main)
