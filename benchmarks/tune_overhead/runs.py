"""The runs the Tune-overhead benchmark (``cli``) compares: one trial as a bare
``python -m handpose.train`` subprocess, the same trial through the sweep CLI on Ray Tune,
and short trials one after another in fresh and in reused Ray actors."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.common import fit_trials, median, run_checked
from benchmarks.tune_overhead.measure import CpuSampler
from sweeps.run.spec import load_spec, trial_overrides
from sweeps.run.tuning import connect_ray

PRESET = "cpu"


def run_bare(out: Path, overrides: list[str], threads: int, sample_s: float) -> dict[str, Any]:
    """``python -m handpose.train`` with the trial's thread count; -> its numbers (CPU
    sampled every ``sample_s``)."""
    cmd = [
        sys.executable,
        "-m",
        "handpose.train",
        "--config-name",
        "stage1-tiny",
        *overrides,
        f"GENERAL.output_dir={out}",
        "GENERAL.run_name=run",
        f"AIM.server_url={out}",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    launched = time.time()
    with CpuSampler(sample_s) as cpu:
        wall = run_checked(cmd, env)
    return {
        "kind": "bare",
        "run_dir": out / "run",
        "launched": launched,
        "wall": wall,
        "ray_init_s": None,
        "exit_code": 0,
        "config": None,
        **_cpu(cpu),
    }


def run_tune(
    storage: Path, spec_path: Path, overrides: list[str], sample_s: float
) -> dict[str, Any]:
    """The sweep CLI with one trial on a Ray started here (as the sweep starts one) unless
    this process has one; -> its numbers (CPU sampled every ``sample_s``)."""
    import ray

    from sweeps.dropout_warmup import main as sweep_main

    t0 = time.perf_counter()
    started = connect_ray(dashboard=True)
    ray_init = time.perf_counter() - t0 if started else None
    try:
        launched = time.time()
        t0 = time.perf_counter()
        with CpuSampler(sample_s) as cpu:
            code = sweep_main(
                [
                    "--preset",
                    PRESET,
                    "--spec",
                    str(spec_path),
                    "--num-samples",
                    "1",
                    "--storage",
                    str(storage),
                    "--name",
                    "one",
                    *overrides,
                ]
            )
        wall = time.perf_counter() - t0
    finally:
        if started:
            ray.shutdown()
    summary = json.loads((storage / "one" / "summary.json").read_text())
    trial = summary["trials"][0]
    return {
        "kind": "tune",
        "run_dir": Path(trial["run_dir"]),
        "launched": launched,
        "wall": wall,
        "ray_init_s": ray_init,
        "exit_code": code,
        "config": trial_overrides(trial["overrides"]),
        **_cpu(cpu),
    }


def startup_gaps(
    spec_path: Path, overrides: list[str], tmp: Path, trials: int, steps: int
) -> list[dict[str, Any]]:
    """``trials`` trials of ``steps`` steps one after another, in fresh actors and then in a
    reused one; -> per arm the gaps (s) from a trial's last validation to the next trial's
    start of ``train``, and the wall time."""
    import ray
    from omegaconf import OmegaConf

    spec, cfg = load_spec(
        PRESET,
        spec_path,
        extra_overrides=(
            *overrides,
            f"GENERAL.total_step={steps}",
            f"GENERAL.checkpoint_step={steps}",
        ),
    )
    base = OmegaConf.to_container(cfg, resolve=True)
    rows = []
    started = connect_ray(dashboard=True)
    try:
        for reuse in (False, True):
            t0 = time.perf_counter()
            results = fit_trials(
                spec,
                base,
                tmp / f"startup-reuse-{reuse}" / "sweep",
                trials,
                reuse_actors=reuse,
                max_concurrent=1,
            )
            wall = time.perf_counter() - t0
            dirs = [Path(r.metrics["run_dir"]) for r in results if r.metrics]
            starts = sorted((d / "config.yaml").stat().st_mtime for d in dirs)
            ends = sorted((d / "metrics.jsonl").stat().st_mtime for d in dirs)
            gaps = [b - a for a, b in zip(ends[:-1], starts[1:], strict=True)]
            rows.append(
                {
                    "reuse_actors": reuse,
                    "trials": trials,
                    "steps": steps,
                    "errors": sum(r.error is not None for r in results),
                    "gaps_s": gaps,
                    "median_gap_s": median(gaps),
                    "wall_s": wall,
                }
            )
    finally:
        if started:
            ray.shutdown()
    return rows


def _cpu(sampler: CpuSampler) -> dict[str, float]:
    return {f"cpu_{role}_s": seconds for role, seconds in sampler.totals().items()}
