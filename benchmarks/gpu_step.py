"""GPU step: stage1-dino_large step time, samples/s and MFU with bf16; and the throughput of
1 vs 4 tiny trials sharing one GPU with fractional GPUs.

    python benchmarks/gpu_step.py [--steps N] [--warmup W] [--peak-tflops P]
                                  [--share-steps S] [--no-share] [--toy] [--out JSON]
                                  [--data DIR]

Part 1, the step: ``stage1-dino_large`` (DINOv2 ViT-L/14 at 224 px + the 6-layer hand
decoder, ``TRAIN.sample_per_device`` = 32, ``TRAIN.mixed_precision`` = bf16) on the GPU,
randomly initialised, trained on one real batch of synthetic shards loaded beforehand:
the full training step (forward under bf16 autocast, attention through PyTorch's SDPA,
losses, backward, gradient clipping, AdamW), timed over ``--steps`` steps after
``--warmup`` with CUDA synchronisation. The FLOPs of one step (forward + backward) are
counted with ``torch.utils.flop_counter.FlopCounterMode``; MFU = FLOPs per step / step time
/ peak (default 989 TFLOP/s: H100 SXM, bf16 dense).

Part 2, sharing: tiny-recipe trials of the sweep trainable under Ray Tune, first 1 trial
with a whole GPU, then 4 concurrent trials with 0.25 GPU each (the same CPUs per trial in
both); the aggregate training samples/s (sum of the trials' steady console rates, and total
samples / wall time) and the ratio 4 / 1.

Needs a CUDA device and refuses without one. ``--toy`` runs part 1 on the CPU with a tiny
model (bf16 autocast on the CPU, FLOP counting, a few timed steps; no MFU, no part 2) to
check the code path.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.common import (
    TOY_OVERRIDES,
    base_parser,
    fit_trials,
    format_table,
    machine_info,
    make_step,
    ratio,
    synthetic_overrides,
    train_windows,
    window_stats,
    write_results,
    write_spec,
)
from handpose.config import load_config, val_step
from handpose.data import build_train_stream
from handpose.errors import UserError, run_cli
from handpose.train import to_device
from sweeps.run.spec import load_spec
from sweeps.run.tuning import connect_ray

NAME = "gpu_step"
H100_BF16_DENSE_TFLOPS = 989.0
SHARE_PRESET = "cpu"  # the tiny recipe's sweep preset
SHARING = (1, 4)  # trials sharing one GPU


def step_benchmark(
    cfg: DictConfig, device: torch.device, steps: int, warmup: int, peak_tflops: float | None
) -> dict[str, Any]:
    """Step time, samples/s, FLOPs per step and (with a peak) MFU of ``cfg``'s training step."""
    torch.manual_seed(cfg.GENERAL.seed)
    batch = to_device(next(build_train_stream(cfg)), device)
    step = make_step(cfg, device)
    with FlopCounterMode(display=False) as counter:
        step(batch)
    flops = counter.get_total_flops()
    for _ in range(warmup):
        step(batch)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    sync()
    t0 = time.perf_counter()
    for _ in range(steps):
        step(batch)
    sync()
    step_s = (time.perf_counter() - t0) / steps
    achieved = flops / step_s
    return {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "batch": cfg.TRAIN.sample_per_device,
        "img_size": cfg.MODEL.img_size,
        "mixed_precision": cfg.TRAIN.mixed_precision,
        "steps": steps,
        "warmup": warmup,
        "step_s": step_s,
        "samples_per_s": cfg.TRAIN.sample_per_device / step_s,
        "flops_per_step": flops,
        "achieved_tflops": achieved / 1e12,
        "peak_tflops": peak_tflops,
        "mfu": achieved / (peak_tflops * 1e12) if peak_tflops else None,
        "peak_memory_gb": (
            torch.cuda.max_memory_allocated(device) / 1e9 if device.type == "cuda" else None
        ),
        "flash_sdp_enabled": torch.backends.cuda.flash_sdp_enabled(),
    }


def sharing_benchmark(data: list[str], tmp: Path, steps: int) -> list[dict[str, Any]]:
    """1 trial with a whole GPU, then 4 with 0.25 GPU each (same CPUs per trial), through
    Ray Tune with the sweep trainable; -> one row per arm."""
    import ray

    cpus = max(1, len(os.sched_getaffinity(0)) // max(SHARING))
    grace = min(load_spec(SHARE_PRESET)[0].grace_period, steps)
    spec_path = write_spec(tmp / "spec.yaml", SHARE_PRESET, grace)
    spec, base_cfg = load_spec(
        SHARE_PRESET,
        spec_path,
        extra_overrides=(*data, f"GENERAL.total_step={steps}", f"AIM.server_url={tmp / 'aim'}"),
    )
    base = OmegaConf.to_container(base_cfg, resolve=True)
    log_step, every = base_cfg.GENERAL.log_step, val_step(base_cfg)
    batch = base_cfg.TRAIN.sample_per_device
    rows = []
    started = connect_ray(dashboard=False)
    try:
        for k in SHARING:
            shared = dataclasses.replace(spec, resources={"cpu": cpus, "gpu": 1 / k})
            t0 = time.perf_counter()
            results = fit_trials(shared, base, tmp / f"share-{k}", k)
            wall = time.perf_counter() - t0
            rates = [
                window_stats(
                    train_windows(Path(r.metrics["run_dir"]) / "log.txt"), log_step, every, batch
                )["steady_samples_per_s"]
                for r in results
                if r.metrics and r.metrics.get("run_dir")
            ]
            done = sum(int((r.metrics or {}).get("step", 0)) for r in results)
            rows.append(
                {
                    "trials": k,
                    "gpu_per_trial": 1 / k,
                    "cpu_per_trial": cpus,
                    "errors": sum(r.error is not None for r in results),
                    "sum_steady_samples_per_s": sum(x for x in rates if x is not None),
                    "samples_per_s_over_wall": done * batch / wall,
                    "wall_s": wall,
                }
            )
    finally:
        if started:
            ray.shutdown()
    return rows


def main(argv: list[str] | None = None) -> int:
    p = base_parser(NAME, __doc__)
    p.add_argument("--steps", type=int, default=50, help="timed steps")
    p.add_argument("--warmup", type=int, default=10, help="untimed steps before")
    p.add_argument(
        "--peak-tflops",
        type=float,
        default=H100_BF16_DENSE_TFLOPS,
        help="the GPU's dense bf16 peak, TFLOP/s",
    )
    p.add_argument(
        "--share-steps",
        type=int,
        default=400,
        help="training steps of each tiny trial in the sharing part",
    )
    p.add_argument("--no-share", action="store_true", help="skip the sharing part")
    args = p.parse_args(argv)
    cuda = torch.cuda.is_available()
    if not cuda and not args.toy:
        raise UserError(
            "gpu_step needs a CUDA device and none is visible "
            "(torch.cuda.is_available() is False): run it on a GPU machine, "
            "or with --toy to check the code path on the CPU"
        )
    if args.toy:
        args.steps, args.warmup, args.no_share = 2, 1, True
    if min(args.steps, args.share_steps) < 1 or args.warmup < 0:
        raise UserError("--steps and --share-steps must be >= 1, --warmup >= 0")
    machine = machine_info()
    device = torch.device("cuda" if cuda and not args.toy else "cpu")
    with tempfile.TemporaryDirectory(prefix="bench-gpu-") as tmp_name:
        tmp = Path(tmp_name)
        data = synthetic_overrides(args.data, tmp, 64 if args.toy else 2000, 8 if args.toy else 256)
        recipe, changes = (
            ("stage1-tiny", [*TOY_OVERRIDES, "TRAIN.mixed_precision=bf16"])
            if args.toy
            else ("stage1-dino_large", [])
        )
        cfg = load_config(recipe, [*data, *changes, "TRAIN.num_workers=0"])
        step = step_benchmark(
            cfg,
            device,
            args.steps,
            args.warmup,
            args.peak_tflops if device.type == "cuda" else None,
        )
        sharing = [] if args.no_share else sharing_benchmark(data, tmp, args.share_steps)
    print(
        format_table(
            ["config", "device", "batch", "step_ms", "samples/s", "GFLOP/step", "TFLOP/s", "MFU"],
            [
                [
                    recipe,
                    step["device"],
                    step["batch"],
                    1000 * step["step_s"],
                    step["samples_per_s"],
                    step["flops_per_step"] / 1e9,
                    step["achieved_tflops"],
                    step["mfu"],
                ]
            ],
        )
    )
    if step["mfu"] is None:
        print("MFU: not computed (no GPU: --toy only checks the code path)")
    share_ratio = None
    if sharing:
        print(
            "\n"
            + format_table(
                [
                    "trials",
                    "gpu/trial",
                    "cpu/trial",
                    "errors",
                    "sum samples/s",
                    "samples/s (wall)",
                    "wall_s",
                ],
                [
                    [
                        r["trials"],
                        r["gpu_per_trial"],
                        r["cpu_per_trial"],
                        r["errors"],
                        r["sum_steady_samples_per_s"],
                        r["samples_per_s_over_wall"],
                        r["wall_s"],
                    ]
                    for r in sharing
                ],
            )
        )
        share_ratio = ratio(
            sharing[-1]["sum_steady_samples_per_s"], sharing[0]["sum_steady_samples_per_s"]
        )
        print(
            f"\n{SHARING[-1]} trials sharing one GPU / 1 trial (aggregate steady "
            f"samples/s): {'-' if share_ratio is None else f'{share_ratio:.3f}'}"
        )
    write_results(
        args.out,
        NAME,
        args,
        machine,
        {"config": recipe, "step": step, "sharing": sharing, "sharing_ratio": share_ratio},
    )
    return 0


if __name__ == "__main__":
    run_cli(main)
