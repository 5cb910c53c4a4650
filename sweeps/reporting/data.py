"""Loading a sweep folder and plain training run folders into comparable entries and tables.

A sweep folder has ``summary.json`` (written at the end of ``sweeps/dropout_warmup.py``); a
training run folder has ``metrics.jsonl``. Every sweep trial and every run becomes one
:class:`Entry`; the table functions turn entries into lists of row dicts (CSV/HTML/JSON).
MPJPE values are millimetres throughout.
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from handpose.errors import UserError
from handpose.schedules import dropout_target_step, get_progressive_dropout
from handpose.tracking import load_metrics, read_jsonl
from sweeps.results.fidelity import value_at
from sweeps.results.trials import COMPLETED, UNFINISHED, finite

FINAL_KEYS = ("mpjpe", "mpjpe_rel", "pa_mpjpe", "rte")
IGNORED_CONFIG_KEYS = ("GENERAL.run_name", "GENERAL.output_dir")  # differ between any two runs


@dataclass
class Entry:
    """One sweep trial or one plain training run: a row of every table, a line in the plots."""

    id: str
    kind: str  # "trial" (of the sweep) or "run" (a training run folder)
    status: str  # COMPLETED, STOPPED_EARLY, ERROR, ... (trials); COMPLETED or UNFINISHED (runs)
    params: dict[str, Any]  # searched values (trials) or config values that differ (runs)
    final: dict[str, Any]  # last_step, mpjpe, mpjpe_rel, pa_mpjpe, rte, val_fingerprint
    run_dir: Path | None = None
    train: list[dict[str, Any]] = field(default_factory=list)  # metrics.jsonl train lines
    val: list[dict[str, Any]] = field(default_factory=list)  # metrics.jsonl val lines
    timeline: list[dict[str, Any]] = field(default_factory=list)  # Ray result.json reports
    summary_curve: list[tuple[int, float]] = field(default_factory=list)
    error: str | None = None
    config: dict[str, Any] = field(default_factory=dict)  # flat config.yaml of its run folder
    baseline: bool = False  # the trial of the base config's own values (full budget)
    sentinel: bool = False  # ran the full budget whatever ASHA said (fidelity check)

    @property
    def role(self) -> str:
        """ "baseline", "sentinel" or "" (what the leaderboard's role column says)."""
        return "baseline" if self.baseline else "sentinel" if self.sentinel else ""

    def curve(self) -> list[tuple[int, float]]:
        """Validation MPJPE (mm) by step: from ``metrics.jsonl``, else from ``summary.json``."""
        points = [(int(r["step"]), finite(r.get("mpjpe"))) for r in self.val]
        points = [(s, v) for s, v in points if v is not None]
        return points or self.summary_curve

    def series(self, split: str, key: str) -> list[tuple[int, float]]:
        """``key`` by step from the ``split`` ("train" or "val") lines, finite values only."""
        rows = self.train if split == "train" else self.val
        points = [(int(r["step"]), finite(r.get(key))) for r in rows]
        return [(s, v) for s, v in points if v is not None]


@dataclass
class Sweep:
    """A sweep folder: its ``summary.json`` and, if present, ``confirm.json``."""

    dir: Path
    summary: dict[str, Any]
    confirm: dict[str, Any] | None


@dataclass
class ReportData:
    """Everything the report shows: the sweep (if any) and the entries, ranked."""

    sweep: Sweep | None
    entries: list[Entry]
    param_keys: list[str]


def flat_config(run_dir: Path) -> dict[str, Any]:
    """``run_dir/config.yaml`` as ``{"GENERAL.total_step": 60, ...}`` (empty if missing)."""
    path = run_dir / "config.yaml"
    if not path.is_file():
        return {}
    out: dict[str, Any] = {}

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, f"{prefix}{k}.")
        else:
            out[prefix[:-1]] = node

    walk(OmegaConf.to_container(OmegaConf.load(path), resolve=False), "")
    return out


def _local(path: str | None, *candidates: Path) -> Path | None:
    """``path`` if it exists here, else the first existing candidate (a moved sweep folder)."""
    if path and Path(path).is_dir():
        return Path(path)
    return next((c for c in candidates if c.is_dir()), None)


def load_sweep_entries(sweep_dir: Path) -> tuple[Sweep, list[Entry]]:
    """The sweep and one entry per trial, with its run folder's metrics and Ray timeline."""
    try:
        summary = json.loads((sweep_dir / "summary.json").read_text())
        trials = summary["trials"]
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise UserError(f"{sweep_dir / 'summary.json'}: unreadable ({e})") from None
    confirm = None
    if (sweep_dir / "confirm.json").is_file():
        try:
            confirm = json.loads((sweep_dir / "confirm.json").read_text())
        except json.JSONDecodeError:
            warnings.warn(f"{sweep_dir / 'confirm.json'}: not valid JSON, ignored", stacklevel=2)
    entries = []
    for t in trials:
        trial_dir = _local(t.get("path"), sweep_dir / Path(t.get("path") or "-").name)
        run_name = Path(t.get("run_dir") or "-").name
        run_dir = _local(
            t.get("run_dir"),
            sweep_dir / "runs" / run_name,
            *([trial_dir / "run"] if trial_dir else []),
        )
        train, val = load_metrics(run_dir) if run_dir else ([], [])
        timeline = (
            read_jsonl(trial_dir / "result.json")
            if trial_dir and (trial_dir / "result.json").is_file()
            else []
        )
        final = {k: finite(t.get(k)) for k in FINAL_KEYS}
        final.update(last_step=t.get("last_step"), val_fingerprint=t.get("val_fingerprint"))
        entries.append(
            Entry(
                id=str(t["trial_id"]),
                kind="trial",
                status=str(t.get("status", "UNKNOWN")),
                params=dict(t.get("overrides") or {}),
                final=final,
                run_dir=run_dir,
                train=train,
                val=val,
                timeline=timeline,
                config=flat_config(run_dir) if run_dir else {},
                error=t.get("error"),
                baseline=bool(t.get("baseline")),
                sentinel=bool(t.get("sentinel")),
                summary_curve=[
                    (int(s), float(v)) for s, v in t.get("curve") or [] if finite(v) is not None
                ],
            )
        )
    return Sweep(sweep_dir, summary, confirm), entries


def load_run(run_dir: Path) -> tuple[Entry, dict[str, Any]]:
    """One training run folder as an entry (params filled in later) and its flat config."""
    train, val = load_metrics(run_dir)
    config = flat_config(run_dir)
    last = val[-1] if val else {}
    total = config.get("GENERAL.total_step")
    done = bool(val) and isinstance(total, int) and last["step"] >= total
    final = {k: finite(last.get(k)) for k in FINAL_KEYS}
    final.update(last_step=last.get("step"), val_fingerprint=last.get("val_fingerprint"))
    entry = Entry(
        id=run_dir.name,
        kind="run",
        status=COMPLETED if done else UNFINISHED,
        params={},
        final=final,
        run_dir=run_dir,
        train=train,
        val=val,
        config=config,
    )
    return entry, config


def classify(path: Path) -> str:
    """ "sweep" (has summary.json) or "run" (has metrics.jsonl); UserError otherwise."""
    if not path.is_dir():
        raise UserError(f"{path}: no such folder")
    if (path / "summary.json").is_file():
        return "sweep"
    if (path / "metrics.jsonl").is_file():
        return "run"
    raise UserError(
        f"{path}: neither a sweep folder (summary.json, written when the sweep "
        "ends) nor a training run folder (metrics.jsonl)"
    )


def load_report_data(paths: list[Path]) -> ReportData:
    """A sweep folder and/or training run folders, in any order, as ranked entries.

    Trials' params are their searched values; a run's params are, next to a sweep, its
    config values at the searched keys, and otherwise the config keys that differ between
    the runs.
    """
    kinds = [classify(p) for p in paths]
    if kinds.count("sweep") > 1:
        raise UserError("give at most one sweep folder (and any number of run folders)")
    sweep, entries = None, []
    if "sweep" in kinds:
        sweep, entries = load_sweep_entries(paths[kinds.index("sweep")])
    runs = [load_run(p) for p, k in zip(paths, kinds, strict=True) if k == "run"]
    keys = list(dict.fromkeys(k for e in entries for k in e.params))
    if sweep is None and len(runs) > 1:
        configs = [c for _, c in runs]
        keys = [
            k
            for k in dict.fromkeys(k for c in configs for k in c)
            if k not in IGNORED_CONFIG_KEYS
            and len({json.dumps(c.get(k), sort_keys=True, default=str) for c in configs}) > 1
        ]
    taken = {e.id for e in entries}
    for entry, config in runs:
        entry.params = {k: config.get(k) for k in keys}
        while entry.id in taken:
            entry.id += "'"
        taken.add(entry.id)
        entries.append(entry)
    if not entries:
        raise UserError(f"{paths[0]}: nothing to report (no trials, no runs)")
    entries.sort(key=lambda e: (e.final["mpjpe"] is None, e.final["mpjpe"] or 0.0))
    return ReportData(sweep, entries, keys)


def leaderboard(data: ReportData) -> list[dict[str, Any]]:
    """One row per entry, best final MPJPE first: final metrics and searched values."""
    rows = []
    for rank, e in enumerate(data.entries, 1):
        curve = e.curve()
        best = min(curve, key=lambda p: p[1]) if curve else (None, None)
        rows.append(
            {
                "rank": rank,
                "id": e.id,
                "kind": e.kind,
                "role": e.role,
                "status": e.status,
                "last_step": e.final["last_step"],
                "mpjpe": e.final["mpjpe"],
                "best_mpjpe": best[1],
                "best_step": best[0],
                **{k: e.final[k] for k in FINAL_KEYS[1:]},
                "val_fingerprint": e.final["val_fingerprint"],
                **{k: e.params.get(k) for k in data.param_keys},
                "error": e.error,
            }
        )
    return rows


def shared_steps(entries: list[Entry]) -> list[int]:
    """Every step at which at least one entry validated, ascending."""
    return sorted({s for e in entries for s, _ in e.curve()})


def mpjpe_at_steps(entries: list[Entry], steps: list[int]) -> list[dict[str, Any]]:
    """One row per entry: its validation MPJPE (mm) at each of ``steps`` (None: not there)."""
    rows = []
    for e in entries:
        at = dict(e.curve())
        rows.append({"id": e.id, "status": e.status, **{str(s): at.get(s) for s in steps}})
    return rows


def _std(values: list[float]) -> float | None:
    """Sample standard deviation (ddof=1); None for fewer than two values."""
    if len(values) < 2:
        return None
    mean = sum(values) / len(values)
    return math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def trial_stats(entries: list[Entry], window: int) -> list[dict[str, Any]]:
    """Per entry: spread of validation MPJPE over all validations and over the last
    ``window`` ones, and the generalisation gap (val minus train MPJPE, mm)."""
    rows = []
    for e in entries:
        values = [v for _, v in e.curve()]
        gaps = [v for _, v in e.series("val", "gap_mpjpe")]
        train = e.series("val", "train_mpjpe")
        rows.append(
            {
                "id": e.id,
                "status": e.status,
                "num_val": len(values),
                "mpjpe_final": values[-1] if values else None,
                "mpjpe_mean": sum(values) / len(values) if values else None,
                "mpjpe_std": _std(values),
                f"mpjpe_std_last{window}": _std(values[-window:]),
                "train_mpjpe_final": train[-1][1] if train else None,
                "gap_final": gaps[-1] if gaps else None,
                f"gap_mean_last{window}": (
                    sum(gaps[-window:]) / len(gaps[-window:]) if gaps else None
                ),
            }
        )
    return rows


def best_so_far(entries: list[Entry], total_step: int | None) -> dict[str, Any]:
    """The sweep's best MPJPE (mm) over time, by the rule of "best" everywhere else: the final
    MPJPE of a trial that ran the full budget (``total_step``). One point each time such a
    trial finished (its last Ray report), with the wall time since the sweep started (s) and
    the training steps all trials had run by then; ``end_wall_s`` and ``end_total_steps``:
    the sweep's last report. Empty points when no trial with Ray results ran the full
    budget."""
    events = [
        (r["timestamp"], e, r)
        for e in entries
        for r in e.timeline
        if finite(r.get("timestamp")) is not None and isinstance(r.get("step"), int)
    ]
    out: dict[str, Any] = {"points": [], "end_wall_s": None, "end_total_steps": None}
    if not events or total_step is None:
        return out
    events.sort(key=lambda ev: ev[0])
    start = min(ev[0] - (finite(ev[2].get("time_total_s")) or 0.0) for ev in events)
    last_step: dict[str, int] = {}
    total, best = 0, math.inf
    for ts, e, r in events:
        total += max(0, r["step"] - last_step.get(e.id, 0))
        last_step[e.id] = r["step"]
        final = finite(r.get("mpjpe"))
        if e.status == COMPLETED and r["step"] >= total_step and final is not None:
            best = min(best, final)
            out["points"].append(
                {
                    "wall_s": ts - start,
                    "total_steps": total,
                    "best_mpjpe": best,
                    "trial_id": e.id,
                    "final_mpjpe": final,
                }
            )
    out.update(end_wall_s=events[-1][0] - start, end_total_steps=total)
    return out


def dropout_schedule(e: Entry, total_step: int | None) -> list[tuple[int, float]]:
    """The entry's decoder dropout rate by step, exactly (``handpose.schedules``): a point at
    step 0, at every step from the warmup to the target step, and at the last step; between
    points the rate holds (draw as steps-post). From its searched values over its run's
    ``config.yaml``; empty when neither gives the warmup step and the target rate."""
    cfg = {**e.config, **{k: v for k, v in e.params.items() if v is not None}}
    warmup, target = cfg.get("GENERAL.dropout_warmup_step"), cfg.get("MODEL.handec.dropout")
    last = cfg.get("GENERAL.total_step") or total_step
    if not isinstance(warmup, int) or not isinstance(target, (int, float)) or not last:
        return []
    schedule, ramp = (
        cfg.get("GENERAL.dropout_schedule") or "step",
        cfg.get("GENERAL.dropout_ramp_step") or 0,
    )
    end = dropout_target_step(warmup, schedule, ramp)
    steps = sorted({0, *range(min(warmup, last), min(end, last) + 1), last})
    return [(s, get_progressive_dropout(s, warmup, target, schedule, ramp)) for s in steps]


def fidelity_points(
    entries: list[Entry], rungs: list[int], total_step: int | None
) -> list[dict[str, Any]]:
    """One row per trial that ran the full budget: its MPJPE (mm) at each rung before the
    budget (the first validation at or after it, the value ASHA compares there, as the
    summary's correlation uses) and its final MPJPE."""
    steps = [s for s in rungs if total_step is None or s < total_step]
    rows = []
    for e in entries:
        if e.kind != "trial" or e.status != COMPLETED or e.final["mpjpe"] is None:
            continue
        curve = [[s, v] for s, v in e.curve()]
        rows.append(
            {
                "id": e.id,
                "role": e.role,
                "final": e.final["mpjpe"],
                **{str(s): value_at(curve, s) for s in steps},
            }
        )
    return rows
