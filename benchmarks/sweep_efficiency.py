"""Sweep efficiency: the ASHA + Optuna sweep vs the same trials trained to the full budget.

    python benchmarks/sweep_efficiency.py [--trials N] [--steps S] [--seeds K] [--batch B]
                                          [--toy] [--out JSON] [--data DIR] [KEY=VALUE ...]

For each sweep seed (the seed of the spec's TPE sampler) it runs, on one local Ray:
``asha``, the sweep exactly as ``sweeps/dropout_warmup.py`` runs it (preset ``cpu`` of
``configs/sweep/dropout_warmup.yaml``: OptunaSearch + ASHA on the tiny recipe), and
``full``, the same spec with the scheduler disabled: the same trainable
(``sweeps.run.trainable.handpose_trial``), the same searcher (``sweeps.run.search.make_searcher``)
with the same seed, every trial trained to the full budget. The order alternates from seed
to seed. It reports each sweep's best final MPJPE, total training steps and wall time, the
ratios ASHA / full, and whether the two winners are within noise of each other: their
final-MPJPE difference against sqrt(s_a^2 + s_f^2), s = the std of the winner's validation
MPJPE over its last 3 validations.

The default is reduced to fit ~10 minutes on a 2-core machine: 6 trials x 200 steps at
batch 16, 2 seeds. The preset's validation interval (1/8 of the budget), log interval,
LR warmup and ASHA grace period (1/4) are scaled with the step budget.
"""

from __future__ import annotations

import dataclasses
import json
import math
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import (
    TOY_OVERRIDES,
    base_parser,
    format_table,
    machine_info,
    ratio,
    run_full_budget,
    scaled_overrides,
    synthetic_overrides,
    write_results,
    write_spec,
)
from handpose.errors import UserError, run_cli
from sweeps.run.spec import load_spec, trial_overrides
from sweeps.run.tuning import connect_ray

NAME = "sweep_efficiency"
PRESET = "cpu"
LAST_K = 3  # validations that give a winner's noise
TARGET_BEST_GAP = 0.03  # ASHA's best within 3% of the full-budget best ...
TARGET_STEPS = 0.35  # ... at no more than 35% of its training steps


def ideal_asha_fraction(grace: int, reduction_factor: float, max_t: int) -> float:
    """Share of the full budget that synchronous successive halving with these rungs would
    train (1/rf of the trials go on at each rung); asynchronous ASHA trains more, because it
    promotes trials before a rung has its full set of results."""
    steps, alive, prev, rung = 0.0, 1.0, 0, grace
    while rung < max_t:
        steps += alive * (rung - prev)
        alive, prev, rung = alive / reduction_factor, rung, rung * reduction_factor
    return (steps + alive * (max_t - prev)) / max_t


def run_asha(
    spec_path: Path, seed: int, trials: int, storage: Path, overrides: list[str]
) -> dict[str, Any]:
    """The sweep as its CLI runs it (on the Ray this process already has)."""
    from sweeps.dropout_warmup import main as sweep_main

    name = f"asha-seed{seed}"
    t0 = time.perf_counter()
    code = sweep_main(
        [
            "--preset",
            PRESET,
            "--spec",
            str(spec_path),
            "--num-samples",
            str(trials),
            "--storage",
            str(storage),
            "--name",
            name,
            *overrides,
        ]
    )
    return sweep_record("asha", seed, storage / name, time.perf_counter() - t0, code)


def run_full(
    spec_path: Path, seed: int, trials: int, storage: Path, overrides: list[str]
) -> dict[str, Any]:
    """The same sweep set up as its CLI does, with no scheduler: every trial runs to the end."""
    t0 = time.perf_counter()
    sweep_dir, code = run_full_budget(PRESET, spec_path, seed, trials, storage, overrides)
    return sweep_record("full", seed, sweep_dir, time.perf_counter() - t0, code)


def tail_std(curve: list[list[Any]], k: int = LAST_K) -> float | None:
    """Std (ddof=1) of the last ``k`` validation MPJPEs of a ``summary.json`` curve."""
    values = [v for _, v in curve[-k:] if v is not None]
    return statistics.stdev(values) if len(values) >= 2 else None


def sweep_record(mode: str, seed: int, sweep_dir: Path, wall: float, code: int) -> dict[str, Any]:
    """One sweep's numbers from its ``summary.json``."""
    summary = json.loads((sweep_dir / "summary.json").read_text())
    trials = summary["trials"]
    best = summary["best"]
    winner = next((t for t in trials if best and t["trial_id"] == best["trial_id"]), None)
    status = [t["status"] for t in trials]
    return {
        "mode": mode,
        "seed": seed,
        "exit_code": code,
        "wall_s": wall,
        "trials": len(trials),
        "completed": status.count("COMPLETED"),
        "stopped_early": status.count("STOPPED_EARLY"),
        "errors": status.count("ERROR"),
        "steps": sum(t["last_step"] for t in trials),
        "best_trial": best and best["trial_id"],
        "best_mpjpe": best and best["mpjpe"],
        "best_config": best and " ".join(trial_overrides(best["overrides"])),
        "best_noise_mm": tail_std(winner["curve"]) if winner else None,
        "configs": sorted(" ".join(trial_overrides(t["overrides"])) for t in trials),
        "trial_results": [
            {k: t[k] for k in ("trial_id", "status", "last_step", "mpjpe", "overrides", "curve")}
            for t in trials
        ],
    }


def compare(asha: dict[str, Any], full: dict[str, Any]) -> dict[str, Any]:
    """ASHA vs full budget for one sweep seed."""
    a, f = asha["best_mpjpe"], full["best_mpjpe"]
    diff = None if a is None or f is None else a - f
    sa, sf = asha["best_noise_mm"], full["best_noise_mm"]
    noise = None if sa is None or sf is None else math.hypot(sa, sf)
    return {
        "seed": asha["seed"],
        "asha_best_mpjpe": a,
        "full_best_mpjpe": f,
        "best_ratio": ratio(a, f),
        "steps_ratio": ratio(asha["steps"], full["steps"]),
        "wall_ratio": ratio(asha["wall_s"], full["wall_s"]),
        "diff_mm": diff,
        "noise_mm": noise,
        "within_noise": None if diff is None or noise is None else abs(diff) <= noise,
        "same_winner_config": asha["best_config"] == full["best_config"],
        "same_configs_proposed": asha["configs"] == full["configs"],
    }


def summarize(
    runs: list[dict[str, Any]],
    comparisons: list[dict[str, Any]],
    grace: int,
    reduction_factor: float,
    steps: int,
) -> dict[str, Any]:
    """Totals over the seeds and the verdict on each target."""

    def total(mode: str, key: str) -> float:
        return sum(r[key] for r in runs if r["mode"] == mode)

    gaps = [c["best_ratio"] - 1 for c in comparisons if c["best_ratio"] is not None]
    noise = [c["within_noise"] for c in comparisons if c["within_noise"] is not None]
    steps_ratio = ratio(total("asha", "steps"), total("full", "steps"))
    return {
        "steps_ratio": steps_ratio,
        "wall_ratio": ratio(total("asha", "wall_s"), total("full", "wall_s")),
        "worst_best_gap": max(gaps) if gaps else None,
        "mean_best_gap": statistics.mean(gaps) if gaps else None,
        "within_noise": f"{sum(noise)} of {len(noise)}",
        "same_winner_config": f"{sum(c['same_winner_config'] for c in comparisons)} of "
        f"{len(comparisons)}",
        "ideal_asha_steps_ratio": ideal_asha_fraction(grace, reduction_factor, steps),
        "target_best_within_3pct": bool(gaps) and max(gaps) <= TARGET_BEST_GAP,
        "target_steps_at_most_35pct": steps_ratio is not None and steps_ratio <= TARGET_STEPS,
    }


def report(
    runs: list[dict[str, Any]], comparisons: list[dict[str, Any]], totals: dict[str, Any]
) -> str:
    """The printed tables."""
    sweeps = format_table(
        [
            "seed",
            "sweep",
            "trials",
            "completed",
            "stopped",
            "errors",
            "steps",
            "wall_s",
            "best_mpjpe",
            "noise_mm",
            "best_trial",
        ],
        [
            [
                r["seed"],
                r["mode"],
                r["trials"],
                r["completed"],
                r["stopped_early"],
                r["errors"],
                r["steps"],
                r["wall_s"],
                r["best_mpjpe"],
                r["best_noise_mm"],
                r["best_trial"],
            ]
            for r in runs
        ],
    )
    pairs = format_table(
        [
            "seed",
            "asha_best",
            "full_best",
            "best_ratio",
            "steps_ratio",
            "wall_ratio",
            "diff_mm",
            "noise_mm",
            "within_noise",
            "same_winner",
            "same_configs",
        ],
        [
            [
                c["seed"],
                c["asha_best_mpjpe"],
                c["full_best_mpjpe"],
                c["best_ratio"],
                c["steps_ratio"],
                c["wall_ratio"],
                c["diff_mm"],
                c["noise_mm"],
                c["within_noise"],
                c["same_winner_config"],
                c["same_configs_proposed"],
            ]
            for c in comparisons
        ],
    )
    t = totals
    gap = "-" if t["worst_best_gap"] is None else f"{100 * t['worst_best_gap']:+.1f}%"
    steps = "-" if t["steps_ratio"] is None else f"{t['steps_ratio']:.3f}"
    wall = "-" if t["wall_ratio"] is None else f"{t['wall_ratio']:.3f}"
    return "\n".join(
        [
            sweeps,
            "",
            pairs,
            "",
            f"ASHA / full, all seeds: steps {steps}, wall {wall} (synchronous successive halving "
            f"with these rungs would train {t['ideal_asha_steps_ratio']:.3f})",
            f"target: ASHA best within 3% of the full-budget best: worst seed {gap} -> "
            f"{'met' if t['target_best_within_3pct'] else 'NOT met'}",
            f"target: ASHA steps <= 35% of full: {steps} -> "
            f"{'met' if t['target_steps_at_most_35pct'] else 'NOT met'}",
            f"winners within noise of each other: {t['within_noise']} seeds; same winning "
            f"config: {t['same_winner_config']}",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    p = base_parser(NAME, __doc__)
    p.add_argument("--trials", type=int, default=6, help="trials per sweep")
    p.add_argument("--steps", type=int, default=200, help="full training budget per trial")
    p.add_argument("--seeds", type=int, default=2, help="sweep seeds (0, 1, ...)")
    p.add_argument("--batch", type=int, default=16, help="TRAIN.sample_per_device")
    p.add_argument("--train-samples", type=int, default=2000, help="synthetic train set")
    p.add_argument("--val-samples", type=int, default=256, help="synthetic val set")
    p.add_argument("overrides", nargs="*", help="KEY=VALUE overrides of every trial's config")
    args = p.parse_args(argv)
    if args.toy:
        args.trials, args.steps, args.seeds, args.batch = 2, 8, 1, 8
        args.train_samples, args.val_samples = 64, 32
    if min(args.trials, args.steps, args.seeds, args.batch) < 1:
        raise UserError("--trials, --steps, --seeds and --batch must be >= 1")
    machine = machine_info()
    import ray

    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-sweep-") as tmp_name:
        tmp = Path(tmp_name)
        scaled, grace = scaled_overrides(PRESET, args.steps, args.batch)
        overrides = (
            synthetic_overrides(args.data, tmp, args.train_samples, args.val_samples)
            + (list(TOY_OVERRIDES) if args.toy else [])
            + scaled
            + args.overrides
        )
        started = connect_ray(dashboard=False)
        try:
            for i in range(args.seeds):
                spec_path = write_spec(tmp / f"spec-seed{i}.yaml", PRESET, grace, i, args.trials)
                order = (run_asha, run_full) if i % 2 == 0 else (run_full, run_asha)
                for run in order:
                    runs.append(run(spec_path, i, args.trials, tmp / "sweeps", overrides))
        finally:
            if started:
                ray.shutdown()
        spec, _ = load_spec(PRESET, spec_path, extra_overrides=tuple(overrides))
        shown = [o for o in overrides if tmp_name not in o]  # not the temp data paths
    by_seed = {(r["seed"], r["mode"]): r for r in runs}
    comparisons = [compare(by_seed[(i, "asha")], by_seed[(i, "full")]) for i in range(args.seeds)]
    totals = summarize(runs, comparisons, spec.grace_period, spec.reduction_factor, args.steps)
    print("\n" + report(runs, comparisons, totals))
    write_results(
        args.out,
        NAME,
        args,
        machine,
        {
            "setup": {
                "preset": PRESET,
                "overrides": shown,
                "grace_period": spec.grace_period,
                "reduction_factor": spec.reduction_factor,
                "max_concurrent": spec.max_concurrent,
                "resources": dataclasses.asdict(spec.resources),
            },
            "runs": runs,
            "comparisons": comparisons,
            "totals": totals,
        },
    )
    return 1 if any(r["exit_code"] for r in runs) else 0


if __name__ == "__main__":
    run_cli(main)
