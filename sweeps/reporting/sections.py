"""The sweep report's sections (``sweeps/reporting/page.py``): each section's HTML body, from the
overview of the sources and the baseline to the list of data files."""

from __future__ import annotations

import html
from collections import Counter
from typing import Any

from sweeps.reporting.content import Report
from sweeps.reporting.data import ReportData, Sweep
from sweeps.reporting.html import drop_constant, fmt, image, note, short_keys, table

SECTIONS = {
    "overview": "Overview",
    "leaderboard": "Leaderboard",
    "curves": "Validation MPJPE over steps",
    "fidelity": "Fidelity (early stopping check)",
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
OPTIONAL_COLUMNS = ("kind", "role", "val_fingerprint", "error")  # in the HTML if they vary


def overview(data: ReportData) -> str:
    """Sources, budget, the best entry against the baseline, the sentinels, and whether the
    validation streams are comparable."""
    items: dict[str, Any] = {}
    warn = ""
    if data.sweep is not None:
        s = data.sweep.summary
        items["sweep"] = data.sweep.dir
        items.update({k: s.get(k) for k in ("preset", "metric", "mode", "total_step", "val_seed")})
        best, base = s.get("best") or {}, s["baseline"] or {}
        items["best trial"] = (
            f"{best['trial_id']}: {fmt(best.get('mpjpe'))} mm at step {best.get('step')}"
            if best
            else None
        )
        items["baseline"] = (
            f"{base['trial_id']} (the base config's own values): "
            f"{fmt(base.get('mpjpe'))} mm at step {base.get('last_step')}"
            f", {str(base.get('status')).lower()}"
            if base
            else "none (no trial evaluated the base config's own values)"
        )
        versus = s["best_vs_baseline"] or {}
        if versus.get("sentence"):
            warn += note(versus["sentence"], "note" if versus.get("beyond_noise") else "warn")
        sentinels = s["sentinels"]
        items["sentinels"] = (
            (
                f"{len(sentinels)} trials ran the full budget whatever ASHA "
                "said: "
                + ", ".join(sentinels[:12])
                + (f" and {len(sentinels) - 12} more" if len(sentinels) > 12 else "")
            )
            if sentinels
            else "none"
        )
        items["ASHA rungs (steps)"] = s["rungs"]
    runs = [e for e in data.entries if e.kind == "run"]
    if runs:
        items["run folders"] = ", ".join(str(e.run_dir) for e in runs)
    counts = Counter(e.status for e in data.entries)
    items["entries"] = ", ".join(f"{n} {s.lower()}" for s, n in counts.items())
    prints = sorted(
        {e.final["val_fingerprint"] for e in data.entries if e.final["val_fingerprint"]}
    )
    out = (
        "<dl>"
        + "".join(
            f"<dt>{html.escape(k)}</dt><dd>{html.escape(fmt(v))}</dd>"
            for k, v in items.items()
            if v is not None
        )
        + "</dl>"
        + warn
    )
    if counts.get("UNFINISHED") and data.sweep is not None:
        out += note(
            f"{counts['UNFINISHED']} trials did not finish (the sweep was "
            "interrupted): resume it to finish them",
            "warn",
        )
    if len(prints) > 1:
        return out + note(
            f"validated on {len(prints)} different streams (fingerprints "
            f"{', '.join(prints)}): MPJPE values are not comparable across "
            "them",
            "warn",
        )
    return out + note(
        f"every entry validated on the same stream (fingerprint "
        f"{prints[0] if prints else 'unknown'}): MPJPE at equal steps is "
        "comparable"
    )


def shown(data: ReportData, rows: int) -> list[int]:
    """Indices of the entries the HTML tables show: the best ``rows`` and the baseline."""
    return [i for i, e in enumerate(data.entries) if i < rows or e.baseline]


def rest_note(data: ReportData, keep: list[int], csv_name: str) -> str:
    """One line on the entries a table leaves out: how many, by status, their MPJPE range."""
    kept = set(keep)
    left = [e for i, e in enumerate(data.entries) if i not in kept]
    if not left:
        return ""
    values = [e.final["mpjpe"] for e in left if e.final["mpjpe"] is not None]
    counts = ", ".join(f"{n} {s.lower()}" for s, n in Counter(e.status for e in left).items())
    span = f"; final MPJPE {min(values):.2f}-{max(values):.2f} mm" if values else ""
    return note(f"{len(left)} more entries not shown ({counts}{span}); every row is in {csv_name}")


def fidelity_section(r: Report) -> str:
    """The summary's rung-vs-final rank correlation, its message, and the scatter."""
    if r.data.sweep is None:
        return note("no fidelity check: run folders only, no sweep")
    fid = r.data.sweep.summary["fidelity"]
    rows = [
        {"rung step": x.get("step"), "spearman rho": x.get("spearman"), "n": x.get("n")}
        for x in fid.get("per_rung") or []
    ]
    msg = str(fid.get("message") or "")
    if fid.get("low") and "early stopping may have discarded winners" not in msg:
        msg = "early stopping may have discarded winners: " + msg
    return (
        note(msg, "warn" if fid.get("low") else "note")
        + table(rows)
        + note(
            f"Spearman rank correlation between each rung's validation MPJPE and the final MPJPE, "
            f"over the {fid.get('n_full')} trials that ran the full budget (sentinels, the "
            "baseline and ASHA's survivors); below 0.5, the rung ranks trials differently from "
            "the full budget"
        )
        + image(r.figs["fidelity"], "no full-budget trial validated at a rung: nothing to plot")
    )


def confirm_section(sweep: Sweep | None) -> str:
    """``confirm.json``'s rows as a table (generic: whatever keys the rows have)."""
    report = sweep.confirm if sweep is not None else None
    if not report:
        return note(
            "no confirm.json in the sweep folder (python sweeps/confirm.py SWEEP_DIR "
            "re-trains the top trials and the baseline with several seeds)"
        )
    rows = [r for r in report.get("rows") or [] if isinstance(r, dict)]
    cols = list(dict.fromkeys(k for r in rows for k in r))
    rows = [{c: r.get(c) for c in cols} for r in rows]
    sentence = report.get("sentence")
    return (note(sentence) if isinstance(sentence, str) else "") + table(rows)


def sections(r: Report, files: list[str]) -> dict[str, str]:
    """Each section's HTML body, keyed like :data:`SECTIONS`."""
    figs, window = r.figs, r.window
    top = f"the top {r.top} entries by final MPJPE"
    keep = shown(r.data, r.rows)
    marked = {e.id for e in r.data.entries if e.baseline}
    imp = r.importance
    return {
        "overview": overview(r.data),
        "leaderboard": table(
            drop_constant([r.board[i] for i in keep], OPTIONAL_COLUMNS),
            short_keys(r.data.param_keys),
            marked,
        )
        + rest_note(r.data, keep, "trials.csv")
        + note(
            "ranked by the last validation MPJPE (mm); best_mpjpe is the lowest over all "
            "validations. Stopped-early trials' last MPJPE is from an earlier step. role: "
            "baseline (highlighted: the base config's own values, full budget) or sentinel "
            "(ran the full budget whatever ASHA said)."
        ),
        "curves": image(figs["curves"], "no validation MPJPE to plot")
        + note(
            "solid: full budget; dashed, ending in x: stopped early by ASHA; dotted: error; "
            "thick black: the baseline; grey band: the entries not drawn as lines"
        ),
        "fidelity": fidelity_section(r),
        "at-steps": table(
            [r.at_steps[i] for i in keep], {str(s): f"step {s}" for s in r.steps}, marked
        )
        + rest_note(r.data, keep, "mpjpe_at_steps.csv")
        + note(
            "validation MPJPE (mm) of every entry at the same steps; a dash: it did not "
            "validate there (stopped before, or another schedule)"
        ),
        "best-so-far": image(
            figs["best-so-far"],
            "no trial with Ray results (result.json, with timestamps) ran the full budget: "
            "best-so-far needs a sweep's trial folders",
        )
        + note(
            "best = the lowest final MPJPE of a trial that ran the full budget, as everywhere "
            "else in the report: the curve steps down only when such a trial finishes "
            "(earlier, lower MPJPE values of any trial do not count)"
        ),
        "stats": table([r.stats[i] for i in keep], marked=marked)
        + rest_note(r.data, keep, "trial_stats.csv")
        + note(
            f"mpjpe_std: sample std of validation MPJPE over all validations (mm); "
            f"mpjpe_std_last{window}: over the last {window}; gap: val minus train MPJPE "
            "(mm), train measured in eval mode on a fixed train subset"
        )
        + image(figs["gap"], "no gap_mpjpe in metrics.jsonl (DATA.train_eval_samples=0?)"),
        "dropout": image(
            figs["dropout"], "no dropout warmup step and target in the entries' values or config"
        )
        + note(
            f"{top}: the rate in effect at every step, computed by handpose.schedules from "
            "each entry's searched values and config (warmup step, target, schedule, ramp)"
        ),
        "losses": image(figs["losses"], "no per-term losses in metrics.jsonl")
        + note(
            f"{top}: one panel per loss term, unweighted (each in its own unit; the total a "
            "trial minimised multiplies them by its own LOSS.lambda_*, so totals are not "
            "comparable across trials): train (solid, train mode with dropout) every "
            "GENERAL.log_step, validation (dashed, eval mode) at every validation"
        ),
        "params": image(
            figs["params"], "no searched parameters (run folders only) or no final MPJPE"
        )
        + note(
            "y axis: the range of the entries' MPJPE without far outliers (beyond 3 "
            "interquartile ranges); an off-scale entry is clipped, drawn as a red triangle "
            "at the edge with its MPJPE"
        )
        + note(
            "log x axis: the keys searched with log: true"
            if r.log_keys
            else "linear axes: the search space's log flags were not readable"
            if r.log_keys is None and r.data.sweep is not None
            else ""
        ),
        "importance": (
            image(figs["importance"], imp.note) + note(imp.note) + table(imp.rows)
            if imp.rows
            else note(imp.note)
        ),
        "confirm": confirm_section(r.data.sweep),
        "files": "<ul>"
        + "".join(
            f'<li><a href="{f}">{f}</a></li>'
            for f in files + [p.name for p in figs.values() if p is not None]
        )
        + "</ul>",
    }
