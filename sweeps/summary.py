"""Sweep results -> ``summary.json``, ``best_config.yaml``, ``leaderboard.csv`` + console text."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from handpose.config import apply_overrides
from sweeps.spec import SweepSpec, trial_overrides


def _finite(x: Any) -> float | None:
    return float(x) if isinstance(x, (int, float)) and math.isfinite(x) else None


def error_reason(err: BaseException) -> str:
    """The original exception behind Ray's wrappers, as one line."""
    while getattr(err, "cause", None) is not None:
        err = err.cause
    text = (str(err).strip().splitlines() or [""])[0]
    return f"{type(err).__name__}: {text}"[:500]


def collect_trials(results, spec: SweepSpec, total_step: int) -> list[dict[str, Any]]:
    """One dict per trial from a Tune ``ResultGrid`` (status, searched values, curve)."""
    statuses = {t.trial_id: t.status for t in results._experiment_analysis.trials}
    trials = []
    for r in results:
        m = r.metrics or {}
        trial_id = m.get("trial_id") or Path(r.path).name
        params = {k: r.config[k] for k in spec.space if k in r.config}
        df = r.metrics_dataframe
        curve = []
        if df is not None and "step" in df and spec.metric in df:
            curve = [[int(s), _finite(v)] for s, v in zip(df["step"], df[spec.metric], strict=True)]
        last_step = int(m.get("step", 0) or 0)
        status = statuses.get(trial_id, "UNKNOWN")
        if r.error is not None:
            status = "ERROR"
        elif status == "TERMINATED":
            status = "COMPLETED" if last_step >= total_step else "STOPPED_EARLY"
        trials.append({
            "trial_id": trial_id, "status": status, "overrides": params,
            "last_step": last_step, "mpjpe": _finite(m.get(spec.metric)),
            "best_mpjpe": min((v for _, v in curve if v is not None), default=None),
            "mpjpe_rel": _finite(m.get("mpjpe_rel")), "pa_mpjpe": _finite(m.get("pa_mpjpe")),
            "rte": _finite(m.get("rte")), "val_fingerprint": m.get("val_fingerprint"),
            "node_id": m.get("node_id"), "path": str(r.path), "run_dir": m.get("run_dir"),
            "curve": curve,
            "error": None if r.error is None else error_reason(r.error),
        })
    sign = 1 if spec.mode == "min" else -1
    trials.sort(key=lambda t: (t["mpjpe"] is None, sign * (t["mpjpe"] or 0)))
    return trials


def pick_best(trials: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Best last-reported metric among full-budget trials (else among all that reported)."""
    full = [t for t in trials if t["status"] == "COMPLETED" and t["mpjpe"] is not None]
    pool = full or [t for t in trials if t["mpjpe"] is not None and t["status"] != "ERROR"]
    return pool[0] if pool else None  # trials are sorted best first


def write_outputs(sweep_dir: Path, spec: SweepSpec, base_cfg: DictConfig,
                  trials: list[dict[str, Any]]) -> dict[str, Any]:
    best = pick_best(trials)
    prints = sorted({t["val_fingerprint"] for t in trials if t["val_fingerprint"]})
    summary = {
        "metric": spec.metric, "mode": spec.mode, "preset": spec.preset,
        "total_step": base_cfg.GENERAL.total_step, "val_seed": base_cfg.GENERAL.val_seed,
        "val_fingerprints": prints, "comparable": len(prints) == 1,
        "best": None if best is None else {
            "trial_id": best["trial_id"], "overrides": best["overrides"],
            "mpjpe": best["mpjpe"], "step": best["last_step"]},
        "trials": trials,
    }
    (sweep_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    if best is not None:
        cfg = apply_overrides(base_cfg.copy(), trial_overrides(best["overrides"]))
        cfg.GENERAL.resume_path = None
        cfg.GENERAL.run_name = f"best-{best['trial_id']}"
        (sweep_dir / "best_config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    keys = list(spec.space)
    with open(sweep_dir / "leaderboard.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["rank", "trial_id", "status", "last_step", "mpjpe", "mpjpe_rel", "pa_mpjpe",
                    "rte", "val_fingerprint", *keys])
        for i, t in enumerate(trials, 1):
            w.writerow([i, t["trial_id"], t["status"], t["last_step"], t["mpjpe"],
                        t["mpjpe_rel"], t["pa_mpjpe"], t["rte"], t["val_fingerprint"],
                        *[t["overrides"].get(k) for k in keys]])
    return summary


def format_leaderboard(summary: dict[str, Any], top: int = 10) -> str:
    keys = list(summary["trials"][0]["overrides"]) if summary["trials"] else []
    short = [k.split(".")[-1] for k in keys]
    head = f"{'#':>2} {'trial':<14} {'status':<13} {'step':>6} {'mpjpe':>8} " + " ".join(
        f"{s:>19}" for s in short)
    lines = [head]
    for i, t in enumerate(summary["trials"][:top], 1):
        mp = f"{t['mpjpe']:.2f}" if t["mpjpe"] is not None else "-"
        vals = " ".join(f"{_fmt(t['overrides'].get(k)):>19}" for k in keys)
        lines.append(f"{i:>2} {t['trial_id']:<14} {t['status']:<13} {t['last_step']:>6} "
                     f"{mp:>8} {vals}")
    return "\n".join(lines)


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def finish(results, spec: SweepSpec, base_cfg: DictConfig, sweep_dir: Path,
           resume_cmd: str) -> int:
    """Write the sweep's files and print the leaderboard, the winner and what to run next."""
    trials = collect_trials(results, spec, base_cfg.GENERAL.total_step)
    summary = write_outputs(sweep_dir, spec, base_cfg, trials)
    print("\n" + format_leaderboard(summary))
    prints = summary["val_fingerprints"]
    if summary["comparable"]:
        print(f"\nall {len(trials)} trials validated on the same stream "
              f"(val_seed {summary['val_seed']}, fingerprint {prints[0]}): MPJPE is comparable")
    else:
        print(f"\nWARNING: trials validated on {len(prints)} different streams: {prints}")
    unfinished = [t for t in trials if t["status"] not in ("COMPLETED", "STOPPED_EARLY", "ERROR")]
    best = summary["best"]
    if best is not None:
        print(f"best: {best['trial_id']} mpjpe={best['mpjpe']:.2f}mm at step {best['step']}")
        print("  " + " ".join(trial_overrides(best["overrides"])))
    print(f"\nresults: {sweep_dir} (summary.json, leaderboard.csv, best_config.yaml)")
    if best is not None:
        print(f"train the best config: python -m handpose.train --config-name "
              f"{sweep_dir / 'best_config.yaml'}")
    if base_cfg.AIM.enabled:
        print(f"open Aim: aim up --repo {base_cfg.AIM.server_url}")
    print(f"report (plots, tables): python sweeps/report.py {sweep_dir}")
    if unfinished:
        print(f"\n{len(unfinished)} trials did not finish; resume with: {resume_cmd}")
        return 1
    return 0
