"""Validation cost: the share of a training run's wall time spent validating, at the default
validation frequency of the tiny recipe.

    python benchmarks/validation_cost.py [--steps S] [--threads T] [--toy] [--out JSON]
                                         [--data DIR] [KEY=VALUE ...]

Trains the tiny recipe in this process with ``handpose.train.train`` (torch threads = a
sweep trial's CPUs, 1) and times the calls ``train`` makes at every validation: the
validation pass (``evaluate_stream`` on the val stream, ``DATA.val.max_samples``), the pass
over the fixed train subset behind ``gap_mpjpe`` (``evaluate_stream`` on the
``train_eval_stream``, ``DATA.train_eval_samples``) and the checkpoint
(``save_checkpoint``); the rest of the wall time is training. Default: 400 steps with the
recipe's validation every ``GENERAL.checkpoint_step`` = 100 steps (4 validations).
"""

from __future__ import annotations

import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from unittest import mock

import torch

import handpose.train
from benchmarks.common import (
    TOY_OVERRIDES,
    base_parser,
    format_table,
    machine_info,
    synthetic_overrides,
    write_results,
)
from handpose.config import load_config, val_step
from handpose.errors import UserError, run_cli

NAME = "validation_cost"
PARTS = ("validation", "train_subset", "checkpoint")


@contextmanager
def timed_validation() -> Iterator[dict[str, list[float]]]:
    """Time, inside ``handpose.train``, every validation pass, train-subset pass and
    checkpoint save; yields ``{part: [seconds per call]}``."""
    seconds: dict[str, list[float]] = defaultdict(list)
    gap_streams: set[int] = set()
    real_stream, real_eval = handpose.train.train_eval_stream, handpose.train.evaluate_stream
    real_save = handpose.train.save_checkpoint

    def timer(part: Callable[..., str], fn: Callable[..., Any]) -> Callable[..., Any]:
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                seconds[part(*args)].append(time.perf_counter() - t0)

        return wrapped

    def remember_gap_stream(cfg: Any) -> Any:
        stream = real_stream(cfg)
        gap_streams.add(id(stream))
        return stream

    def eval_part(model: Any, stream: Any, *_: Any) -> str:
        return "train_subset" if id(stream) in gap_streams else "validation"

    with (
        mock.patch.object(handpose.train, "train_eval_stream", remember_gap_stream),
        mock.patch.object(handpose.train, "evaluate_stream", timer(eval_part, real_eval)),
        mock.patch.object(
            handpose.train, "save_checkpoint", timer(lambda *_: "checkpoint", real_save)
        ),
    ):
        yield seconds


def main(argv: list[str] | None = None) -> int:
    p = base_parser(NAME, __doc__)
    p.add_argument("--steps", type=int, default=400, help="training steps")
    p.add_argument("--threads", type=int, default=1, help="torch threads (a trial's CPUs)")
    p.add_argument("--train-samples", type=int, default=2000, help="synthetic train set")
    p.add_argument("--val-samples", type=int, default=256, help="synthetic val set")
    p.add_argument("overrides", nargs="*", help="KEY=VALUE overrides of the tiny recipe")
    args = p.parse_args(argv)
    extra = list(args.overrides)
    if args.toy:
        args.steps, args.train_samples, args.val_samples = 8, 64, 32
        extra = [*TOY_OVERRIDES, "GENERAL.checkpoint_step=4", "GENERAL.log_step=4", *extra]
    if min(args.steps, args.threads) < 1:
        raise UserError("--steps and --threads must be >= 1")
    machine = machine_info()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="bench-val-") as tmp_name:
        tmp = Path(tmp_name)
        data = synthetic_overrides(args.data, tmp, args.train_samples, args.val_samples)
        cfg = load_config(
            "stage1-tiny",
            [
                *data,
                *extra,
                f"GENERAL.total_step={args.steps}",
                f"GENERAL.output_dir={tmp}",
                "GENERAL.run_name=run",
                f"AIM.server_url={tmp}",
            ],
        )
        with timed_validation() as seconds:
            t0 = time.perf_counter()
            handpose.train.train(cfg)
            wall = time.perf_counter() - t0
    count = len(seconds["validation"])  # >= 1: train() validates at its last step
    totals = {part: sum(seconds[part]) for part in PARTS}
    training = wall - sum(totals.values())
    step_s = training / args.steps
    per_val = sum(totals.values()) / count
    result = {
        "steps": args.steps,
        "val_every": val_step(cfg),
        "validations": count,
        "val_samples": cfg.DATA.val.max_samples,
        "train_subset_samples": cfg.DATA.train_eval_samples,
        "wall_s": wall,
        "training_s": training,
        **{f"{part}_s": totals[part] for part in PARTS},
        **{f"{part}_share": totals[part] / wall for part in PARTS},
        "validation_share": (totals["validation"] + totals["train_subset"]) / wall,
        "validation_and_checkpoint_share": sum(totals.values()) / wall,
        "per_validation_s": per_val,
        "per_validation_in_steps": per_val / step_s,
    }
    print(
        format_table(
            ["part", "seconds", "per_call_s", "share_of_wall"],
            [
                *[
                    [
                        part,
                        totals[part],
                        totals[part] / max(len(seconds[part]), 1),
                        totals[part] / wall,
                    ]
                    for part in PARTS
                ],
                ["rest (training, set-up)", training, step_s, training / wall],
                ["wall", wall, None, 1.0],
            ],
        )
    )
    print(
        f"\n{count} validations every {val_step(cfg)} steps over {args.steps} steps "
        f"({cfg.DATA.val.max_samples} val + {cfg.DATA.train_eval_samples} train-subset "
        f"samples each), {args.threads} torch thread(s): validating takes "
        f"{100 * result['validation_share']:.1f}% of the wall time, "
        f"{100 * result['validation_and_checkpoint_share']:.1f}% with the checkpoints; one "
        f"validation + checkpoint costs as much as {result['per_validation_in_steps']:.1f} "
        "training steps"
    )
    write_results(
        args.out,
        NAME,
        args,
        machine,
        {"setup": {"overrides": extra, "batch": cfg.TRAIN.sample_per_device}, **result},
    )
    return 0


if __name__ == "__main__":
    run_cli(main)
