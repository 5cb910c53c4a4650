"""The scripted side of the sweep-scale benchmark (``cli``): a sweep trial without training,
the sweep driver with its parts timed, launching that driver and checking its sweep.

    python -m benchmarks.sweep_scale.driver STATS -- SWEEP ARGS

runs the sweep CLI (``sweeps.dropout_warmup.main``) with :func:`scripted_trial` in place of
training and writes the driver's rusage (children excluded) and timed parts to ``STATS``.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.common import REPO
from handpose.errors import run_cli

PACE_ENV = "HANDPOSE_BENCH_PACE_S"  # seconds a scripted trial waits per validation
CKPT_BYTES = 4096  # payload of a scripted checkpoint


def curve(config: dict[str, Any], total: int, val_every: int) -> list[tuple[int, float]]:
    """Synthetic validation MPJPE (mm) per step: a decay to a floor set by the searched
    values, plus noise seeded by them (the same config gives the same curve)."""
    key = json.dumps(config, sort_keys=True, default=str).encode()
    rng = random.Random(int(hashlib.sha256(key).hexdigest()[:12], 16))
    floor = 60.0 + 25.0 * (float(config.get("MODEL.handec.dropout", 0.1)) - 0.1) ** 2
    for k, v in config.items():
        if k.startswith("LOSS.") and isinstance(v, (int, float)) and v > 0:
            floor += 2.0 * math.log10(v / 0.05) ** 2
    return [
        (s, floor + 40.0 * math.exp(-3.0 * s / total) + rng.gauss(0.0, 0.5))
        for s in range(val_every, total + 1, val_every)
    ]


def scripted_trial(
    config: dict[str, Any],
    base: dict[str, Any],
    runs_dir: str | None,
    checkpoint_interval_s: float = 0.0,
) -> None:
    """A sweep trial without training (same signature as ``sweeps.run.trainable.handpose_trial``):
    its config, ``config.yaml``, ``metrics.jsonl`` and Aim run (``handpose.tracking.Tracker``)
    as a real trial has them, a synthetic curve reported at every validation, with a small
    checkpoint (step + Aim hash, resumed from like a real one) when the trainable's
    ``CheckpointGate`` would hand one."""
    from omegaconf import OmegaConf
    from ray import tune

    from handpose.config import load_config, val_step
    from handpose.tracking import Tracker
    from sweeps.run.trainable import CheckpointGate

    ctx = tune.get_context()
    names = {"GENERAL.run_name": ctx.get_trial_name(), "AIM.experiment": ctx.get_experiment_name()}
    cfg = load_config(base, params={**config, **names}, origin="the sweep's base config")
    run_dir = (
        Path(runs_dir) / ctx.get_trial_name() if runs_dir else Path(ctx.get_trial_dir()) / "run"
    )
    run_dir.mkdir(parents=True, exist_ok=True)
    g = cfg.GENERAL
    val_every, pace = val_step(cfg), float(os.environ.get(PACE_ENV, "0"))
    start, aim_hash, resume = 0, None, None
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as d:
            state = json.loads((Path(d) / "state.json").read_text())
        start = resume = state["step"]
        aim_hash = state["aim_hash"]
    else:
        OmegaConf.save(cfg, run_dir / "config.yaml")
    extra = {
        "sweep": {
            "name": ctx.get_experiment_name(),
            "trial_id": ctx.get_trial_id(),
            "searched": dict(config),
        }
    }
    tracker = Tracker(cfg, run_dir, aim_hash, extra, resume)
    gate = CheckpointGate(checkpoint_interval_s, g.total_step)
    try:
        for step, mpjpe in curve(config, g.total_step, val_every):
            if step <= start:
                continue
            time.sleep(pace)
            val = {
                "mpjpe": mpjpe,
                "mpjpe_rel": 0.8 * mpjpe,
                "pa_mpjpe": 0.6 * mpjpe,
                "rte": 2.0 * mpjpe,
                "val_total": mpjpe / 100.0,
                "gap_mpjpe": 5.0,
            }
            tracker.track(step, "train", {"total": mpjpe / 90.0, "dropout_rate": 0.1}, True)
            tracker.track(step, "val", val, True)
            ckpt = None
            if gate(step):
                ckpt = run_dir / "checkpoints" / f"checkpoint-{step}"
                ckpt.mkdir(parents=True, exist_ok=True)
                (ckpt / "state.json").write_text(
                    json.dumps({"step": step, "aim_hash": tracker.aim_hash})
                )
                (ckpt / "payload.bin").write_bytes(b"\0" * CKPT_BYTES)
            tune.report(
                {
                    "step": step,
                    **val,
                    "dropout_rate": 0.1,
                    "val_fingerprint": "bench",
                    "num_samples": 256,
                    "bad_samples": 0,
                    "train_total": mpjpe / 90.0,
                    "node_id": "local",
                    "run_dir": str(run_dir),
                },
                checkpoint=ckpt and tune.Checkpoint.from_directory(str(ckpt)),
            )
            if ckpt is not None:
                shutil.rmtree(ckpt, ignore_errors=True)  # Tune holds its copy now
    finally:
        tracker.close()


class Timer:
    """Calls, wall seconds and CPU seconds of the wrapped methods, by name.

    CPU is the calling thread's (``time.thread_time``): ``process_time`` would also count
    what Ray's other driver threads do while a method waits (on an fsync, say), which made
    the searcher's cost look superlinear (helper's measurement, docs/benchmarks.md section 7).
    The driver's total CPU is measured separately, for the whole process."""

    def __init__(self) -> None:
        self.stats: dict[str, dict[str, float]] = {}

    def wrap(self, owner: Any, attr: str, name: str, after: Any = None) -> None:
        inner = getattr(owner, attr)
        timer = self

        def wrapped(*args: Any, **kwargs: Any) -> Any:
            w0, c0 = time.perf_counter(), time.thread_time()
            try:
                return inner(*args, **kwargs)
            finally:
                s = timer.stats.setdefault(name, {"calls": 0, "wall_s": 0.0, "cpu_s": 0.0})
                s["calls"] += 1
                s["wall_s"] += time.perf_counter() - w0
                s["cpu_s"] += time.thread_time() - c0
                if after is not None:
                    after(s, *args)

        setattr(owner, attr, wrapped)


def driver(stats_path: Path, sweep_argv: list[str]) -> int:
    """The sweep CLI with :func:`scripted_trial`, its parts timed; writes ``stats_path``
    (and ``<stats_path>.done``: how many trials the searcher saw end, as they end)."""
    from ray import tune
    from ray.tune.execution.tune_controller import TuneController
    from ray.tune.search.optuna import OptunaSearch

    import sweeps.results.leftovers
    import sweeps.results.summary
    from sweeps import dropout_warmup
    from sweeps.run.scheduler import SweepASHA
    from sweeps.run.search import PruneAwareOptunaSearch

    timer = Timer()
    done = stats_path.with_suffix(".done")

    def count_done(s: dict[str, float], *_: Any) -> None:
        done.write_text(str(int(s["calls"])))

    def state_size(s: dict[str, float], ctl: Any) -> None:
        path = Path(ctl._storage.experiment_driver_staging_path)
        s["last_bytes"] = sum(f.stat().st_size for f in path.glob("*") if f.is_file())

    timer.wrap(TuneController, "save_to_dir", "tune_state_snapshot", state_size)
    timer.wrap(SweepASHA, "_save", "scheduler_save")
    timer.wrap(SweepASHA, "on_trial_result", "scheduler_on_result")
    timer.wrap(OptunaSearch, "suggest", "searcher_suggest")
    timer.wrap(OptunaSearch, "save", "searcher_save")
    timer.wrap(PruneAwareOptunaSearch, "on_trial_result", "searcher_on_result")
    timer.wrap(PruneAwareOptunaSearch, "on_trial_complete", "searcher_on_complete", count_done)
    timer.wrap(tune.CLIReporter, "report", "live_table")
    timer.wrap(tune.Tuner, "fit", "fit")
    for fn in ("finish", "collect_trials", "prune_checkpoints", "write_outputs", "tidy_sweep"):
        timer.wrap(sweeps.results.summary, fn, fn)
    timer.wrap(sweeps.results.leftovers, "close_and_index", "close_and_index")
    t0 = time.time()
    code = dropout_warmup.main(sweep_argv, trainable_fn=scripted_trial)
    ru = resource.getrusage(resource.RUSAGE_SELF)
    stats_path.write_text(
        json.dumps(
            {
                "exit_code": code,
                "started": t0,
                "ended": time.time(),
                "cpu_s": ru.ru_utime + ru.ru_stime,
                "peak_rss_mb": ru.ru_maxrss / 1024,
                "parts": timer.stats,
            }
        )
    )
    return code


def bytes_of(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.is_dir() else 0


def launch(
    tmp: Path, tag: str, sweep_argv: list[str], pace: float, kill_at: int | None, cap: float
) -> dict[str, Any]:
    """Run one driver; kill its process group when ``kill_at`` trials ended (or at ``cap``
    seconds). -> wall seconds, how it ended, the driver's stats (None if killed)."""
    stats = tmp / f"{tag}.stats.json"
    log = open(tmp / f"{tag}.log", "w")  # noqa: SIM115 (closed below)
    cmd = [sys.executable, "-m", "benchmarks.sweep_scale.driver", str(stats), "--", *sweep_argv]
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        cmd,
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, PACE_ENV: str(pace)},
        start_new_session=True,
    )
    how = "exited"
    try:
        while proc.poll() is None:
            time.sleep(0.5)
            ended = stats.with_suffix(".done")
            n = int(ended.read_text() or 0) if ended.is_file() else 0
            over = time.perf_counter() - t0 > cap
            if over or (kill_at is not None and n >= kill_at):
                how = "capped" if over else f"killed after {n} trials ended"
                os.killpg(proc.pid, signal.SIGKILL)  # the driver and its local Ray at once
                proc.wait()
    finally:
        log.close()
    wall = time.perf_counter() - t0
    out = json.loads(stats.read_text()) if how == "exited" and stats.is_file() else None
    tail = (tmp / f"{tag}.log").read_text()[-600:] if how == "exited" and out is None else None
    return {
        "wall_s": wall,
        "how": how,
        "returncode": proc.returncode,
        "driver": out,
        "log_tail": tail,
    }


def check_sweep(sweep: Path, n: int) -> dict[str, Any]:
    """Duplicates and errors after a sweep: trials in summary.json, validation steps in each
    run's metrics.jsonl, Aim runs and run folders per trial, the study's trials by state and
    its FAIL trials not tagged superseded (by a --resume)."""
    import optuna
    from aim import Repo

    from sweeps.run.recovery import SUPERSEDED_ATTR
    from sweeps.run.study_file import study_storage

    trials = json.loads((sweep / "summary.json").read_text())["trials"]
    ids = [t["trial_id"] for t in trials]
    repeated_steps = 0
    for p in sweep.glob("runs/*/metrics.jsonl"):
        steps = [
            json.loads(line)["step"]
            for line in p.read_text().splitlines()
            if '"split": "val"' in line
        ]
        repeated_steps += len(steps) - len(set(steps))
    repo = Repo.from_path(str(sweep))
    named = {r.hash: r.name for r in repo.structured_db.runs()}
    hashes = repo.list_all_runs()
    # a run without a row in the run table: its writer was killed as it created the run
    names = [named[h] for h in hashes if h in named]
    study = optuna.load_study(study_name=sweep.name, storage=study_storage(sweep))
    states: dict[str, int] = {}
    unexplained_fail = 0
    for t in study.get_trials(deepcopy=False):
        states[t.state.name] = states.get(t.state.name, 0) + 1
        unexplained_fail += t.state.name == "FAIL" and SUPERSEDED_ATTR not in t.user_attrs
    run_folders = sum(d.is_dir() for d in sweep.glob("runs/*"))
    by_status: dict[str, int] = {}
    for t in trials:
        by_status[t["status"]] = by_status.get(t["status"], 0) + 1
    return {
        "trials": len(trials),
        "expected": n,
        "duplicate_trial_ids": len(ids) - len(set(ids)),
        "by_status": by_status,
        "repeated_val_steps": repeated_steps,
        "aim_runs": len(hashes),
        "aim_runs_without_props": len(hashes) - len(names),
        "duplicate_aim_runs": len(names) - len(set(names)),
        "study_states": states,
        "unexplained_fail": unexplained_fail,
        "run_folders": run_folders,
        # Tune's trials: each once, all finished, none errored
        "clean": (
            len(trials) == n == len(set(ids)) and set(by_status) <= {"COMPLETED", "STOPPED_EARLY"}
        ),
        # their files: one Aim run and run folder per trial, no validation logged twice, no
        # FAIL study trial but those tagged superseded
        "files_clean": repeated_steps == 0
        and len(hashes) == len(set(names)) == n == run_folders
        and unexplained_fail == 0,
    }


def main(argv: list[str] | None = None) -> int:
    """``STATS -- SWEEP ARGS``: :func:`driver`."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) < 2 or argv[1] != "--":
        print("usage: python -m benchmarks.sweep_scale.driver STATS -- SWEEP ARGS", file=sys.stderr)
        return 2
    return driver(Path(argv[0]), argv[2:])


if __name__ == "__main__":
    run_cli(main)
