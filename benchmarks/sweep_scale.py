"""How the sweep layer's cost grows with the number of trials (10, 100, 1000).

    python benchmarks/sweep_scale.py [--sizes 10,100,1000] [--resume-sizes 10,100]
        [--cpu 0.05] [--max-concurrent 40] [--pace 0.3] [--keep-checkpoints 1] [--cap 900]

Runs the real sweep path (``sweeps.dropout_warmup.main``: the prune-aware Optuna searcher
over its journal, the schedule-aware ASHA with its state file, Tune's experiment state, one
Aim run per trial in the sweep's repo, ``summary.json``) with :func:`scripted_trial` in
place of training: it reports a synthetic MPJPE curve, deterministic from the searched
values, with a checkpoint at every validation. The driver runs as a subprocess of this
script; it times its own parts (Tune's state snapshots, the scheduler's saves, the
searcher, the summary) and writes them with its rusage (children excluded) at the end.
Then ``python -m sweeps.report`` is timed on the sweep folder. For the sizes in
``--resume-sizes`` a second sweep is SIGKILLed (driver and its local Ray) when half its
trials have finished, then resumed with ``--resume``; the resumed sweep is checked for
duplicate and errored trials. Growth exponents are log-log slopes over the sizes.
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
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import (
    REPO,
    base_parser,
    format_table,
    machine_info,
    synthetic_overrides,
    write_results,
    write_spec,
)
from handpose.errors import UserError, run_cli

NAME = "sweep_scale"
PRESET = "cpu"
PACE_ENV = "HANDPOSE_BENCH_PACE_S"  # seconds a scripted trial waits per validation
CKPT_BYTES = 4096  # payload of a scripted checkpoint


def _curve(config: dict[str, Any], total: int, val_every: int) -> list[tuple[int, float]]:
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


def scripted_trial(config: dict[str, Any], base: dict[str, Any], runs_dir: str | None) -> None:
    """A sweep trial without training (same signature as ``sweeps.trainable.handpose_trial``):
    its config, ``config.yaml``, ``metrics.jsonl`` and Aim run (``handpose.tracking.Tracker``)
    as a real trial has them, a synthetic curve reported at every validation with a small
    checkpoint (step + Aim hash, resumed from like a real one)."""
    from omegaconf import OmegaConf
    from ray import tune

    from handpose.tracking import Tracker
    from sweeps.spec import trial_config

    cfg = trial_config(base, config)
    ctx = tune.get_context()
    cfg.GENERAL.run_name = ctx.get_trial_name()
    cfg.AIM.experiment = ctx.get_experiment_name()
    run_dir = (
        Path(runs_dir) / ctx.get_trial_name() if runs_dir else Path(ctx.get_trial_dir()) / "run"
    )
    run_dir.mkdir(parents=True, exist_ok=True)
    g = cfg.GENERAL
    val_every, pace = g.val_step or g.checkpoint_step, float(os.environ.get(PACE_ENV, "0"))
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
    try:
        for step, mpjpe in _curve(config, g.total_step, val_every):
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
                checkpoint=tune.Checkpoint.from_directory(str(ckpt)),
            )
            shutil.rmtree(ckpt, ignore_errors=True)  # Tune holds its copy now
    finally:
        tracker.close()


class _Timer:
    """Calls, wall seconds and driver CPU seconds of the wrapped methods, by name."""

    def __init__(self) -> None:
        self.stats: dict[str, dict[str, float]] = {}

    def wrap(self, owner: Any, attr: str, name: str, after: Any = None) -> None:
        inner = getattr(owner, attr)
        timer = self

        def wrapped(*args: Any, **kwargs: Any) -> Any:
            w0, c0 = time.perf_counter(), time.process_time()
            try:
                return inner(*args, **kwargs)
            finally:
                s = timer.stats.setdefault(name, {"calls": 0, "wall_s": 0.0, "cpu_s": 0.0})
                s["calls"] += 1
                s["wall_s"] += time.perf_counter() - w0
                s["cpu_s"] += time.process_time() - c0
                if after is not None:
                    after(s, *args)

        setattr(owner, attr, wrapped)


def driver(stats_path: Path, sweep_argv: list[str]) -> int:
    """The sweep CLI with :func:`scripted_trial`, its parts timed; writes ``stats_path``
    (and ``<stats_path>.done``: how many trials the searcher saw end, as they end)."""
    from ray import tune
    from ray.tune.execution.tune_controller import TuneController
    from ray.tune.search.optuna import OptunaSearch

    import sweeps.summary
    from sweeps import dropout_warmup
    from sweeps.scheduler import SweepASHA
    from sweeps.search import PruneAwareOptunaSearch

    timer = _Timer()
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
    for fn in ("finish", "collect_trials", "prune_checkpoints", "write_outputs", "close_and_index"):
        timer.wrap(sweeps.summary, fn, fn)
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


def _bytes(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.is_dir() else 0


def _launch(
    tmp: Path, tag: str, sweep_argv: list[str], pace: float, kill_at: int | None, cap: float
) -> dict[str, Any]:
    """Run one driver; kill its process group when ``kill_at`` trials ended (or at ``cap``
    seconds). -> wall seconds, how it ended, the driver's stats (None if killed)."""
    stats = tmp / f"{tag}.stats.json"
    log = open(tmp / f"{tag}.log", "w")  # noqa: SIM115 (closed below)
    cmd = [sys.executable, "-m", "benchmarks.sweep_scale", "driver", str(stats), "--", *sweep_argv]
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


def _check_sweep(sweep: Path, n: int) -> dict[str, Any]:
    """Duplicates and errors after a sweep: trials in summary.json, validation steps in each
    run's metrics.jsonl, Aim runs per trial, the study's trials by state."""
    import optuna
    from aim import Repo, Run

    from sweeps.search import study_storage

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
    names = [
        Run(h, repo=str(sweep), read_only=True).name
        for h in Repo.from_path(str(sweep)).list_all_runs()
    ]
    study = optuna.load_study(study_name=sweep.name, storage=study_storage(sweep))
    states: dict[str, int] = {}
    for t in study.get_trials(deepcopy=False):
        states[t.state.name] = states.get(t.state.name, 0) + 1
    by_status: dict[str, int] = {}
    for t in trials:
        by_status[t["status"]] = by_status.get(t["status"], 0) + 1
    return {
        "trials": len(trials),
        "expected": n,
        "duplicate_trial_ids": len(ids) - len(set(ids)),
        "by_status": by_status,
        "repeated_val_steps": repeated_steps,
        "aim_runs": len(names),
        "duplicate_aim_runs": len(names) - len(set(names)),
        "study_states": states,
        # Tune's trials: each once, all finished, none errored
        "clean": (
            len(trials) == n == len(set(ids)) and set(by_status) <= {"COMPLETED", "STOPPED_EARLY"}
        ),
        # their files: one Aim run per trial, no validation logged twice
        "files_clean": repeated_steps == 0 and len(names) == len(set(names)) == n,
    }


def measure(
    tmp: Path,
    n: int,
    spec: Path,
    overrides: list[str],
    pace: float,
    cap: float,
    resume: bool,
    address: str | None = None,
) -> dict[str, Any]:
    """One size: a full sweep (timed parts, report, sizes) and, if ``resume``, a sweep
    killed at half its trials and resumed."""
    storage = tmp / f"n{n}"
    common = [
        "--preset",
        PRESET,
        "--spec",
        str(spec),
        "--storage",
        str(storage),
        *(["--address", address] if address else []),
    ]
    run = _launch(
        tmp,
        f"full-{n}",
        [*common, "--num-samples", str(n), "--name", "full", *overrides],
        pace,
        None,
        cap,
    )
    row: dict[str, Any] = {"trials": n, "wall_s": run["wall_s"], "how": run["how"]}
    d = run["driver"]
    sweep = storage / "full"
    if d is None or not (sweep / "summary.json").is_file():
        return {
            **row,
            "error": f"driver {run['how']} (rc {run['returncode']}), see {tmp}/full-{n}.log",
        }
    summary = json.loads((sweep / "summary.json").read_text())
    results = sum(len(t["curve"]) for t in summary["trials"])
    last_end = max(p.stat().st_mtime for p in sweep.glob("runs/*/metrics.jsonl"))
    t0 = time.perf_counter()
    rep = subprocess.run(
        [sys.executable, "-m", "sweeps.report", str(sweep)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    report_s = time.perf_counter() - t0
    parts = d["parts"]
    fit = parts.get("fit", {})
    row.update(
        exit_code=d["exit_code"],
        results=results,
        driver_cpu_s=d["cpu_s"],
        driver_cpu_s_per_trial=d["cpu_s"] / n,
        results_per_s=results / fit["wall_s"] if fit.get("wall_s") else None,
        fit_s=fit.get("wall_s"),
        fit_cpu_s=fit.get("cpu_s"),
        last_trial_end_to_summary_s=(sweep / "summary.json").stat().st_mtime - last_end,
        finish_s=parts["finish"]["wall_s"],
        report_s=report_s,
        report_rc=rep.returncode,
        summary_plus_report_s=parts["finish"]["wall_s"] + report_s,
        journal_bytes=_bytes(sweep / "optuna.journal"),
        aim_bytes=_bytes(sweep / ".aim"),
        tune_state_bytes=parts.get("tune_state_snapshot", {}).get("last_bytes"),
        sweep_bytes=_bytes(sweep),
        peak_rss_mb=d["peak_rss_mb"],
        by_status=_check_sweep(sweep, n)["by_status"],
        parts={k: {kk: round(vv, 4) for kk, vv in v.items()} for k, v in parts.items()},
    )
    if rep.returncode:
        row["report_error"] = (rep.stdout + rep.stderr)[-1000:]
    if resume:
        name = "killed"
        argv = [*common, "--num-samples", str(n), "--name", name, *overrides]
        killed = _launch(tmp, f"kill-{n}", argv, pace, max(1, n // 2), cap)
        res = _launch(tmp, f"resume-{n}", [*common, "--resume", "--name", name], pace, None, cap)
        rd = res["driver"]
        row["resume"] = {
            "killed": killed["how"],
            "killed_at_s": killed["wall_s"],
            "resume_s": res["wall_s"],
            "resume_exit_code": None if rd is None else rd["exit_code"],
            "resume_driver_cpu_s": None if rd is None else rd["cpu_s"],
            "resume_log_tail": res["log_tail"],
            **(_check_sweep(storage / name, n) if rd is not None else {"clean": False}),
        }
    return row


def slope(xs: list[float], ys: list[float | None]) -> float | None:
    """Least-squares slope of log(y) on log(x) (None with fewer than 2 positive points)."""
    pts = [
        (math.log(x), math.log(y)) for x, y in zip(xs, ys, strict=True) if y is not None and y > 0
    ]
    if len(pts) < 2:
        return None
    mx = sum(p[0] for p in pts) / len(pts)
    my = sum(p[1] for p in pts) / len(pts)
    den = sum((p[0] - mx) ** 2 for p in pts)
    return sum((p[0] - mx) * (p[1] - my) for p in pts) / den if den else None


GROWTH = (
    "driver_cpu_s",
    "fit_cpu_s",
    "fit_s",
    "last_trial_end_to_summary_s",
    "finish_s",
    "report_s",
    "journal_bytes",
    "aim_bytes",
    "tune_state_bytes",
    "peak_rss_mb",
)
PART_GROWTH = (
    "tune_state_snapshot",
    "scheduler_save",
    "searcher_suggest",
    "searcher_save",
    "searcher_on_result",
    "live_table",
    "collect_trials",
    "close_and_index",
)


def growth(rows: list[dict[str, Any]]) -> dict[str, float | None]:
    """Exponent k of total ~ trials^k per metric (1: linear) and per timed driver part."""
    ok = [r for r in rows if "error" not in r]
    xs = [float(r["trials"]) for r in ok]
    out = {k: slope(xs, [r.get(k) for r in ok]) for k in GROWTH}
    resumed = [r for r in ok if r.get("resume", {}).get("resume_exit_code") == 0]
    out["resume_s"] = slope(
        [float(r["trials"]) for r in resumed], [r["resume"]["resume_s"] for r in resumed]
    )
    for part in PART_GROWTH:
        out[f"{part}_cpu_s"] = slope(xs, [r["parts"].get(part, {}).get("cpu_s") for r in ok])
    return out


def _sizes(text: str) -> list[int]:
    try:
        sizes = sorted({int(s) for s in text.split(",") if s.strip()})
    except ValueError:
        raise UserError(f"sizes {text!r}: want comma-separated integers") from None
    if not sizes or sizes[0] < 2:
        raise UserError(f"sizes {text!r}: want integers >= 2")
    return sizes


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["driver"]:  # the driver subprocess: driver STATS -- SWEEP ARGS
        return driver(Path(argv[1]), argv[3:])
    p = base_parser(NAME, __doc__)
    p.add_argument("--sizes", default="10,100,1000", help="numbers of trials")
    p.add_argument(
        "--resume-sizes",
        default="10,100",
        help="sizes also measured with a SIGKILL at 50%% and --resume ('' none)",
    )
    p.add_argument("--cpu", type=float, default=0.05, help="CPUs per trial")
    p.add_argument("--max-concurrent", type=int, default=40, help="trials at a time")
    p.add_argument("--validations", type=int, default=8, help="validations per full trial")
    p.add_argument(
        "--keep-checkpoints",
        type=int,
        default=1,
        help="the spec's keep_checkpoints (Tune's num_to_keep; the repo's: 1)",
    )
    p.add_argument("--pace", type=float, default=0.3, help="seconds per scripted validation")
    p.add_argument("--cap", type=float, default=900.0, help="wall cap per driver, s")
    p.add_argument("--address", help="run the drivers on this Ray (default: each starts one)")
    p.add_argument("--keep", type=Path, help="keep the sweep folders here (default: a temp)")
    args = p.parse_args(argv)
    sizes, resume_sizes = (
        _sizes(args.sizes),
        (_sizes(args.resume_sizes) if args.resume_sizes else []),
    )
    if args.toy:
        sizes, resume_sizes, args.pace, args.validations = [4], [4], 0.0, 4
    if args.cpu <= 0 or args.max_concurrent < 1 or args.validations < 4 or args.cap <= 0:
        raise UserError("--cpu, --cap must be > 0, --max-concurrent >= 1, --validations >= 4")
    machine = machine_info()
    val_every, total = 10, 10 * args.validations
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp_name:
        tmp = args.keep.resolve() if args.keep else Path(tmp_name)
        tmp.mkdir(parents=True, exist_ok=True)
        overrides = [
            *synthetic_overrides(args.data, tmp, 64, 32),
            f"GENERAL.total_step={total}",
            f"GENERAL.val_step={val_every}",
            f"GENERAL.checkpoint_step={val_every}",
            f"GENERAL.log_step={val_every}",
            f"GENERAL.dropout_warmup_step={val_every}",
            "TRAIN.warmup_step=5",
        ]
        spec = write_spec(tmp / "spec.yaml", PRESET, grace_period=2 * val_every)
        _widen(spec, args.cpu, args.max_concurrent, args.keep_checkpoints)
        for n in sizes:
            print(f"--- {n} trials", flush=True)
            rows.append(
                measure(
                    tmp, n, spec, overrides, args.pace, args.cap, n in resume_sizes, args.address
                )
            )
            print(json.dumps({k: v for k, v in rows[-1].items() if k != "parts"}), flush=True)
    exps = growth(rows)
    ok = [r for r in rows if "error" not in r]
    print(
        "\n" + "no size finished"
        if not ok
        else "\n"
        + format_table(
            [
                "trials",
                "drv_cpu_s/trial",
                "results/s",
                "end->summary_s",
                "finish_s",
                "report_s",
                "journal_kB",
                "aim_MB",
                "tune_state_kB",
                "peak_rss_MB",
                "resume_s",
                "resume_clean",
            ],
            [
                [
                    r["trials"],
                    r["driver_cpu_s_per_trial"],
                    r["results_per_s"],
                    r["last_trial_end_to_summary_s"],
                    r["finish_s"],
                    r["report_s"],
                    r["journal_bytes"] / 1e3,
                    r["aim_bytes"] / 1e6,
                    (r["tune_state_bytes"] or 0) / 1e3,
                    r["peak_rss_mb"],
                    r.get("resume", {}).get("resume_s"),
                    r.get("resume", {}).get("clean"),
                ]
                for r in ok
            ],
        )
    )
    print(
        "\ngrowth exponents (total ~ trials^k):",
        ", ".join(f"{k} {v:.2f}" for k, v in exps.items() if v is not None),
    )
    largest = ok[-1] if ok else None
    targets = (
        None
        if largest is None
        else {
            "at_trials": largest["trials"],
            "driver_cpu_s_per_trial_le_0.5": largest["driver_cpu_s_per_trial"] <= 0.5,
            "summary_plus_report_le_60s": largest["summary_plus_report_s"] <= 60.0,
            "resume_clean": all(r["resume"]["clean"] for r in ok if "resume" in r),
            "nothing_superlinear": all(v is None or v <= 1.15 for v in exps.values()),
        }
    )
    print(f"targets: {targets}")
    write_results(
        args.out,
        NAME,
        args,
        machine,
        {
            "setup": {
                "preset": PRESET,
                "cpu_per_trial": args.cpu,
                "max_concurrent": args.max_concurrent,
                "total_step": total,
                "keep_checkpoints": args.keep_checkpoints,
                "val_every": val_every,
                "grace_period": 2 * val_every,
                "pace_s": args.pace,
            },
            "sizes": rows,
            "growth_exponents": exps,
            "targets": targets,
        },
    )
    return 0 if len(ok) == len(rows) and all(r["exit_code"] == 0 for r in ok) else 1


def _widen(spec: Path, cpu: float, max_concurrent: int, keep: int) -> None:
    """The spec's preset with ``cpu`` CPUs per trial, ``max_concurrent`` at a time and
    ``keep`` checkpoints per trial."""
    from omegaconf import OmegaConf

    raw = OmegaConf.load(spec)
    raw.presets[PRESET].resources = {"cpu": cpu, "gpu": 0}
    raw.presets[PRESET].max_concurrent = max_concurrent
    raw.presets[PRESET].keep_checkpoints = keep
    OmegaConf.save(raw, spec)


if __name__ == "__main__":
    run_cli(main)
