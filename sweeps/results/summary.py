"""Sweep results -> ``summary.json``, ``best_config.yaml``, ``leaderboard.csv`` + console text.

A trial's status comes from what it reported and from the scheduler's own record (public
``ResultGrid`` data, no Tune internals): ERROR (an exception, or a diverged loss), COMPLETED
(reached the budget), STOPPED_EARLY (stopped by ASHA) or UNFINISHED (anything else: the
sweep was interrupted). Trials the sweep never created count as unfinished too.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from handpose.config import load_config, val_step
from handpose.data.shards import is_url
from handpose.errors import error_reason
from handpose.tracking import load_metrics
from sweeps.results.fidelity import best_vs_baseline, rung_fidelity, validation_noise
from sweeps.results.leftovers import tidy_sweep
from sweeps.results.trials import (
    COMPLETED,
    ERROR,
    STOPPED_EARLY,
    UNFINISHED,
    best_pool,
    finite,
)
from sweeps.run.curve_copy import checkpoint_val_lines
from sweeps.run.rungs import SCHEDULER_FILE, load_record, rungs
from sweeps.run.spec import SweepSpec, trial_overrides


def scheduler_record(sweep_dir: Path) -> dict[str, Any]:
    """What the scheduler saved: trial creation order, sentinels, the trials it stopped."""
    return load_record(sweep_dir / SCHEDULER_FILE)


def trial_curve(df, metric: str, run_dir: str | None, checkpoint: Any = None) -> list[list[Any]]:
    """``[[step, value], ...]`` of ``metric`` at every validation, by step: Tune's results
    (``df``; a later row of a step wins, e.g. a trial restarted from scratch), then the
    run's own ``metrics.jsonl`` val lines where the driver can read the run folder, else
    the copy in the trial's latest ``checkpoint`` (``s3://`` storage, ``run/curve_copy.py``).

    Tune's results alone can miss validations: a trial retried after a failure gets its
    ``result.json`` back from the sweep folder's copy, which is only as fresh as Tune's
    last experiment snapshot (forced at every checkpoint only with ``keep_checkpoints: 1``).
    ``metrics.jsonl`` keeps every validation up to the checkpoint a retry resumes from."""
    points: dict[int, float | None] = {}
    if df is not None and "step" in df and metric in df:
        points.update((int(s), finite(v)) for s, v in zip(df["step"], df[metric], strict=True))
    val = (load_metrics(Path(run_dir))[1] if run_dir else []) or checkpoint_val_lines(checkpoint)
    points.update((r["step"], finite(r.get(metric))) for r in val if metric in r)
    return [[s, points[s]] for s in sorted(points)]


def collect_trials(
    results, spec: SweepSpec, total_step: int, record: dict[str, Any]
) -> list[dict[str, Any]]:
    """One dict per trial from a Tune ``ResultGrid`` (status, searched values, curve)."""
    trials = []
    for r in results:
        m = r.metrics or {}
        trial_id = m.get("trial_id") or Path(r.path).name
        params = {k: r.config[k] for k in spec.space if k in r.config}
        curve = trial_curve(r.metrics_dataframe, spec.metric, m.get("run_dir"), r.checkpoint)
        last_step = int(m.get("step", 0) or 0)
        error = error_reason(r.error) if r.error is not None else m.get("error")
        if error is not None:
            status = ERROR
        elif last_step >= total_step:
            status = COMPLETED
        elif trial_id in record["stopped"]:
            status = STOPPED_EARLY
        else:
            status = UNFINISHED
        trials.append(
            {
                "trial_id": trial_id,
                "status": status,
                "overrides": params,
                "last_step": last_step,
                "mpjpe": finite(m.get(spec.metric)),
                "best_mpjpe": min((v for _, v in curve if v is not None), default=None),
                "mpjpe_rel": finite(m.get("mpjpe_rel")),
                "pa_mpjpe": finite(m.get("pa_mpjpe")),
                "rte": finite(m.get("rte")),
                "val_fingerprint": m.get("val_fingerprint"),
                "aim_hash": m.get("aim_hash"),
                "node_id": m.get("node_id"),
                "path": str(r.path),
                "run_dir": m.get("run_dir"),
                "curve": curve,
                "error": error,
                "sentinel": trial_id in record["sentinels"],
                "baseline": record["trial_index"].get(trial_id) == 0,
            }
        )
    sign = 1 if spec.mode == "min" else -1
    trials.sort(key=lambda t: (t["mpjpe"] is None, sign * (t["mpjpe"] or 0)))
    return trials


def train_checkpoints(trial: dict[str, Any]) -> list[Path]:
    """Ray Train's checkpoints of a data-parallel trial, oldest first: ``checkpoint-<step>``
    folders in ``<sweep>/train/<trial name>`` (a trial is named ``<trainable>_<trial id>``;
    ``trial["path"]`` is its Tune folder in the sweep folder). Other trials: none. The names
    are handpose's zero-padded checkpoint folders, so their order is the steps'."""
    train_dir = Path(trial["path"]).parent / "train"
    return sorted(c for c in train_dir.glob(f"*_{trial['trial_id']}/checkpoint-*") if c.is_dir())


def prune_checkpoints(trials: list[dict[str, Any]], keep_stopped: bool) -> None:
    """One copy of each checkpoint: drop what a trial's run folder still holds (Tune may
    stop a trial between its report and the deletion of its local copy), all but the
    latest of Tune's (and of Ray Train's, for data-parallel trials) and, unless
    ``keep_stopped``, those of trials ASHA stopped; record each trial's bytes. Unfinished
    trials keep theirs (``--resume`` needs them)."""
    for t in trials:
        if t["run_dir"]:
            shutil.rmtree(Path(t["run_dir"]) / "checkpoints", ignore_errors=True)
        kept: list[Path] = []
        for ckpts in (sorted(Path(t["path"]).glob("checkpoint_*")), train_checkpoints(t)):
            if t["status"] != UNFINISHED:
                drop = ckpts if t["status"] == STOPPED_EARLY and not keep_stopped else ckpts[:-1]
                for c in drop:
                    shutil.rmtree(c, ignore_errors=True)
                ckpts = [c for c in ckpts if c not in drop]
            kept += ckpts
        t["checkpoint_bytes"] = sum(
            f.stat().st_size for c in kept for f in c.rglob("*") if f.is_file()
        )


def best_experiment(sweep_dir: Path) -> str:
    """The Aim experiment of ``best_config.yaml``: ``<sweep>-best``, not the sweep's own
    (training the winner is not a trial of the sweep)."""
    return f"{sweep_dir.name}-best"


def best_aim_note(base_cfg: DictConfig, sweep_dir: Path) -> str:
    """Where training ``best_config.yaml`` logs to Aim, for the console line that prints
    the command."""
    if not base_cfg.AIM.enabled:
        return "Aim is off, as in the sweep"
    return (
        f"Aim: experiment {best_experiment(sweep_dir)} in {base_cfg.AIM.server_url}, "
        f"apart from the sweep's experiment {sweep_dir.name}"
    )


def write_outputs(
    sweep_dir: Path,
    spec: SweepSpec,
    base_cfg: DictConfig,
    trials: list[dict[str, Any]],
    num_samples: int,
    superseded: dict[str, int] | None = None,
) -> dict[str, Any]:
    pool = best_pool(trials)
    best = pool[0] if pool else None
    baseline = next((t for t in trials if t["baseline"]), None)
    total = base_cfg.GENERAL.total_step
    prints = sorted({t["val_fingerprint"] for t in trials if t["val_fingerprint"]})
    steps = rungs(
        spec.scheduler.grace_period, spec.scheduler.reduction_factor, total, val_step(base_cfg)
    )
    summary = {
        "metric": spec.metric,
        "mode": spec.mode,
        "preset": spec.preset,
        "total_step": total,
        "val_seed": base_cfg.GENERAL.val_seed,
        "num_samples": num_samples,
        "val_fingerprints": prints,
        "comparable": len(prints) == 1,
        "best": None
        if best is None
        else {
            "trial_id": best["trial_id"],
            "overrides": best["overrides"],
            "mpjpe": best["mpjpe"],
            "step": best["last_step"],
        },
        "baseline": None
        if baseline is None
        else {k: baseline[k] for k in ("trial_id", "overrides", "mpjpe", "status", "last_step")},
        "best_vs_baseline": best_vs_baseline(best, baseline, validation_noise(trials)),
        "sentinels": sorted(t["trial_id"] for t in trials if t["sentinel"]),
        "rungs": steps,
        "fidelity": rung_fidelity(trials, steps, total),
        "trials": trials,
        "superseded": superseded,  # what tidy_sweep set aside, deleted or counted
    }
    (sweep_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    if best is not None:
        fresh = {
            "GENERAL.resume_path": None,
            "GENERAL.run_name": f"best-{best['trial_id']}",
            "AIM.experiment": best_experiment(sweep_dir),
        }
        cfg = load_config(base_cfg, params={**best["overrides"], **fresh})
        (sweep_dir / "best_config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    keys = list(spec.space)
    with open(sweep_dir / "leaderboard.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(
            [
                "rank",
                "trial_id",
                "status",
                "last_step",
                "mpjpe",
                "mpjpe_rel",
                "pa_mpjpe",
                "rte",
                "val_fingerprint",
                "baseline",
                "sentinel",
                *keys,
            ]
        )
        for i, t in enumerate(trials, 1):
            w.writerow(
                [
                    i,
                    t["trial_id"],
                    t["status"],
                    t["last_step"],
                    t["mpjpe"],
                    t["mpjpe_rel"],
                    t["pa_mpjpe"],
                    t["rte"],
                    t["val_fingerprint"],
                    int(t["baseline"]),
                    int(t["sentinel"]),
                    *[t["overrides"].get(k) for k in keys],
                ]
            )
    return summary


def format_leaderboard(summary: dict[str, Any], top: int = 10) -> str:
    keys = list(summary["trials"][0]["overrides"]) if summary["trials"] else []
    short = [k.split(".")[-1] for k in keys]
    head = f"{'#':>2} {'trial':<14} {'status':<13} {'step':>6} {'mpjpe':>8} " + " ".join(
        f"{s:>19}" for s in short
    )
    lines = [head]
    for i, t in enumerate(summary["trials"][:top], 1):
        mp = f"{t['mpjpe']:.2f}" if t["mpjpe"] is not None else "-"
        vals = " ".join(f"{_fmt(t['overrides'].get(k)):>19}" for k in keys)
        lines.append(
            f"{i:>2} {t['trial_id']:<14} {t['status']:<13} {t['last_step']:>6} {mp:>8} {vals}"
        )
    return "\n".join(lines)


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def no_result_line(trials: list[dict[str, Any]], num_samples: int) -> str:
    """One line for a sweep where no trial reported an MPJPE: how many failed, and the
    first failed trial's error (its first line)."""
    failed = sum(t["status"] == ERROR for t in trials)
    line = f"no trial produced a result: {failed} of {num_samples} trials failed"
    first = next((t for t in trials if t["error"]), None)
    if first is not None:
        line += f"; the first error (trial {first['trial_id']}): {first['error']}"
        traceback = Path(first["path"]) / "error.txt"  # Tune's, when the trial raised
        if traceback.is_file():
            line += f" (traceback: {traceback})"
    return line


def print_results(summary: dict[str, Any], sweep_dir: Path, base_cfg: DictConfig) -> None:
    """The leaderboard, the winner against the baseline, the fidelity check and what to run
    next, for a sweep where at least one trial reported an MPJPE."""
    print("\n" + format_leaderboard(summary))
    prints = summary["val_fingerprints"]
    if summary["comparable"]:
        print(
            f"\nall {len(summary['trials'])} trials validated on the same stream "
            f"(val_seed {summary['val_seed']}, fingerprint {prints[0]}): MPJPE is comparable"
        )
    else:
        print(f"\nWARNING: trials validated on {len(prints)} different streams: {prints}")
    best = summary["best"]
    if best is not None:
        print(f"best: {best['trial_id']} mpjpe={best['mpjpe']:.2f}mm at step {best['step']}")
        print("  " + " ".join(trial_overrides(best["overrides"])))
    if summary["best_vs_baseline"] is not None:
        print(summary["best_vs_baseline"]["sentence"])
    print(f"fidelity: {summary['fidelity']['message']}")
    written = "summary.json, leaderboard.csv" + (", best_config.yaml" if best else "")
    print(f"\nresults: {sweep_dir} ({written})")
    if best is not None:
        print(
            f"train the best config: python -m handpose.train --config-name "
            f"{sweep_dir / 'best_config.yaml'} ({best_aim_note(base_cfg, sweep_dir)})"
        )
    if base_cfg.AIM.enabled and is_url(base_cfg.AIM.server_url):
        print(
            f"Aim: the runs are on the Aim server {base_cfg.AIM.server_url} (its UI: "
            "`aim up --repo <the server's repo>` next to the server)"
        )
    elif base_cfg.AIM.enabled:
        print(f"open Aim: aim up --repo {base_cfg.AIM.server_url}")
    print(f"report (plots, tables): python sweeps/report.py {sweep_dir}")


def finish(
    results,
    spec: SweepSpec,
    base_cfg: DictConfig,
    sweep_dir: Path,
    num_samples: int,
    resume_cmd: str,
) -> int:
    """Write the sweep's files and print the results (:func:`print_results`), or, when no
    trial reported an MPJPE, one line that says so with the first trial's error. 0 when
    every trial finished and at least one reported, else 1."""
    trials = collect_trials(results, spec, base_cfg.GENERAL.total_step, scheduler_record(sweep_dir))
    superseded = tidy_sweep(sweep_dir, base_cfg, trials)  # and the Aim runs closed, indexed
    prune_checkpoints(trials, spec.keep_stopped_checkpoints)
    summary = write_outputs(sweep_dir, spec, base_cfg, trials, num_samples, superseded)
    reported = any(t["mpjpe"] is not None for t in trials)
    if reported:
        print_results(summary, sweep_dir, base_cfg)
    else:
        print("\n" + no_result_line(trials, num_samples))
        print(f"results: {sweep_dir} (summary.json with each trial's error, leaderboard.csv)")
    unfinished = sum(t["status"] == UNFINISHED for t in trials) + max(0, num_samples - len(trials))
    if unfinished:
        print(
            f"\nINTERRUPTED: {unfinished} of {num_samples} trials did not finish; "
            f"resume with: {resume_cmd}"
        )
        return 1
    return 0 if reported else 1
