"""The replay's parts (``cli``): recorded full-budget curves, the scripted toy pool, one sweep
replayed through ``SweepASHA`` and the constant-budget baseline. No Ray cluster: only the
scheduler's decision code runs.
"""

from __future__ import annotations

import json
import random
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from handpose.errors import UserError
from sweeps.results.fidelity import value_at
from sweeps.run.rungs import ReadyStep
from sweeps.run.scheduler import SweepASHA

WARMUP, RATE = "GENERAL.dropout_warmup_step", "MODEL.handec.dropout"


@dataclass(frozen=True)
class Curve:
    """One full-budget trial: its searched values and its validation MPJPE (mm) by step."""

    name: str
    config: dict[str, Any]
    points: list[tuple[int, float]]
    baseline: bool = False

    @property
    def final(self) -> float:
        return self.points[-1][1]


@dataclass(frozen=True)
class Setting:
    """One scheduler setting: the schedule-aware rule, ASHA's reduction factor and grace
    period (steps)."""

    aware: bool
    reduction_factor: float
    grace: int

    @property
    def name(self) -> str:
        return f"{'aware' if self.aware else 'plain'} rf{self.reduction_factor:g} g{self.grace}"


class _Trial:
    """What SweepASHA reads of a Tune trial."""

    def __init__(self, trial_id: str, config: dict[str, Any]) -> None:
        self.trial_id, self.config = trial_id, config


def pool_from_trials(trials: list[dict[str, Any]], total_step: int) -> list[Curve]:
    """Full-budget trials (``summary.json`` trial dicts) as curves, one per distinct config."""
    pool: dict[str, Curve] = {}
    for t in trials:
        points = [(int(s), v) for s, v in t["curve"]]
        if t["last_step"] < total_step or not points or any(v is None for _, v in points):
            continue
        key = json.dumps(t["overrides"], sort_keys=True)
        if key not in pool:
            pool[key] = Curve(t["trial_id"], t["overrides"], points, bool(t.get("baseline")))
    return list(pool.values())


def load_pool(path: Path) -> tuple[list[Curve], int, list[str]]:
    """The curves of a sweep folder, its ``summary.json`` or a ``sweep_efficiency`` JSON; the
    full budget (steps); the recorded config overrides (``sweep_efficiency``'s setup)."""
    if path.is_dir():
        path = path / "summary.json"
    if not path.is_file():
        raise UserError(f"{path}: no such file (a sweep folder, summary.json or results JSON)")
    data = json.loads(path.read_text())
    if "trials" in data:
        total, trials = data["total_step"], data["trials"]
        overrides = [f"GENERAL.total_step={total}"]
    elif "runs" in data:
        overrides = [o for o in data["setup"]["overrides"] if not o.startswith("DATA.")]
        total = next(int(o.split("=")[1]) for o in overrides if o.startswith("GENERAL.total_"))
        trials = [t for r in data["runs"] for t in r.get("trial_results", [])]
    else:
        raise UserError(f"{path}: neither a summary.json (trials) nor a results JSON (runs)")
    pool = pool_from_trials(trials, total)
    if len(pool) < 3:
        raise UserError(f"{path}: {len(pool)} full-budget curves; a replay needs at least 3")
    return pool, total, overrides


def toy_pool() -> list[Curve]:
    """Scripted curves, budget 8, validation every 2 steps. ``slow`` (the winner at full
    budget): its dropout switches on at step 3 and costs it at step 4, then it learns fastest.
    ``f1``-``f4``: no dropout, smooth; ``early``: dropout on from step 0, never catches up."""

    def curve(name: str, warmup: int, rate: float, values: list[float]) -> Curve:
        return Curve(
            name, {WARMUP: warmup, RATE: rate}, list(zip((2, 4, 6, 8), values, strict=True))
        )

    return [
        curve("f1", 0, 0.0, [6.0, 4.5, 4.0, 3.8]),
        curve("f2", 0, 0.0, [6.5, 5.0, 4.6, 4.4]),
        curve("f3", 0, 0.0, [7.0, 5.5, 5.2, 5.0]),
        curve("f4", 0, 0.0, [8.0, 6.0, 5.8, 5.6]),
        curve("early", 0, 0.2, [9.0, 7.5, 6.5, 6.0]),
        curve("slow", 3, 0.3, [5.0, 7.0, 4.0, 3.5]),
    ]


def replay(
    order: list[Curve],
    setting: Setting,
    ready: ReadyStep,
    total_step: int,
    concurrency: int,
    sentinels: set[int],
) -> dict[str, Any]:
    """Feed ``order``'s curves through SweepASHA with ``concurrency`` trials at a time (one
    validation per trial per tick); -> steps trained, best final MPJPE (mm), stops."""
    with tempfile.TemporaryDirectory(prefix="replay-") as tmp:
        sched = SweepASHA(
            ready_step=ready if setting.aware else None,
            sentinels=sentinels,
            state_path=Path(tmp) / "scheduler_state.jsonl",
            val_every=ready.val_every,
            metric="mpjpe",
            mode="min",
            time_attr="step",
            max_t=total_step,
            grace_period=setting.grace,
            reduction_factor=setting.reduction_factor,
            stop_last_trials=False,
        )
        waiting = list(enumerate(order))[::-1]
        running: list[tuple[_Trial, Curve, int]] = []  # trial, curve, next validation
        ended: dict[str, tuple[int, float]] = {}  # name -> (last step, its MPJPE)
        while waiting or running:
            while waiting and len(running) < concurrency:
                i, c = waiting.pop()
                trial = _Trial(f"t{i}", dict(c.config))
                sched.on_trial_add(None, trial)
                running.append((trial, c, 0))
            still = []
            for trial, c, pos in running:
                step, value = c.points[pos]
                result = {"step": step, "mpjpe": value}
                action = sched.on_trial_result(None, trial, result)
                if action == SweepASHA.STOP or step >= total_step:
                    sched.on_trial_complete(None, trial, result)
                    ended[c.name] = (step, value)
                else:
                    still.append((trial, c, pos + 1))
            running = still
    full = [v for s, v in ended.values() if s >= total_step]
    return {
        "steps": sum(s for s, _ in ended.values()),
        "best": min(full),
        "completed": len(full),
        "stopped": {n: s for n, (s, _) in ended.items() if s < total_step},
    }


def constant_budget(curves: list[Curve], b: int, k: int, total_step: int) -> dict[str, Any]:
    """Egele et al.'s baseline: every trial to ``b`` steps, the ``k`` best MPJPE at ``b`` to
    the full budget; -> steps trained and the best final MPJPE (mm) among the k."""
    k = min(k, len(curves))
    kept = sorted(curves, key=lambda c: value_at(c.points, b))[:k]
    return {
        "steps": len(curves) * b + k * (total_step - b),
        "best": min(c.final for c in kept),
        "kept": [c.name for c in kept],
    }


def draw(pool: list[Curve], trials: int, seed: int) -> list[Curve]:
    """A seed's trial order: ``trials`` pool curves sampled without replacement, the baseline
    (if the pool marks one) first."""
    rng = random.Random(seed)
    base = [c for c in pool if c.baseline][:1]
    rest = [c for c in pool if c not in base]
    return base + rng.sample(rest, trials - len(base))


def at_rung(points: list[tuple[int, float]], step: int) -> float:
    """The MPJPE (mm) ASHA compares at a rung at ``step``: the first validation at or after it
    (as ``sweeps.results.fidelity.value_at``, which also skips None)."""
    return next(v for s, v in points if s >= step)


def validation_steps(pool: list[Curve]) -> list[int]:
    """The steps every curve of the pool validated at (one recipe: the same for all)."""
    steps = [s for s, _ in pool[0].points]
    if any([s for s, _ in c.points] != steps for c in pool):
        raise UserError("the pool's curves validate at different steps: not one recipe")
    return steps
