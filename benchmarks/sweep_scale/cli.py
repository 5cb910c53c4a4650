"""How the sweep layer's cost grows with the number of trials (10, 100, 1000).

    python -m benchmarks.sweep_scale [--sizes 10,100,1000] [--resume-sizes 10,100]
        [--cpu 0.05] [--max-concurrent 40] [--pace 0.3] [--keep-checkpoints K] [--cap 900]

Runs the real sweep path (``sweeps.dropout_warmup.main``: the prune-aware Optuna searcher
over its journal, the schedule-aware ASHA with its state file, Tune's experiment state, one
Aim run per trial in the sweep's repo, ``summary.json``) with a scripted trial in place of
training (``driver.py``): it reports a synthetic MPJPE curve, deterministic from the
searched values, with a checkpoint at every validation. The driver runs as a subprocess of
this script; it times its own parts (Tune's state snapshots, the scheduler's saves, the
searcher, the summary) and writes them with its rusage (children excluded) at the end. Then
``python -m sweeps.report`` is timed on the sweep folder. For the sizes in
``--resume-sizes`` a second sweep is SIGKILLed (driver and its local Ray) when half its
trials have finished, then resumed with ``--resume``; the resumed sweep is checked for
duplicate and errored trials. Growth exponents are log-log slopes over the sizes.
"""

from __future__ import annotations

import json
import math
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
from benchmarks.sweep_scale.driver import bytes_of, check_sweep, launch
from handpose.errors import UserError

NAME = "sweep_scale"
PRESET = "cpu"


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
    run = launch(
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
        journal_bytes=bytes_of(sweep / "optuna.journal"),
        aim_bytes=bytes_of(sweep / ".aim"),
        tune_state_bytes=parts.get("tune_state_snapshot", {}).get("last_bytes"),
        sweep_bytes=bytes_of(sweep),
        peak_rss_mb=d["peak_rss_mb"],
        by_status=check_sweep(sweep, n)["by_status"],
        parts={k: {kk: round(vv, 4) for kk, vv in v.items()} for k, v in parts.items()},
    )
    if rep.returncode:
        row["report_error"] = (rep.stdout + rep.stderr)[-1000:]
    if resume:
        name = "killed"
        argv = [*common, "--num-samples", str(n), "--name", name, *overrides]
        killed = launch(tmp, f"kill-{n}", argv, pace, max(1, n // 2), cap)
        res = launch(tmp, f"resume-{n}", [*common, "--resume", "--name", name], pace, None, cap)
        rd = res["driver"]
        row["resume"] = {
            "killed": killed["how"],
            "killed_at_s": killed["wall_s"],
            "resume_s": res["wall_s"],
            "resume_exit_code": None if rd is None else rd["exit_code"],
            "resume_driver_cpu_s": None if rd is None else rd["cpu_s"],
            "resume_log_tail": res["log_tail"],
            **(check_sweep(storage / name, n) if rd is not None else {"clean": False}),
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
    p = base_parser(NAME, __doc__, prog="python -m benchmarks.sweep_scale")
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
        help="the spec's keep_checkpoints (Tune's num_to_keep; default: the repo's)",
    )
    p.add_argument(
        "--checkpoint-interval-s",
        type=float,
        help="the spec's checkpoint_interval_s (0: every validation; default: the repo's)",
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
        kept = _widen(
            spec, args.cpu, args.max_concurrent, args.keep_checkpoints, args.checkpoint_interval_s
        )
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
                **kept,
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


def _widen(
    spec: Path, cpu: float, max_concurrent: int, keep: int | None, interval_s: float | None
) -> dict[str, Any]:
    """The spec's preset with ``cpu`` CPUs per trial, ``max_concurrent`` at a time, ``keep``
    checkpoints per trial and a checkpoint handed at most every ``interval_s`` (None: the
    repo's defaults); -> its keep_checkpoints and checkpoint_interval_s."""
    from omegaconf import OmegaConf

    from sweeps.run.spec import PresetCfg

    raw = OmegaConf.load(spec)
    preset = raw.presets[PRESET]
    preset.resources = {"cpu": cpu, "gpu": 0}
    preset.max_concurrent = max_concurrent
    if keep is not None:
        preset.keep_checkpoints = keep
    if interval_s is not None:
        preset.checkpoint_interval_s = interval_s
    OmegaConf.save(raw, spec)
    return {
        k: preset.get(k, getattr(PresetCfg, k))
        for k in ("keep_checkpoints", "checkpoint_interval_s")
    }
