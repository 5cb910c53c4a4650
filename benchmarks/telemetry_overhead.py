"""Telemetry overhead: a sweep trial's step time with its Ray metrics export on and off.

    python benchmarks/telemetry_overhead.py [--steps S] [--repeats R] [--threads T] [--toy]
                                            [--out JSON] [--data DIR] [KEY=VALUE ...]

Runs the sweep's trial function (``sweeps.run.trainable._run_trial``: the tiny recipe, the
hooks that report and export) in this process on a local Ray (its metrics agent up, so each
gauge set goes to a real core worker), ``--repeats`` times with the export on and off,
alternating which goes first, same config and seed. Each run's step time is its training
wall time per step from its console lines (``log.txt``, the windows between validations:
``window_stats``); the export's cost is the ratio of the medians, on / off. The log step is
10 (every log step sets five gauges, every validation five more, and a thread sets them all
again each second). On a loaded machine the runs' spread hides a 1% cost: the script also
times one gauge set (``--sets`` of them, on the same Ray) and gives the share of a step
that the sets of one step cost at that price (``implied_share``).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from benchmarks.common import (
    TOY_OVERRIDES,
    base_parser,
    format_table,
    machine_info,
    ratio,
    synthetic_overrides,
    train_windows,
    window_stats,
    write_results,
)
from handpose.config import load_config, val_step
from handpose.errors import UserError, run_cli

NAME = "telemetry_overhead"


def run_once(cfg: Any, run_dir: Path, export: bool) -> dict[str, float | None]:
    """One trial of ``cfg`` in ``run_dir`` with the export on or off: its wall time and its
    steady step time (seconds)."""
    from sweeps.run.trainable import _run_trial

    trial = {"name": run_dir.name, "experiment": "bench", "id": run_dir.name}
    t0 = time.perf_counter()
    _run_trial({}, cfg, run_dir, trial, lambda metrics, ckpt: None, None, 0.0, export)
    wall = time.perf_counter() - t0
    g, batch = cfg.GENERAL, cfg.TRAIN.sample_per_device
    stats = window_stats(train_windows(run_dir / "log.txt"), g.log_step, val_step(cfg), batch)
    rate = stats["steady_samples_per_s"]
    return {"wall_s": wall, "step_s": batch / rate if rate else None}


def gauge_set_s(sets: int) -> float:
    """Seconds per ``Publisher`` gauge set (a trial's tags), over ``sets`` sets."""
    from sweeps.run.telemetry import LOG, LOG_STEP_METRICS, TRIAL_TAGS, Publisher

    name, _, description = LOG_STEP_METRICS[0]
    publisher = Publisher({name: (description, TRIAL_TAGS)}, LOG, refresh_s=3600)
    tags = {"sweep": "bench", "trial_id": "abc_00000"}
    publisher.publish([(name, 0.0, tags)])  # the gauge is made here, not timed
    t0 = time.perf_counter()
    for i in range(sets):
        publisher.publish([(name, float(i), tags)])
    took = time.perf_counter() - t0
    publisher.close()
    return took / sets


def main(argv: list[str] | None = None) -> int:
    import ray

    p = base_parser(NAME, __doc__)
    p.add_argument("--steps", type=int, default=120, help="training steps per run")
    p.add_argument("--repeats", type=int, default=5, help="runs with the export on (and off)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (a trial's CPUs)")
    p.add_argument("--train-samples", type=int, default=1000, help="synthetic train set")
    p.add_argument("--val-samples", type=int, default=64, help="synthetic val set")
    p.add_argument("--sets", type=int, default=20000, help="gauge sets timed on their own")
    p.add_argument("overrides", nargs="*", help="KEY=VALUE overrides of the tiny recipe")
    args = p.parse_args(argv)
    extra = ["GENERAL.log_step=10", "GENERAL.checkpoint_step=40", "AIM.enabled=false"]
    extra += ["DATA.val.max_samples=64", "DATA.train_eval_samples=32", *args.overrides]
    if args.toy:
        args.steps, args.repeats, args.train_samples, args.val_samples = 8, 1, 64, 32
        args.sets = 100
        extra = [*TOY_OVERRIDES, "GENERAL.log_step=2", "GENERAL.checkpoint_step=4"]
        extra += ["AIM.enabled=false", *args.overrides]
    if min(args.steps, args.repeats, args.threads) < 1:
        raise UserError("--steps, --repeats and --threads must be >= 1")
    machine = machine_info()
    torch.set_num_threads(args.threads)
    started_ray = not ray.is_initialized()
    if started_ray:
        ray.init(address="local", num_cpus=1, include_dashboard=False, log_to_driver=False)
    runs: dict[str, list[dict[str, float | None]]] = {"off": [], "on": []}
    try:
        with tempfile.TemporaryDirectory(prefix="bench-telemetry-") as tmp_name:
            tmp = Path(tmp_name)
            data = synthetic_overrides(args.data, tmp, args.train_samples, args.val_samples)
            cfg = load_config(
                "stage1-tiny",
                [*data, *extra, f"GENERAL.total_step={args.steps}", f"GENERAL.output_dir={tmp}"],
            )
            for r in range(args.repeats):
                for arm in ("off", "on") if r % 2 == 0 else ("on", "off"):
                    runs[arm].append(run_once(cfg, tmp / f"{arm}{r}", arm == "on"))
            set_s = gauge_set_s(args.sets)
    finally:
        if started_ray:
            ray.shutdown()

    def med(arm: str, key: str) -> float | None:
        have = [x[key] for x in runs[arm] if x[key] is not None]
        return statistics.median(have) if have else None

    result = {
        "steps": args.steps,
        "repeats": args.repeats,
        "log_step": cfg.GENERAL.log_step,
        "val_every": val_step(cfg),
        "runs": runs,
        **{f"{arm}_{k}": med(arm, k) for arm in runs for k in ("step_s", "wall_s")},
    }
    result["step_ratio"] = ratio(result["on_step_s"], result["off_step_s"])
    result["wall_ratio"] = ratio(result["on_wall_s"], result["off_wall_s"])
    # one step's sets: the log step's 5 gauges every log_step steps, and 10 gauges each second
    step_s = result["off_step_s"]
    per_step = 5 / cfg.GENERAL.log_step + (10 * step_s if step_s else 0.0)
    result.update(gauge_set_us=1e6 * set_s, sets_per_step=per_step)
    result["implied_share"] = per_step * set_s / step_s if step_s else None
    print(
        format_table(
            ["export", *[f"step_ms_{i}" for i in range(args.repeats)], "median_step_ms", "wall_s"],
            [
                [
                    arm,
                    *[None if x["step_s"] is None else 1000 * x["step_s"] for x in runs[arm]],
                    None if med(arm, "step_s") is None else 1000 * med(arm, "step_s"),
                    med(arm, "wall_s"),
                ]
                for arm in ("off", "on")
            ],
        )
    )
    print(
        f"\nstep time with the export on / off: {result['step_ratio'] or float('nan'):.4f} "
        f"(wall {result['wall_ratio'] or float('nan'):.4f}), medians of {args.repeats} runs "
        f"of {args.steps} steps, {args.threads} torch thread(s); one gauge set "
        f"{result['gauge_set_us']:.1f} us, {per_step:.2f} sets a step: "
        f"{100 * (result['implied_share'] or float('nan')):.4f}% of a step"
    )
    write_results(args.out, NAME, args, machine, {"setup": {"overrides": extra}, **result})
    return 0


if __name__ == "__main__":
    run_cli(main)
