"""Tune overhead: one trial inside Ray Tune vs the same config via ``python -m handpose.train``.

    python -m benchmarks.tune_overhead [--steps S] [--repeats R] [--toy] [--out JSON]
                                       [--data DIR] [KEY=VALUE ...]

Each repeat runs, in alternating order:

- ``bare``: ``python -m handpose.train --config-name stage1-tiny`` in a subprocess, with
  ``OMP_NUM_THREADS`` = the trial's CPUs (the trainable sets torch's threads to them);
- ``tune``: the sweep CLI's code path (``sweeps.dropout_warmup.main --preset cpu
  --num-samples 1``) on a local Ray started for it as the sweep starts one (with the
  dashboard; Ray's own start-up is timed apart and not counted in the trial's).

Both train the preset's first point (the existing recipe) with the same overrides, at the
tiny recipe's validation interval. From each run's ``log.txt`` and file times: the
steady-state training samples/s (console windows that hold no validation), the extra time
of a window that holds a validation (validation + checkpoint, + the Tune report), start-up
(launch to the run's ``config.yaml``), loop, tail (last validation to the end), wall, and
the CPU seconds of the trainer, of this (driver) process and of Ray's own processes.
Ratios are tune / bare (medians over the repeats). Default: 300 steps, 2 repeats.

Then the per-trial start-up inside a sweep: ``--startup-trials`` short trials of the same
trainable one after another, each in a fresh Ray actor (Tune's default, as the sweep runs
them) and then reusing one actor (``reuse_actors=True``): the gap between a trial's last
validation and the next trial's start of ``train`` (its ``config.yaml``).
Default: 4 trials x 20 steps per arm.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from benchmarks.common import (
    TOY_OVERRIDES,
    base_parser,
    format_table,
    machine_info,
    median,
    ratio,
    synthetic_overrides,
    write_results,
    write_spec,
)
from benchmarks.tune_overhead.measure import timeline
from benchmarks.tune_overhead.runs import PRESET, run_bare, run_tune, startup_gaps
from handpose.config import val_step
from handpose.errors import UserError
from sweeps.run.spec import SPEC_PATH, load_spec, trial_overrides

NAME = "tune_overhead"
TARGET = 0.95  # Tune's training throughput at least 0.95 of the bare run's


def main(argv: list[str] | None = None) -> int:
    p = base_parser(NAME, __doc__, prog="python -m benchmarks.tune_overhead")
    p.add_argument("--steps", type=int, default=300, help="training steps per run")
    p.add_argument("--repeats", type=int, default=2, help="bare/tune pairs")
    p.add_argument("--log-step", type=int, default=25, help="console window, steps")
    p.add_argument(
        "--startup-trials",
        type=int,
        default=4,
        help="sequential trials per arm of the start-up part (0: skip it)",
    )
    p.add_argument("--startup-steps", type=int, default=20, help="steps of those trials")
    p.add_argument("--train-samples", type=int, default=2000, help="synthetic train set")
    p.add_argument("--val-samples", type=int, default=256, help="synthetic val set")
    p.add_argument("overrides", nargs="*", help="KEY=VALUE overrides of both runs' config")
    args = p.parse_args(argv)
    extra = list(args.overrides)
    if args.toy:
        args.steps, args.repeats, args.log_step = 8, 1, 2
        args.startup_trials, args.startup_steps = 2, 4
        args.train_samples, args.val_samples = 64, 32
        extra = [*TOY_OVERRIDES, "GENERAL.checkpoint_step=4", *extra]
    if min(args.steps, args.repeats, args.log_step, args.startup_steps) < 1 or (
        args.startup_trials == 1 or args.startup_trials < 0
    ):
        raise UserError(
            "--steps, --repeats, --log-step, --startup-steps must be >= 1, "
            "--startup-trials 0 or >= 2"
        )
    machine = machine_info()
    runs = []
    with tempfile.TemporaryDirectory(prefix="bench-tune-") as tmp_name:
        tmp = Path(tmp_name)
        # one trial (ASHA never stops it) or no scheduler: the grace period only has to fit
        full_spec, full_cfg = load_spec(PRESET, SPEC_PATH)
        warmup = round(
            full_cfg.GENERAL.dropout_warmup_step * args.steps / full_cfg.GENERAL.total_step
        )  # the baseline's warmup, scaled
        overrides = (
            synthetic_overrides(args.data, tmp, args.train_samples, args.val_samples)
            + extra
            + [
                f"GENERAL.total_step={args.steps}",
                f"GENERAL.log_step={args.log_step}",
                f"GENERAL.dropout_warmup_step={warmup}",
            ]
        )
        spec_path = write_spec(
            tmp / "spec.yaml", PRESET, min(full_spec.grace_period, args.steps, args.startup_steps)
        )
        spec, cfg = load_spec(PRESET, spec_path, extra_overrides=tuple(overrides))
        point = trial_overrides(spec.points_to_evaluate[0]) if spec.points_to_evaluate else []
        threads = int(spec.resources.cpu)
        sample_s = 0.1 if args.toy else 1.0  # a toy run can end between 1 s samples
        for i in range(args.repeats):
            kinds = ("bare", "tune") if i % 2 == 0 else ("tune", "bare")
            for kind in kinds:
                run = (
                    run_bare(tmp / f"bare-{i}", overrides + point, threads, sample_s)
                    if kind == "bare"
                    else run_tune(tmp / f"tune-{i}", spec_path, overrides, sample_s)
                )
                run.update(
                    repeat=i,
                    threads=threads,
                    **timeline(
                        run["run_dir"],
                        run.pop("launched"),
                        run.pop("wall"),
                        args.log_step,
                        val_step(cfg),
                        cfg.TRAIN.sample_per_device,
                    ),
                )
                run["run_dir"] = str(run["run_dir"].relative_to(tmp))
                runs.append(run)
        startup = (
            startup_gaps(spec_path, overrides, tmp, args.startup_trials, args.startup_steps)
            if args.startup_trials
            else []
        )
    same = all(r["config"] in (None, point) for r in runs)

    def med(kind: str, key: str) -> float | None:
        return median([r[key] for r in runs if r["kind"] == kind])

    keys = (
        "steady_samples_per_s",
        "startup_s",
        "first_window_s",
        "after_val_extra_s",
        "loop_s",
        "tail_s",
        "wall_s",
        "cpu_trainer_s",
        "cpu_driver_s",
        "cpu_ray_s",
    )
    medians = {kind: {k: med(kind, k) for k in keys} for kind in ("bare", "tune")}
    pairs = [
        ratio(t["steady_samples_per_s"], b["steady_samples_per_s"])
        for b, t in zip(
            [r for r in runs if r["kind"] == "bare"],
            [r for r in runs if r["kind"] == "tune"],
            strict=True,
        )
    ]
    throughput = ratio(
        medians["tune"]["steady_samples_per_s"], medians["bare"]["steady_samples_per_s"]
    )
    totals = {
        "throughput_ratio": throughput,
        "throughput_ratio_per_repeat": pairs,
        "wall_ratio": ratio(medians["tune"]["wall_s"], medians["bare"]["wall_s"]),
        "startup_extra_s": _diff(medians["tune"]["startup_s"], medians["bare"]["startup_s"]),
        "per_validation_extra_s": _diff(
            medians["tune"]["after_val_extra_s"], medians["bare"]["after_val_extra_s"]
        ),
        "ray_init_s": median([r["ray_init_s"] for r in runs]),
        "tune_side_cores": median(
            [
                (r["cpu_driver_s"] + r["cpu_ray_s"]) / r["wall_s"]
                for r in runs
                if r["kind"] == "tune"
            ]
        ),
        "same_config": same,
        "target_throughput_at_least_0.95": throughput is not None and throughput >= TARGET,
    }
    print(
        "\n"
        + format_table(
            [
                "repeat",
                "run",
                "threads",
                "startup_s",
                "first_win_s",
                "samples/s",
                "val_extra_s",
                "loop_s",
                "tail_s",
                "wall_s",
                "ray_init_s",
                "cpu_trainer_s",
                "cpu_driver_s",
                "cpu_ray_s",
            ],
            [
                [
                    r["repeat"],
                    r["kind"],
                    r["threads"],
                    r["startup_s"],
                    r["first_window_s"],
                    r["steady_samples_per_s"],
                    r["after_val_extra_s"],
                    r["loop_s"],
                    r["tail_s"],
                    r["wall_s"],
                    r["ray_init_s"],
                    r["cpu_trainer_s"],
                    r["cpu_driver_s"],
                    r["cpu_ray_s"],
                ]
                for r in runs
            ],
        )
    )
    t = totals
    print(
        f"\ntune / bare (medians): throughput {_fmt(t['throughput_ratio'])} (per repeat "
        f"{', '.join(_fmt(x) for x in pairs)}), wall {_fmt(t['wall_ratio'])}; "
        f"start-up +{_fmt(t['startup_extra_s'])} s per trial, "
        f"+{_fmt(t['per_validation_extra_s'])} s per validation; "
        f"Ray start {_fmt(t['ray_init_s'])} s once per sweep; Tune's driver + Ray's "
        f"processes used {_fmt(t['tune_side_cores'])} cores during the trial"
    )
    if startup:
        print(
            "\n"
            + format_table(
                ["reuse_actors", "trials", "steps", "errors", "median_gap_s", "gaps_s", "wall_s"],
                [
                    [
                        r["reuse_actors"],
                        r["trials"],
                        r["steps"],
                        r["errors"],
                        r["median_gap_s"],
                        " ".join(f"{g:.2f}" for g in r["gaps_s"]),
                        r["wall_s"],
                    ]
                    for r in startup
                ],
            )
        )
        print("(gap: a trial's last validation -> the next trial's start of train())")
    print(
        f"target: Tune throughput >= {TARGET} of bare: {_fmt(throughput)} -> "
        f"{'met' if t['target_throughput_at_least_0.95'] else 'NOT met'}"
        + ("" if same else "  (WARNING: the trial trained another config than bare)")
    )
    write_results(
        args.out,
        NAME,
        args,
        machine,
        {
            "setup": {
                "preset": PRESET,
                "trial_config": point,
                "threads": threads,
                "val_every": val_step(cfg),
                "batch": cfg.TRAIN.sample_per_device,
                "overrides": [o for o in overrides if tmp_name not in o],
            },
            "runs": runs,
            "medians": medians,
            "totals": totals,
            "startup_gaps": startup,
        },
    )
    return 1 if any(r["exit_code"] for r in runs) else 0


def _diff(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"
