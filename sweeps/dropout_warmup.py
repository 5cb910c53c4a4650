"""Dropout-warmup / loss-weight sweep: OptunaSearch (seeded TPE) + ASHA on validation MPJPE.

    python sweeps/dropout_warmup.py [--smoke] [--resume] [--num-samples N] [--name NAME]
                                    [--storage PATH] [--address ADDR] [KEY=VALUE ...]

With no arguments: a complete sweep of the ``cpu`` preset (``gpu`` when GPUs are visible)
on the synthetic data set (generated on first use), on a local Ray with its dashboard.
KEY=VALUE overrides apply to the base training config of every trial.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import time
from collections.abc import Callable
from pathlib import Path

from omegaconf import OmegaConf

from handpose.config import val_step
from handpose.data import ensure_dataset, expand_sources
from handpose.data.shards import is_url
from handpose.errors import UserError, run_cli
from handpose.tracking import init_aim_repo
from sweeps.run.recovery import load_tune_state, restore_missing_checkpoints
from sweeps.run.spec import SPEC_PATH, SweepSpec, load_spec
from sweeps.run.state import STATE_FILE, SweepRun, SweepState, open_sweep, write_state

DEFAULT_STORAGE = "results"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--smoke", action="store_true", help="tiny end-to-end sweep (< 2 min)")
    p.add_argument("--preset", help="preset in the sweep spec (default: cpu, gpu if GPUs)")
    p.add_argument("--spec", default=str(SPEC_PATH), help="sweep spec YAML")
    p.add_argument("--resume", action="store_true", help="continue the sweep --name")
    p.add_argument("--num-samples", type=int, help="number of trials (default: from spec)")
    p.add_argument("--name", help="sweep name (folder under --storage)")
    p.add_argument(
        "--storage",
        default=os.environ.get("HANDPOSE_SWEEP_STORAGE", DEFAULT_STORAGE),
        help="results root: local dir, NFS path or s3://bucket/prefix",
    )
    p.add_argument(
        "--address",
        default=os.environ.get("RAY_ADDRESS"),
        help="join an existing Ray cluster (default: start a local one)",
    )
    p.add_argument("--num-cpus", type=int, help="CPUs of the local Ray (default: all)")
    p.add_argument(
        "--confirm",
        type=int,
        metavar="K",
        default=0,
        help="after the sweep, re-train the top K configs and the baseline recipe "
        "with --seeds training seeds each (see sweeps/confirm.py)",
    )
    p.add_argument(
        "--seeds",
        type=int,
        metavar="S",
        default=3,
        help="training seeds per config for --confirm (>= 2)",
    )
    p.add_argument("overrides", nargs="*", help="KEY=VALUE overrides of the base config")
    args = p.parse_intermixed_args(argv)
    if args.num_samples is not None and args.num_samples < 1:
        raise UserError(f"--num-samples={args.num_samples}: must be >= 1")
    if args.confirm < 0 or (args.confirm and args.seeds < 2):
        raise UserError(f"--confirm {args.confirm} --seeds {args.seeds}: want K >= 1, S >= 2")
    return args


def visible_gpus() -> int:
    """How many GPUs this process sees."""
    import torch

    return torch.cuda.device_count()


def pick_preset(args: argparse.Namespace, gpus: int) -> tuple[str, str]:
    """The preset and how it was chosen: ``--preset``, ``--smoke``, else ``gpu`` when this
    machine sees GPUs (``gpus``) and ``cpu`` when not (``the default``)."""
    if args.preset:
        return args.preset, "--preset"
    if args.smoke:
        return "smoke", "--smoke"
    return ("gpu" if gpus else "cpu"), "the default"


def open_cluster(args: argparse.Namespace, spec: SweepSpec, chosen: str, plan: str) -> None:
    """Connect to Ray (``connect_ray``) and print the preset line: the preset, how it was
    chosen, the GPUs this machine sees, the cluster's nodes and whether it can grow, and
    ``plan``. A trial that the cluster's nodes cannot hold is a warning on a cluster that
    can grow and a one-line error (exit 2) on a fixed one (``check_placement``); so is
    remote storage on a multi-node cluster. Before the sweep folder is made."""
    from sweeps.run.placement import autoscaler, check_placement, describe_cluster, node_resources
    from sweeps.run.tuning import connect_ray

    connect_ray(args.address, args.num_cpus)
    nodes, grows = node_resources(), autoscaler()
    gpus = visible_gpus()
    seen = f"{gpus} GPU{'s' * (gpus != 1)}" if gpus else "no GPU"
    print(
        f"preset: {spec.preset} ({chosen}; {seen} visible here; cluster: "
        f"{describe_cluster(nodes)}, {f'autoscaling: {grows}' if grows else 'fixed size'}), "
        f"{plan}"
    )
    warning = check_placement(spec.resources, nodes, grows)
    if warning:
        print(warning)
    if is_url(args.storage) and len(nodes) > 1:
        raise UserError(
            f"--storage {args.storage}: remote storage is not supported on a multi-node "
            "cluster yet (the study, the scheduler state and the Aim repo live on "
            "the driver's disk); use a shared file system path"
        )


def local_folder(storage: str, name: str) -> Path:
    """Where the sweep's own files go: the sweep folder in local/NFS storage; with remote
    storage (s3://...) Tune's state goes there and ours to ./results/<name>."""
    root = Path(DEFAULT_STORAGE).resolve() if is_url(storage) else Path(storage)
    return root / name


def storage_root(storage: str) -> str:
    """``--storage`` as Tune wants it (absolute local path or URL); an unwritable local
    folder is a one-line error, before Ray starts."""
    if is_url(storage):
        return storage
    root = Path(storage).expanduser().resolve()
    try:
        root.mkdir(parents=True, exist_ok=True)
        probe = root / f".write-test-{os.getpid()}"
        probe.touch()
        probe.unlink()
    except OSError as e:
        raise UserError(f"--storage {storage}: cannot write there ({e.strerror or e})") from None
    return str(root)


def main(argv: list[str] | None = None, trainable_fn: Callable[..., None] | None = None) -> int:
    """The CLI. ``trainable_fn`` replaces the trial function (``sweeps.run.trainable.
    handpose_trial``, same signature) for benchmarks that script the trials."""
    args = parse_args(argv)
    storage = storage_root(args.storage)
    if args.resume:
        if not args.name:
            raise UserError("--resume needs --name NAME (the sweep folder under --storage)")
        sweep_dir = local_folder(storage, args.name)
        if not (sweep_dir / STATE_FILE).is_file():
            raise UserError(f"--resume: no sweep to resume at {sweep_dir}")
        if not is_url(storage):  # Tune's state is in the sweep folder (local or shared disk)
            for line in restore_missing_checkpoints(sweep_dir, load_tune_state(sweep_dir)):
                print(line)
        if args.overrides or args.preset or args.num_samples:
            print(
                f"note: --resume continues the sweep as it was saved ({STATE_FILE}): "
                "KEY=VALUE, --preset and --num-samples are ignored"
            )
        state, spec, base_cfg = open_sweep(sweep_dir)
        num_samples, chosen = state.num_samples, "--resume"
    else:
        # absolute paths, the model checkpoints resolved as the trials resolve them and
        # opened: a missing file is a one-line error (exit 2) before Ray starts
        preset, chosen = pick_preset(args, visible_gpus())
        spec, base_cfg = load_spec(preset, args.spec, extra_overrides=tuple(args.overrides))
        num_samples = args.num_samples or spec.num_samples
    name = args.name or f"dropout_warmup-{spec.preset}-{time.strftime('%Y%m%d-%H%M%S')}"
    sweep_dir = local_folder(storage, name)
    if not args.resume and (sweep_dir / STATE_FILE).exists():
        raise UserError(
            f"--name {name}: {sweep_dir} already holds a sweep; continue it with "
            "--resume or choose another name"
        )
    if base_cfg.AIM.enabled and not base_cfg.AIM.server_url:
        # one Aim repo per sweep (a path: the config stays as validated)
        base_cfg.AIM.server_url = str(sweep_dir)
    ensure_dataset(base_cfg)  # before Ray: missing data is a user error, and made only once
    for split in ("train", "val"):
        expand_sources(base_cfg.DATA[split].source, f"DATA.{split}.source")
    plan = (
        f"{num_samples} trials x {base_cfg.GENERAL.total_step} steps max, "
        f"base config {spec.base_config}, val_seed {base_cfg.GENERAL.val_seed}"
    )
    open_cluster(args, spec, chosen, plan)
    sweep_dir.mkdir(parents=True, exist_ok=True)
    if base_cfg.AIM.enabled:  # once, here: trials that init it together collide on its lock
        init_aim_repo(base_cfg.AIM.server_url)
    run = SweepRun(
        spec=spec,
        base_cfg=base_cfg,
        storage=storage,
        sweep_dir=sweep_dir,
        num_samples=num_samples,
        trainable_fn=trainable_fn,
    )
    if not args.resume:
        state = SweepState(
            preset=spec.preset,
            spec=str(Path(args.spec).resolve()),
            num_samples=num_samples,
            base=OmegaConf.to_container(base_cfg, resolve=True),
        )
        write_state(sweep_dir, state)

    # Paths are absolute from here on. Leave the launch folder: under `ray job submit
    # --working-dir` it is Ray's unpacked package, which Ray may delete before the driver
    # ends, and Tune's end-of-run analysis then fails on getcwd() (ray-project/ray#52343).
    launch_dir = os.getcwd()
    os.chdir(sweep_dir)
    try:
        return run_sweep(args, run)
    finally:
        with contextlib.suppress(OSError):
            os.chdir(launch_dir)


def build_tuner(run: SweepRun):
    """The sweep's Tuner: prune-aware Optuna TPE (the baseline first) + schedule-aware ASHA
    with sentinels, on the sweep trainable; a line per trial event, the table every 2 min."""
    from ray.tune.search import ConcurrencyLimiter

    from sweeps.run.console import TrialEvents
    from sweeps.run.rungs import SCHEDULER_FILE, ReadyStep, pick_sentinels, rungs
    from sweeps.run.scheduler import SweepASHA
    from sweeps.run.search import make_searcher
    from sweeps.run.spec import tune_space
    from sweeps.run.tuning import make_trainable, make_tuner, progress_reporter

    spec, g, s = run.spec, run.base_cfg.GENERAL, run.spec.scheduler
    ready = ReadyStep(
        val_every=val_step(run.base_cfg),
        warmup=g.dropout_warmup_step,
        schedule=g.dropout_schedule,
        ramp=g.dropout_ramp_step,
        rate=run.base_cfg.MODEL.handec.dropout,
    )
    scheduler = SweepASHA(
        ready_step=ready if s.schedule_aware else None,
        sentinels=pick_sentinels(run.num_samples, s.sentinel_fraction, s.min_sentinels, spec.seed),
        state_path=run.sweep_dir / SCHEDULER_FILE,
        val_every=ready.val_every,
        time_attr="step",
        max_t=g.total_step,
        grace_period=s.grace_period,
        reduction_factor=s.reduction_factor,
        stop_last_trials=False,
    )  # a trial at max_t ends by itself: its workers exit cleanly
    steps = rungs(s.grace_period, s.reduction_factor, g.total_step, ready.val_every)
    steps = [step for step in steps if step < g.total_step]
    moved = (
        ""
        if s.grace_period % ready.val_every == 0
        else (f"; grace_period {s.grace_period} moved to the first validation after it")
    )
    print(f"ASHA compares MPJPE at steps {steps} (validation every {ready.val_every}{moved})")
    searcher = make_searcher(spec, run.sweep_dir, g.total_step, run.num_samples)
    return make_tuner(
        run,
        make_trainable(run),
        tune_space(spec),
        reporter=progress_reporter(spec),
        callbacks=[TrialEvents(spec.space, spec.metric, steps, scheduler)],
        search_alg=ConcurrencyLimiter(searcher, max_concurrent=spec.max_concurrent),
        scheduler=scheduler,
    )


def run_sweep(args: argparse.Namespace, run: SweepRun) -> int:
    """Fit the sweep's Tuner (restored with ``--resume``) on the connected Ray, write the
    sweep's results and, with ``--confirm``, confirm its best configurations."""
    from ray import tune

    from sweeps.results.summary import finish
    from sweeps.run.tuning import make_trainable

    if args.resume:
        tuner = tune.Tuner.restore(
            f"{run.storage}/{run.name}",
            trainable=make_trainable(run),
            resume_unfinished=True,
            resume_errored=True,
        )
    else:
        tuner = build_tuner(run)
    results = tuner.fit()
    code = finish(
        results, run.spec, run.base_cfg, run.sweep_dir, run.num_samples, resume_cmd(args, run.name)
    )
    if code == 0 and args.confirm:
        from sweeps.results.confirm import run_confirmation

        report = run_confirmation(run.sweep_dir, args.confirm, args.seeds, address=args.address)
        code = 1 if report["failed"] else code
    return code


def resume_cmd(args: argparse.Namespace, name: str) -> str:
    cmd = f"python sweeps/dropout_warmup.py --resume --name {name}"
    if args.storage != DEFAULT_STORAGE:
        cmd += f" --storage {args.storage}"
    return cmd + (f" --address {args.address}" if args.address else "")


def cli() -> None:
    """The ``handpose-sweep`` console script: :func:`main` with one-line errors (exit 2)."""
    run_cli(main)


if __name__ == "__main__":
    cli()
