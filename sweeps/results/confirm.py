"""Multi-seed confirmation of a finished sweep: is the winner better than the baseline recipe,
or just a lucky seed?

    python sweeps/confirm.py SWEEP_DIR [--top K] [--seeds S] [--address ADDR] [KEY=VALUE ...]

Re-trains the sweep's top K configurations and the baseline recipe (the spec preset's first
``points_to_evaluate`` entry) at the full budget with S training seeds each (``GENERAL.seed``
= 1000, 1001, ...; the same seeds for every configuration, one validation seed for all), and
compares each configuration with the baseline seed by seed (paired differences, 95% t
interval). Writes ``SWEEP_DIR/confirm.json``; Ray Tune's state and the run folders go to
``SWEEP_DIR/confirm/``. KEY=VALUE overrides change the base config of every run.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from handpose.config import load_config
from handpose.errors import UserError
from sweeps.results.fidelity import BETTER, NOISE, paired_stats
from sweeps.results.trials import best_pool, finite
from sweeps.run.state import SweepRun, open_sweep

FIRST_SEED = 1000  # training seeds FIRST_SEED, FIRST_SEED + 1, ...
BASELINE = "baseline"
TOO_FEW = "fewer than 2 seeds finished for both it and the baseline"


@dataclass
class Candidate:
    """One configuration to re-train: the baseline recipe or a sweep trial's values."""

    name: str  # "baseline" or the sweep trial's id
    overrides: dict[str, Any]
    sweep_mpjpe: float | None = None


def read_summary(sweep_dir: Path) -> dict[str, Any]:
    """``summary.json`` of a finished sweep (UserError if missing)."""
    path = sweep_dir / "summary.json"
    if not path.is_file():
        raise UserError(f"not a finished sweep folder: missing {path}")
    return json.loads(path.read_text())


def resolved(base_cfg: DictConfig, overrides: dict[str, Any]) -> dict[str, Any]:
    """The full training config of ``overrides`` on ``base_cfg``, validated, as a dict."""
    return OmegaConf.to_container(load_config(base_cfg, params=overrides), resolve=True)


def select_candidates(
    summary: dict[str, Any], base_cfg: DictConfig, baseline: dict[str, Any], top_k: int
) -> tuple[list[Candidate], list[str], str]:
    """The baseline followed by the top ``top_k`` trials (full-budget ones first, as for the
    sweep's own ``best``). Returns the candidates, the ids of top trials that are the
    baseline recipe itself (kept once, as the baseline) and the sweep winner's id."""
    pool = best_pool(summary["trials"])
    if not pool:
        raise UserError("the sweep has no trial with a final MPJPE: nothing to confirm")
    baseline_cfg = resolved(base_cfg, baseline)
    candidates, same_as_baseline = [Candidate(BASELINE, dict(baseline))], []
    for t in pool[:top_k]:
        if resolved(base_cfg, t["overrides"]) == baseline_cfg:
            same_as_baseline.append(t["trial_id"])
            if candidates[0].sweep_mpjpe is None:
                candidates[0].sweep_mpjpe = t["mpjpe"]
        else:
            candidates.append(Candidate(t["trial_id"], dict(t["overrides"]), t["mpjpe"]))
    return candidates, same_as_baseline, pool[0]["trial_id"]


def confirm_trial(
    config: dict[str, Any],
    base: Mapping[str, Any],
    runs_dir: str | None,
    checkpoint_interval_s: float,
    candidates: dict[str, dict[str, Any]],
) -> None:
    """One confirmation run, a cell of the (configuration, seed) grid: the sweep trainable
    with the configuration's values and ``GENERAL.seed``."""
    from sweeps.run.trainable import handpose_trial

    handpose_trial(
        {**candidates[config["config"]], "GENERAL.seed": config["GENERAL.seed"]},
        base,
        runs_dir=runs_dir,
        checkpoint_interval_s=checkpoint_interval_s,
    )


def _fit(run: SweepRun, candidates: list[Candidate], seeds: list[int]):
    """Train every (candidate, seed) pair with Ray Tune (plain grid, no scheduler/searcher)."""
    from ray import tune

    from sweeps.run.tuning import make_trainable, make_tuner, progress_reporter

    trainable = make_trainable(run, candidates={c.name: c.overrides for c in candidates})
    tuner = make_tuner(
        run,
        trainable,
        {
            "config": tune.grid_search([c.name for c in candidates]),
            "GENERAL.seed": tune.grid_search(seeds),
        },
        reporter=progress_reporter(run.spec, {"config": "config", "GENERAL.seed": "seed"}),
    )
    return tuner.fit()


def _final_results(
    results, total_step: int
) -> tuple[dict[tuple[str, int], dict[str, Any]], list[dict[str, Any]]]:
    """(config, seed) -> last report of the runs that reached ``total_step``; and the failures."""
    from sweeps.results.summary import error_reason

    done, failed = {}, []
    for r in results:
        key = (r.config["config"], int(r.config["GENERAL.seed"]))
        m = r.metrics or {}
        if r.error is None and m.get("step") == total_step and finite(m.get("mpjpe")):
            done[key] = m
        else:
            reason = (
                error_reason(r.error)
                if r.error is not None
                else f"stopped at step {m.get('step', 0)} of {total_step}"
            )
            failed.append({"config": key[0], "seed": key[1], "error": reason})
    return done, failed


def confirmation_rows(
    candidates: list[Candidate], seeds: list[int], done: dict[tuple[str, int], dict[str, Any]]
) -> list[dict[str, Any]]:
    """One row per candidate (the baseline first): per-seed final MPJPE and the statistics
    over the seeds where both the candidate's and the baseline's runs finished."""

    def per_seed(name: str) -> list[float | None]:
        return [done[(name, s)]["mpjpe"] if (name, s) in done else None for s in seeds]

    base_values = per_seed(BASELINE)
    rows = []
    for c in candidates:
        values = per_seed(c.name)
        pairs = [
            (v, b)
            for v, b in zip(values, base_values, strict=True)
            if v is not None and b is not None
        ]
        row = {
            "config": c.name,
            "overrides": c.overrides,
            "sweep_mpjpe": c.sweep_mpjpe,
            "per_seed": values,
        }
        if len(pairs) >= 2:
            row.update(paired_stats([v for v, _ in pairs], [b for _, b in pairs]))
        else:
            row.update(
                n=len(pairs),
                mpjpe_mean=None,
                mpjpe_std=None,
                diff_mean=None,
                diff_std=None,
                diff_ci95=None,
                verdict=f"undetermined ({TOO_FEW})",
            )
        if c.name == BASELINE and len(pairs) >= 2:
            row["verdict"] = "reference"
        rows.append(row)
    return rows


def winner_sentence(winner: str, row: dict[str, Any], same_as_baseline: list[str]) -> str:
    """One plain sentence about the sweep winner against the baseline recipe."""
    if winner in same_as_baseline:
        return (
            f"The sweep winner {winner} is the baseline recipe itself: the sweep found "
            "nothing that beat it."
        )
    if row["diff_mean"] is None:
        return (
            f"The sweep winner {winner} could not be compared with the baseline recipe: {TOO_FEW}."
        )
    lo, hi = row["diff_ci95"]
    numbers = (
        f"(diff {row['diff_mean']:+.1f} mm, 95% CI [{lo:.1f}, {hi:.1f}] mm over {row['n']} seeds)"
    )
    if row["verdict"] == NOISE:
        return f"The sweep winner {winner} is within noise of the baseline recipe {numbers}."
    if row["verdict"] == BETTER:
        return f"The sweep winner {winner} is better than the baseline recipe {numbers}."
    return (
        f"The sweep winner {winner} is worse than the baseline recipe when re-trained "
        f"with other seeds {numbers}."
    )


def format_table(report: dict[str, Any]) -> str:
    """The confirmation table: one line per configuration, the baseline first."""

    def num(x: float | None, spec: str = ".2f") -> str:
        return "-" if x is None else format(x, spec)

    seeds = report["seeds"]
    lines = [
        f"{'config':<16} {'sweep':>7} {'mean':>7} {'std':>6} {'diff':>7} "
        f"{'95% CI of diff':>17}  per seed ({', '.join(map(str, seeds))})  verdict"
    ]
    for r in report["rows"]:
        ci = (
            "-"
            if r["diff_ci95"] is None
            else f"[{r['diff_ci95'][0]:+.2f}, {r['diff_ci95'][1]:+.2f}]"
        )
        per = " ".join(num(v) for v in r["per_seed"])
        lines.append(
            f"{r['config']:<16} {num(r['sweep_mpjpe']):>7} {num(r['mpjpe_mean']):>7} "
            f"{num(r['mpjpe_std']):>6} {num(r['diff_mean'], '+.2f'):>7} {ci:>17}  "
            f"{per}  {r['verdict']}"
        )
    return "\n".join(lines)


def run_confirmation(
    sweep_dir: Path,
    top_k: int,
    seeds: int,
    extra_overrides: Sequence[str] = (),
    address: str | None = None,
) -> dict:
    """Re-train the top ``top_k`` configurations of the finished sweep at ``sweep_dir`` and
    the baseline recipe with ``seeds`` training seeds each; write ``confirm.json``, print
    the table and a sentence on the winner, and return the report (the JSON's content).

    Uses the running Ray if there is one (and leaves it running); otherwise joins
    ``address`` or starts a local Ray, and shuts down only what it started."""
    if seeds < 2:
        raise UserError(
            f"--seeds {seeds}: a confirmation needs at least 2 training seeds per configuration"
        )
    if top_k < 1:
        raise UserError(f"--top {top_k}: must be >= 1")
    if any(o.strip().lstrip("+").startswith("GENERAL.seed=") for o in extra_overrides):
        raise UserError(
            f"GENERAL.seed is set per run ({FIRST_SEED}, {FIRST_SEED + 1}, ...) "
            "and may not be overridden"
        )
    sweep_dir = Path(sweep_dir).resolve()
    summary = read_summary(sweep_dir)
    state, spec, sweep_cfg = open_sweep(sweep_dir)
    base_cfg = load_config(sweep_cfg, extra_overrides, {"GENERAL.resume_path": None})
    baseline = spec.points_to_evaluate[0] if spec.points_to_evaluate else {}
    candidates, same_as_baseline, winner = select_candidates(summary, base_cfg, baseline, top_k)
    seed_list = [FIRST_SEED + i for i in range(seeds)]
    total = base_cfg.GENERAL.total_step
    print(
        f"confirmation: {len(candidates)} configs ({', '.join(c.name for c in candidates)}) "
        f"x {seeds} seeds x {total} steps, val_seed {base_cfg.GENERAL.val_seed}"
    )
    for trial_id in same_as_baseline:
        print(f"  {trial_id} is the baseline recipe itself: run once, as the baseline")

    from handpose.data import ensure_dataset

    ensure_dataset(base_cfg)  # before Ray: missing data is a user error, made only once
    from sweeps.run.tuning import connect_ray

    started = connect_ray(address)
    try:
        run = SweepRun(
            spec=spec,
            base_cfg=base_cfg,
            storage=str(sweep_dir),
            sweep_dir=sweep_dir / "confirm",
            num_samples=1,
            trainable_fn=confirm_trial,
        )
        results = _fit(run, candidates, seed_list)
    finally:
        if started:
            import ray

            ray.shutdown()
    done, failed = _final_results(results, total)
    rows = confirmation_rows(candidates, seed_list, done)
    prints = sorted({m["val_fingerprint"] for m in done.values() if m.get("val_fingerprint")})
    winner_row = (
        rows[0] if winner in same_as_baseline else next(r for r in rows if r["config"] == winner)
    )
    report = {
        "sweep_dir": str(sweep_dir),
        "total_step": total,
        "seeds": seed_list,
        "val_seed": base_cfg.GENERAL.val_seed,
        "baseline": {
            "overrides": baseline,
            "same_as_trials": same_as_baseline,
            "source": f"{state.spec}: presets.{spec.preset}.points_to_evaluate[0]"
            if baseline
            else "the sweep's base config",
        },
        "rows": rows,
        "winner": winner,
        "winner_verdict": winner_row["verdict"],
        "winner_within_noise": (
            True
            if winner in same_as_baseline
            else None
            if winner_row["diff_mean"] is None
            else winner_row["verdict"] == NOISE
        ),
        "sentence": winner_sentence(winner, winner_row, same_as_baseline),
        "val_fingerprints": prints,
        "comparable": len(prints) == 1,
        "failed": failed,
    }
    (sweep_dir / "confirm.json").write_text(json.dumps(report, indent=2))
    print("\n" + format_table(report))
    if not report["comparable"]:
        print(f"\nWARNING: the runs validated on {len(prints)} different streams: {prints}")
    for f in failed:
        print(f"run {f['config']} seed {f['seed']} did not finish: {f['error']}")
    print(f"\n{report['sentence']}")
    print(f"results: {sweep_dir / 'confirm.json'} (runs under {sweep_dir / 'confirm'})")
    return report


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("sweep_dir", type=Path, help="a finished sweep folder (with summary.json)")
    p.add_argument(
        "--top",
        type=int,
        default=3,
        metavar="K",
        help="re-train the top K configurations (default 3)",
    )
    p.add_argument(
        "--seeds",
        type=int,
        default=3,
        metavar="S",
        help="training seeds per configuration, >= 2 (default 3)",
    )
    p.add_argument(
        "--address",
        default=os.environ.get("RAY_ADDRESS"),
        help="join an existing Ray cluster (default: start a local one)",
    )
    p.add_argument("overrides", nargs="*", help="KEY=VALUE overrides of the base config")
    args = p.parse_intermixed_args(argv)
    report = run_confirmation(args.sweep_dir, args.top, args.seeds, args.overrides, args.address)
    return 1 if report["failed"] else 0
