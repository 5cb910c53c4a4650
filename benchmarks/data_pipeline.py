"""Data pipeline: loader-only samples/s vs the model's training samples/s on the tiny recipe,
per DataLoader worker count.

    python benchmarks/data_pipeline.py [--workers 0,1,2] [--batches N] [--repeats R]
                                       [--threads T] [--toy] [--out JSON] [--data DIR]
                                       [KEY=VALUE ...]

Each repeat measures, side by side: ``model``, the training step on one fixed batch
(forward, losses, backward, gradient clipping, AdamW; no loading); then for each worker
count (``TRAIN.num_workers``) ``loader``, the train stream alone (read + decode + augment +
batch: ``handpose.data.build_train_stream``), and ``loop``, the two together (next batch,
then the step, as the training loop runs them). The first batch of every stream (worker
start-up, filling the shuffle buffer) is not timed. Torch uses ``--threads`` threads, by
default 1 as in a sweep trial (preset ``cpu``: 1 CPU per trial). Ratios: loader / model
(target: at least 3) and loop / model (what loading costs the training loop). Default:
30 batches per measurement, workers 0, 1, 2, 2 repeats.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from benchmarks.common import (
    TOY_OVERRIDES,
    base_parser,
    format_table,
    machine_info,
    make_step,
    median,
    ratio,
    synthetic_overrides,
    write_results,
)
from handpose.config import load_config
from handpose.data import build_train_stream
from handpose.errors import UserError, run_cli

NAME = "data_pipeline"
TARGET = 3.0  # the loader at least 3x faster than the model consumes


def samples_per_s(fn: Callable[[], Any], batches: int, batch_size: int) -> float:
    """Samples/s of ``batches`` calls of ``fn``, each handling one batch."""
    t0 = time.perf_counter()
    for _ in range(batches):
        fn()
    return batches * batch_size / (time.perf_counter() - t0)


def measure_model(cfg: DictConfig, batches: int) -> float:
    """The step alone, on one batch loaded beforehand."""
    batch = next(build_train_stream(cfg))
    step = make_step(cfg, torch.device("cpu"))
    step(batch)  # warm-up
    return samples_per_s(lambda: step(batch), batches, cfg.TRAIN.sample_per_device)


def measure_loader(cfg: DictConfig, batches: int) -> float:
    """The train stream alone."""
    stream = build_train_stream(cfg)
    next(stream)  # worker start-up, shuffle buffer
    return samples_per_s(lambda: next(stream), batches, cfg.TRAIN.sample_per_device)


def measure_loop(cfg: DictConfig, batches: int) -> float:
    """Next batch then the step, as in the training loop."""
    stream = build_train_stream(cfg)
    step = make_step(cfg, torch.device("cpu"))
    step(next(stream))  # warm-up
    return samples_per_s(lambda: step(next(stream)), batches, cfg.TRAIN.sample_per_device)


def main(argv: list[str] | None = None) -> int:
    p = base_parser(NAME, __doc__)
    p.add_argument("--workers", default="0,1,2", help="TRAIN.num_workers values, comma-separated")
    p.add_argument("--batches", type=int, default=30, help="timed batches per measurement")
    p.add_argument("--repeats", type=int, default=2, help="rounds of all measurements")
    p.add_argument("--threads", type=int, default=1, help="torch threads (a trial's CPUs)")
    p.add_argument("--train-samples", type=int, default=2000, help="synthetic train set")
    p.add_argument("--val-samples", type=int, default=32, help="synthetic val set")
    p.add_argument("overrides", nargs="*", help="KEY=VALUE overrides of the tiny recipe")
    args = p.parse_args(argv)
    extra = list(args.overrides)
    if args.toy:
        args.workers, args.batches, args.repeats = "0,1", 3, 1
        args.train_samples, args.val_samples = 64, 8
        extra = [*TOY_OVERRIDES, *extra]
    try:
        workers = [int(w) for w in args.workers.split(",")]
    except ValueError:
        raise UserError(f"--workers {args.workers}: want comma-separated integers") from None
    if min(args.batches, args.repeats, args.threads) < 1 or min(workers) < 0:
        raise UserError("--batches, --repeats, --threads must be >= 1, --workers >= 0")
    machine = machine_info()
    torch.set_num_threads(args.threads)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-data-") as tmp_name:
        data = synthetic_overrides(args.data, Path(tmp_name), args.train_samples, args.val_samples)

        def config(w: int) -> DictConfig:
            return load_config("stage1-tiny", [*data, *extra, f"TRAIN.num_workers={w}"])

        for i in range(args.repeats):
            model = measure_model(config(0), args.batches)
            for w in workers:
                cfg = config(w)
                rows.append(
                    {
                        "repeat": i,
                        "workers": w,
                        "model": model,
                        "loader": measure_loader(cfg, args.batches),
                        "loop": measure_loop(cfg, args.batches),
                    }
                )
        batch = config(0).TRAIN.sample_per_device
    per_workers = []
    for w in workers:
        mine = [r for r in rows if r["workers"] == w]
        loader, model, loop = (median([r[k] for r in mine]) for k in ("loader", "model", "loop"))
        per_workers.append(
            {
                "workers": w,
                "loader_samples_per_s": loader,
                "model_samples_per_s": model,
                "loop_samples_per_s": loop,
                "loader_over_model": ratio(loader, model),
                "loop_over_model": ratio(loop, model),
            }
        )
    met = all(r["loader_over_model"] >= TARGET for r in per_workers)
    print(
        format_table(
            [
                "workers",
                "loader_samples/s",
                "model_samples/s",
                "loop_samples/s",
                "loader/model",
                "loop/model",
            ],
            [
                [
                    r["workers"],
                    r["loader_samples_per_s"],
                    r["model_samples_per_s"],
                    r["loop_samples_per_s"],
                    r["loader_over_model"],
                    r["loop_over_model"],
                ]
                for r in per_workers
            ],
        )
    )
    print(
        f"(medians of {args.repeats} repeats x {args.batches} batches of {batch}, "
        f"{args.threads} torch thread(s))"
    )
    print(
        f"target: loader >= {TARGET:g}x the model's samples/s at every worker count -> "
        f"{'met' if met else 'NOT met'}"
    )
    write_results(
        args.out,
        NAME,
        args,
        machine,
        {
            "setup": {"batch": batch, "threads": args.threads, "overrides": extra},
            "measurements": rows,
            "per_workers": per_workers,
            "target_loader_at_least_3x": met,
        },
    )
    return 0


if __name__ == "__main__":
    run_cli(main)
