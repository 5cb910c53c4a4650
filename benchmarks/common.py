"""Helpers shared by the benchmarks: the machine's description, synthetic data in a temp
folder, the console lines of a run, a preset's recipe scaled to a step budget, Ray Tune runs
of the sweep trainable (a whole sweep trained to the full budget among them), tables and the
JSON of results.

Timings on a shared machine are disturbed by whatever else runs there: the benchmarks
therefore compare A and B side by side in one run (interleaved, repeated) and report ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
RESULTS_DIR = REPO / "benchmarks" / "results"
# Shrinks the tiny recipe so a --toy run takes seconds (it only checks that a script works).
TOY_OVERRIDES = (
    "DATA.val.max_samples=32",
    "DATA.train_eval_samples=16",
    "DATA.val_batch_size=16",
    "MODEL.backbone.depth=1",
    "MODEL.handec.num_layer=1",
    "MODEL.backbone.checkpoint=null",  # the shipped weights are for 4 + 2 layers
    "MODEL.handec.checkpoint=null",
    "TRAIN.sample_per_device=8",
)
# A console line of handpose.train: "<step>/<total> lr=... <rate> samples/s"
TRAIN_LINE = re.compile(r"^(\d+)/(\d+) lr=.* ([0-9.]+) samples/s$", re.M)


def machine_info() -> dict[str, Any]:
    """What the numbers were measured on: CPUs, lscpu's first lines, versions, the load."""
    import ray
    import torch

    try:
        lscpu = subprocess.run(
            ["lscpu"], capture_output=True, text=True, check=False
        ).stdout.splitlines()[:10]
    except OSError:
        lscpu = []
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "lscpu": lscpu,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "ray": ray.__version__,
        "cuda_device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "started": time.strftime("%Y-%m-%d %H:%M:%S %z"),
    }


def base_parser(name: str, doc: str, prog: str | None = None) -> argparse.ArgumentParser:
    """The arguments every benchmark has: ``--toy``, ``--out``, ``--data``. ``prog`` names the
    command in the usage line (default: the script's file name)."""
    p = argparse.ArgumentParser(
        prog=prog,
        description=doc.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "--toy",
        action="store_true",
        help="a seconds-long run that only checks the script works (for CI)",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=RESULTS_DIR / f"{name}.json",
        help="where the JSON of the numbers goes",
    )
    p.add_argument(
        "--data",
        type=Path,
        help="existing synthetic shards (default: generate them in a temp folder)",
    )
    return p


def synthetic_overrides(data: Path | None, tmp: Path, train: int, val: int) -> list[str]:
    """Config overrides pointing every source at synthetic shards: ``data`` if given, else
    ``train`` + ``val`` samples generated with ``python -m handpose.data.synthetic`` in
    ``tmp``."""
    from handpose.errors import UserError

    sizes: list[str] = []
    if data is None:
        data = tmp / "synthetic"
        run_checked(
            [
                sys.executable,
                "-m",
                "handpose.data.synthetic",
                "--out",
                str(data),
                "--train",
                str(train),
                "--val",
                str(val),
                "--seed",
                "0",
            ]
        )
        sizes = [f"DATA.synthetic.train={train}", f"DATA.synthetic.val={val}"]
    elif not data.is_dir():
        raise UserError(f"--data {data}: no such folder")
    data = data.resolve()
    return [
        f"DATA.synthetic.dir={data}",
        f"DATA.train.source=[{data}/train-*.tar]",
        f"DATA.val.source=[{data}/val-*.tar]",
        *sizes,
    ]


def run_checked(cmd: Sequence[str], env: dict[str, str] | None = None) -> float:
    """Run ``cmd`` in the repository with its output captured; -> wall seconds. On failure
    raises RuntimeError with the end of its output."""
    t0 = time.perf_counter()
    proc = subprocess.run(list(cmd), cwd=REPO, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = (proc.stdout + proc.stderr)[-2000:]
        raise RuntimeError(f"{' '.join(cmd[:4])} ... failed ({proc.returncode}):\n{tail}")
    return time.perf_counter() - t0


def train_windows(log_txt: Path) -> list[tuple[int, float]]:
    """``(step, samples/s)`` of every console line of a run's ``log.txt``; each covers the
    ``GENERAL.log_step`` steps before ``step``."""
    return [(int(m[1]), float(m[3])) for m in TRAIN_LINE.finditer(log_txt.read_text())]


def window_stats(
    windows: list[tuple[int, float]], log_step: int, val_every: int, batch: int
) -> dict[str, float | None]:
    """Throughput of a run from its console lines.

    A window's rate covers its training steps plus whatever ran in between: the first window
    also holds the start of the data stream and the first steps, a window that begins right
    after a validation also holds that validation and its checkpoint (and in a sweep the
    report to Tune). ``steady_samples_per_s`` uses the other windows only (their total
    samples over their total time); ``after_val_extra_s`` is the mean extra time of a window
    that follows a validation, i.e. the cost of one validation + checkpoint (+ report).
    """

    def seconds(rate: float) -> float:
        return log_step * batch / rate

    after_val = [r for s, r in windows if s > log_step and (s - log_step) % val_every == 0]
    steady = [r for s, r in windows if s > log_step and (s - log_step) % val_every != 0]
    first = [r for s, r in windows if s == log_step]
    steady_s = sum(seconds(r) for r in steady)
    steady_window = steady_s / len(steady) if steady else None
    return {
        "steady_samples_per_s": len(steady) * log_step * batch / steady_s if steady else None,
        "steady_windows": len(steady),
        "first_window_s": seconds(first[0]) if first else None,
        "after_val_extra_s": (
            statistics.mean(seconds(r) for r in after_val) - steady_window
            if after_val and steady_window is not None
            else None
        ),
    }


def make_step(cfg: Any, device: Any) -> Callable[[dict[str, Any]], None]:
    """One optimisation step of the training loop on ``device``, the model built from
    ``cfg`` with its decoder dropout at the target rate: forward under the recipe's
    autocast (``TRAIN.mixed_precision``), losses, backward, gradient clipping, AdamW.
    The returned ``step(batch)`` takes a batch already on ``device``."""
    import torch

    from handpose.model import build_model, param_groups
    from handpose.train import train_step

    model = build_model(cfg).to(device)
    model.train()
    model.set_dropout_rate(cfg.MODEL.handec.dropout)
    optimizer = torch.optim.AdamW(
        param_groups(model, cfg.TRAIN.lr, cfg.TRAIN.backbone_lr),
        weight_decay=cfg.TRAIN.weight_decay,
    )

    def step(batch: dict[str, Any]) -> None:
        train_step(cfg, model, optimizer, batch, device)

    return step


def write_spec(
    path: Path,
    preset: str,
    grace_period: int,
    seed: int | None = None,
    num_samples: int | None = None,
) -> Path:
    """``preset`` of the repository's sweep spec with the ASHA grace period (and the searcher
    seed, the number of trials) replaced, as a spec file of its own at ``path``."""
    from omegaconf import OmegaConf

    from sweeps.run.spec import SPEC_PATH

    raw = OmegaConf.to_container(OmegaConf.load(SPEC_PATH), resolve=True)
    fields = dict(raw["presets"][preset])
    fields["scheduler"] = {**fields.get("scheduler", {}), "grace_period": grace_period}
    if seed is not None:
        fields["seed"] = seed
    if num_samples is not None:
        fields["num_samples"] = num_samples
    OmegaConf.save(
        {
            "metric": raw.get("metric", "mpjpe"),
            "mode": raw.get("mode", "min"),
            "presets": {preset: fields},
        },
        path,
    )
    return path


def scaled_overrides(preset: str, steps: int, batch: int) -> tuple[list[str], int]:
    """Overrides that shrink ``preset``'s recipe to ``steps`` steps at ``batch`` samples per
    step, keeping the validation/log/warmup intervals as fractions of the budget; and the
    preset's ASHA grace period scaled the same way."""
    from handpose.config import val_step
    from sweeps.run.spec import SPEC_PATH, load_spec

    spec, cfg = load_spec(preset, SPEC_PATH)
    total = cfg.GENERAL.total_step

    def scale(n: int) -> int:
        return max(1, round(n * steps / total))

    every = scale(val_step(cfg))
    return (
        [
            f"GENERAL.total_step={steps}",
            f"GENERAL.checkpoint_step={every}",
            f"GENERAL.val_step={every}",
            f"GENERAL.log_step={scale(cfg.GENERAL.log_step)}",
            f"TRAIN.warmup_step={scale(cfg.TRAIN.warmup_step)}",
            f"GENERAL.dropout_warmup_step={scale(cfg.GENERAL.dropout_warmup_step)}",
            f"TRAIN.sample_per_device={batch}",
        ],
        scale(spec.grace_period),
    )


def fit_trials(
    spec: Any,
    base: dict[str, Any],
    sweep_dir: Path,
    num_samples: int,
    search_alg: Any = None,
    reuse_actors: bool = False,
    max_concurrent: int = 0,
) -> Any:
    """Run ``num_samples`` trials of the sweep trainable (``sweeps.run.trainable.handpose_trial``
    with the spec's resources, checkpoints and failure settings) under Ray Tune with no
    scheduler (no early stopping); -> the ``ResultGrid``. With a ``search_alg`` the spec's
    search space is searched, else every trial trains the base config. ``reuse_actors`` and
    ``max_concurrent`` (0: as many as the resources allow) go to Tune's ``TuneConfig``."""
    from handpose.config import load_config
    from sweeps.run.spec import tune_space
    from sweeps.run.state import SweepRun
    from sweeps.run.tuning import make_trainable, make_tuner, progress_reporter

    run = SweepRun(
        spec=spec,
        base_cfg=load_config(base, origin="the benchmark's base config"),
        storage=str(sweep_dir.parent),
        sweep_dir=sweep_dir,
        num_samples=num_samples,
    )
    tuner = make_tuner(
        run,
        make_trainable(run),
        tune_space(spec) if search_alg is not None else {},
        reporter=progress_reporter(spec) if search_alg is not None else None,
        search_alg=search_alg,
        max_concurrent_trials=max_concurrent,
        reuse_actors=reuse_actors,
    )
    return tuner.fit()


def run_full_budget(
    preset: str, spec_path: Path, seed: int, trials: int, storage: Path, overrides: list[str]
) -> tuple[Path, int]:
    """``preset`` of the spec at ``spec_path`` set up as the sweep CLI sets it up, with no
    scheduler: ``trials`` trials proposed by the spec's TPE searcher, every one trained to the
    full budget, in ``storage/full-seed<seed>`` (its ``summary.json`` written as the CLI writes
    it); -> that folder and the summary's exit code. Runs on the Ray this process has."""
    from omegaconf import OmegaConf
    from ray.tune.search import ConcurrencyLimiter

    from handpose.data import ensure_dataset
    from handpose.tracking import init_aim_repo
    from sweeps.results.summary import finish
    from sweeps.run.search import make_searcher
    from sweeps.run.spec import load_spec

    sweep_dir = storage / f"full-seed{seed}"
    spec, base_cfg = load_spec(preset, spec_path, extra_overrides=tuple(overrides))  # absolute
    if base_cfg.AIM.enabled and not base_cfg.AIM.server_url:
        base_cfg.AIM.server_url = str(sweep_dir)  # one Aim repo per sweep, as the CLI does
    if base_cfg.AIM.enabled:
        init_aim_repo(base_cfg.AIM.server_url)
    ensure_dataset(base_cfg)
    searcher = ConcurrencyLimiter(
        make_searcher(spec, sweep_dir, base_cfg.GENERAL.total_step, trials),
        max_concurrent=spec.max_concurrent,
    )
    results = fit_trials(
        spec, OmegaConf.to_container(base_cfg, resolve=True), sweep_dir, trials, searcher
    )
    code = finish(results, spec, base_cfg, sweep_dir, trials, "(a benchmark sweep: not resumable)")
    return sweep_dir, code


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain right-aligned text table; floats with 3 significant decimals, None as '-'."""

    def cell(v: Any) -> str:
        if v is None:
            return "-"
        if isinstance(v, float):
            return f"{v:.3f}" if abs(v) < 100 else f"{v:.1f}"
        return str(v)

    cells = [[cell(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    lines = ["  ".join(h.rjust(w) for h, w in zip(headers, widths, strict=True))]
    lines += ["  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(lines)


def ratio(a: float | None, b: float | None) -> float | None:
    """``a / b``, None when either is missing or ``b`` is 0."""
    return None if a is None or not b else a / b


def median(values: Sequence[float | None]) -> float | None:
    """Median of the values that are not None (None if there are none)."""
    have = [v for v in values if v is not None]
    return statistics.median(have) if have else None


def write_results(
    path: Path,
    name: str,
    args: argparse.Namespace,
    machine: dict[str, Any],
    payload: dict[str, Any],
) -> None:
    """Write the benchmark's JSON (the machine as at the start, the load average at the end,
    the arguments, the numbers) and say where."""
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "benchmark": name,
        "machine": {**machine, "load_average_at_end": [round(x, 2) for x in os.getloadavg()]},
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        **payload,
    }
    path.write_text(json.dumps(record, indent=2) + "\n")
    print(f"\nresults: {path}")
