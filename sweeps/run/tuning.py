"""The Ray plumbing, in one place: connecting to Ray, the trial's resources, the live trial
table, and ``Tuner`` construction for the sweep, the confirmation and the benchmarks.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # our trial table (CLIReporter), not Ray's
# With `keep_checkpoints: 1` (the spec's default is 2) Tune snapshots its whole state at every
# checkpoint of any trial, and with many trials a snapshot takes seconds; its warning about
# slow snapshot syncs is then expected and names nothing a sweep's user can change.
os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")

import ray  # noqa: E402
from ray import tune  # noqa: E402

from handpose.data.shards import is_url  # noqa: E402
from handpose.errors import UserError, first_line  # noqa: E402
from sweeps.run.console import TABLE_EVERY_S  # noqa: E402
from sweeps.run.placement import TRIAL_ACTOR_CPU  # noqa: E402
from sweeps.run.spec import SweepSpec  # noqa: E402
from sweeps.run.state import SweepRun  # noqa: E402


def connect_ray(
    address: str | None = None, num_cpus: int | None = None, dashboard: bool = True
) -> bool:
    """Use this process's Ray if initialised, else join ``address`` or start a new local Ray
    (with its dashboard unless ``dashboard`` is false; never a stray Ray found on this
    machine). Prints the dashboard URL and how to get its token. True if connected here
    (the caller shuts it down)."""
    if ray.is_initialized():  # e.g. a test fixture's ray.init(num_cpus=2)
        return False
    kwargs: dict[str, Any] = {"log_to_driver": False}
    if not address:
        kwargs.update(num_cpus=num_cpus, include_dashboard=dashboard, dashboard_host="127.0.0.1")
    try:
        ctx = ray.init(address=address or "local", **kwargs)
    except (ConnectionError, ValueError, RuntimeError) as e:
        raise UserError(f"cannot reach Ray at {address or 'local'}: {first_line(e)}") from None
    if ctx.dashboard_url:
        print(
            f"Ray dashboard: http://{ctx.dashboard_url} (it asks for a token: "
            "`ray get-auth-token` prints it)"
        )
    else:
        print("Ray dashboard: not running")
    return True


def with_resources(trainable: Callable, spec: SweepSpec) -> Any:
    """``trainable`` with the spec's per-trial resources (``cpu``, ``gpu``)."""
    r = spec.resources
    return tune.with_resources(trainable, {k: v for k, v in (("cpu", r.cpu), ("gpu", r.gpu)) if v})


def make_trainable(run: SweepRun, **extra: Any) -> Any:
    """The trial function (``run.trainable_fn``, else ``sweeps.run.trainable.handpose_trial``,
    or ``ddp_trial`` when ``resources.workers`` > 1) with the validated base config attached
    (via the object store), ``extra`` keyword arguments and the spec's resources. With local/NFS
    storage each trial's run folder is ``<sweep>/runs/<trial>`` (shared by all nodes); with
    s3:// it stays in Tune's trial folder."""
    spec = run.spec
    runs_dir = None if is_url(run.storage) else str(run.sweep_dir / "runs")
    fn = run.trainable_fn
    if fn is None and spec.resources.workers > 1:
        from sweeps.run.trainable import WorkerGroup, ddp_trial

        # The trial itself (TRIAL_ACTOR_CPU) only waits on its Ray Train workers, which take
        # the CPUs and GPUs; concurrency is bounded by max_concurrent and by what the cluster has.
        trainable = tune.with_parameters(
            ddp_trial,
            base=run.base_cfg,
            runs_dir=runs_dir,
            checkpoint_interval_s=spec.checkpoint_interval_s,
            group=WorkerGroup(
                resources=spec.resources,
                max_failures=spec.max_failures,
                train_dir=f"{run.storage}/{run.name}/train",
            ),
        )
        return tune.with_resources(trainable, {"cpu": TRIAL_ACTOR_CPU})
    if fn is None:
        from sweeps.run.trainable import handpose_trial as fn
    trainable = tune.with_parameters(
        fn,
        base=run.base_cfg,
        runs_dir=runs_dir,
        checkpoint_interval_s=spec.checkpoint_interval_s,
        **extra,
    )
    return with_resources(trainable, spec)


def progress_reporter(
    spec: SweepSpec, parameter_columns: dict[str, str] | None = None
) -> tune.CLIReporter:
    """The full trial table, at most every ``TABLE_EVERY_S`` seconds and at the end (the
    events between: ``sweeps.run.console.TrialEvents``): the top trials by MPJPE (the header
    counts trials by status), the searched values, the step and the decoder's current
    ``dropout_rate`` (the searched ``MODEL.handec.dropout`` is its target)."""
    return tune.CLIReporter(
        metric_columns={
            "step": "step",
            "mpjpe": "mpjpe_mm",
            "rte": "rte_mm",
            "dropout_rate": "dropout_rate",
        },
        parameter_columns=parameter_columns or {k: k.split(".")[-1] for k in spec.space},
        max_report_frequency=TABLE_EVERY_S,
        sort_by_metric=True,
        max_progress_rows=20,
    )


def make_tuner(
    run: SweepRun,
    trainable: Any,
    param_space: dict[str, Any],
    reporter: Any = None,
    callbacks: list[tune.Callback] | None = None,
    **tune_config: Any,
) -> tune.Tuner:
    """The Tuner of ``run.num_samples`` samples of ``param_space`` in Tune's experiment
    ``run.name`` under ``run.storage``, with the spec's metric, failure policy and checkpoint
    policy: Tune keeps the latest ``keep_checkpoints`` per trial (the summary prunes them to
    the latest). ``callbacks``: Tune callbacks (the sweep's event lines). ``tune_config``:
    more of Tune's ``TuneConfig`` (``search_alg``,
    ``scheduler``, ``max_concurrent_trials``, ``reuse_actors``)."""
    spec = run.spec
    return tune.Tuner(
        trainable,
        param_space=param_space,
        tune_config=tune.TuneConfig(
            metric=spec.metric, mode=spec.mode, num_samples=run.num_samples, **tune_config
        ),
        run_config=tune.RunConfig(
            name=run.name,
            storage_path=run.storage,
            failure_config=tune.FailureConfig(max_failures=spec.max_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=spec.keep_checkpoints),
            progress_reporter=reporter,
            callbacks=callbacks,
            verbose=1,
        ),
    )
