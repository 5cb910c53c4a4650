"""The report's reading of a sweep's Optuna study: hyperparameter importance with a bootstrap
interval, and which searched keys are searched on a log scale.

The study is ``<sweep>/optuna.journal`` (``sweeps.run.study_file.STUDY_FILE``, an Optuna
``JournalStorage`` file), named after the sweep folder. Nothing here raises on a missing or
broken study: the report says why there is no importance instead.
"""

from __future__ import annotations

import copy
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState

from handpose.errors import first_line
from sweeps.run.state import STATE_FILE, read_state
from sweeps.run.study_file import STUDY_FILE, study_storage

MIN_FINISHED = 8  # trials importance needs: full-budget ones, else ones at a shared step
RESAMPLES = 200  # bootstrap resamples at most ...
RESAMPLE_TRIALS = 40_000  # ... and at most this many resampled trials in all (cost cap)
MIN_RESAMPLES = 50
QUANTILES = (5.0, 50.0, 95.0)  # the interval's ends and the median, percent


@dataclass
class Importance:
    """PED-ANOVA importance of each searched key (fractions summing to 1): on all complete
    trials, and the median and 5-95% interval over bootstrap resamples of them."""

    rows: list[dict[str, Any]] = field(default_factory=list)  # parameter, importance, ...
    n_finished: int = 0
    step: int | None = None  # None: of the final MPJPE; else of the MPJPE at this step
    n_trials: int = 0  # trials it rests on
    resamples: int = 0
    seconds: float = 0.0
    note: str = ""


class _ShallowTrial(FrozenTrial):
    """A complete trial that an in-memory study copies shallowly: the study deep-copies every
    trial it is given and then only sets its number and id, and those deep copies were most
    of a bootstrap resample's cost."""

    def __deepcopy__(self, memo: dict[int, Any]) -> _ShallowTrial:
        return copy.copy(self)

    @classmethod
    def of(cls, t: FrozenTrial, value: float) -> _ShallowTrial:
        return cls(
            number=0,
            state=TrialState.COMPLETE,
            value=value,
            datetime_start=t.datetime_start,
            datetime_complete=t.datetime_complete,
            params=t.params,
            distributions=t.distributions,
            user_attrs={},
            system_attrs={},
            intermediate_values={},
            trial_id=0,
        )


def open_study(sweep_dir: Path) -> tuple[optuna.Study | None, str]:
    """The sweep's Optuna study and, when there is none, why not (never raises)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    journal = sweep_dir / STUDY_FILE
    if not journal.is_file():
        return None, f"no Optuna study ({STUDY_FILE}) in {sweep_dir}"
    try:
        storage = study_storage(sweep_dir)
        names = optuna.get_all_study_names(storage)
        name = sweep_dir.name if sweep_dir.name in names else names[0] if len(names) == 1 else None
        if name is None:
            return None, f"{journal}: {len(names)} studies, none named {sweep_dir.name}"
        return optuna.load_study(study_name=name, storage=storage), f"study '{name}' ({journal})"
    except Exception as e:  # noqa: BLE001 - a torn journal, a read-only folder: say so, go on
        return None, f"{journal}: unreadable ({type(e).__name__}: {first_line(e)})"


def _ped_anova(trials: list[FrozenTrial]) -> dict[str, float]:
    """PED-ANOVA importances of ``trials`` (complete) in an in-memory study."""
    study = optuna.create_study(direction="minimize")
    study.add_trials(trials)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return optuna.importance.get_param_importances(
            study, evaluator=optuna.importance.PedAnovaImportanceEvaluator(), normalize=True
        )


def shared_step(trials: list[FrozenTrial], need: int) -> tuple[int, list[FrozenTrial]] | None:
    """The latest step at which at least ``need`` trials (any state) reported an MPJPE, and
    those trials; None when no step has that many."""
    at: dict[int, list[FrozenTrial]] = {}
    for t in trials:
        for step, v in t.intermediate_values.items():
            if v is not None and np.isfinite(v):
                at.setdefault(step, []).append(t)
    steps = [s for s, ts in at.items() if len(ts) >= need]
    return (max(steps), at[max(steps)]) if steps else None


def param_importance(study: optuna.Study | None, why_not: str, seed: int = 0) -> Importance:
    """Importance of each searched key, with a bootstrap: the trials resampled with
    replacement, PED-ANOVA on each resample. On the final MPJPE of the study's complete
    trials when at least ``MIN_FINISHED`` ran the full budget; else on the MPJPE at the
    latest step that ``MIN_FINISHED`` trials reached (:func:`shared_step`; a small sweep
    with ASHA rarely has 8 full-budget trials), and the note says so. Resamples:
    ``RESAMPLES``, fewer for big studies (at most ``RESAMPLE_TRIALS`` trials in all, at
    least ``MIN_RESAMPLES``): about 2 CPU-s for 393 complete of 1000 trials (docs/report.md)."""
    if study is None:
        return Importance(note=why_not)
    start = time.perf_counter()
    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None]
    n_pruned = sum(t.state == TrialState.PRUNED for t in trials)
    if study.direction != optuna.study.StudyDirection.MINIMIZE:
        return Importance(
            n_finished=len(complete),
            note="importance: the study maximizes; the report expects MPJPE (minimize)",
        )
    step, used = None, [(t, t.value) for t in complete]
    shared = shared_step(trials, MIN_FINISHED) if len(complete) < MIN_FINISHED else None
    if shared is not None:
        step, at = shared
        used = [(t, t.intermediate_values[step]) for t in at]
    if len(used) < MIN_FINISHED:
        return Importance(
            n_finished=len(complete),
            note=(
                f"too few trials for importance: {len(complete)} ran the full budget and no "
                f"validation step was reached by {MIN_FINISHED}, the least it needs"
            ),
        )
    slim = [_ShallowTrial.of(t, v) for t, v in used]
    full = _ped_anova(slim)
    n_boot = max(MIN_RESAMPLES, min(RESAMPLES, RESAMPLE_TRIALS // len(slim)))
    rng = np.random.default_rng(seed)
    boot = np.array(
        [
            [imp.get(k, 0.0) for k in full]
            for imp in (
                _ped_anova([slim[i] for i in rng.integers(0, len(slim), len(slim))])
                for _ in range(n_boot)
            )
        ]
    )
    p5, med, p95 = np.percentile(boot, QUANTILES, axis=0)
    rows = [
        {"parameter": k, "all_trials": v, "median": float(m), "p5": float(lo), "p95": float(hi)}
        for k, v, lo, m, hi in zip(full, full.values(), p5, med, p95, strict=True)
    ]
    rows.sort(key=lambda r: -r["median"])
    whiskers = (
        f"bars: median over {n_boot} bootstrap resamples of those trials, whiskers: 5-95% of "
        "the resamples; wide whiskers: the ranking is not settled"
    )
    if step is None:
        note = (
            f"PED-ANOVA (Optuna) on the final MPJPE of the {len(used)} trials that ran the full "
            f"budget (sentinels, the baseline and the trials ASHA kept; {n_pruned} stopped "
            f"early are not used); {whiskers}. ASHA chose the survivors, so the importance "
            "describes the region they cover."
        )
    else:
        note = (
            f"PED-ANOVA (Optuna) on the MPJPE at step {step}, the latest validation step "
            f"that {len(used)} trials reached: only {len(complete)} ran the full budget, fewer "
            f"than the {MIN_FINISHED} importance needs. It says which knob matters for MPJPE "
            f"at step {step}, not for the final MPJPE: how well early MPJPE ranks trials "
            f"like the final one is the fidelity check's rho. It rests on {len(used)} trials; "
            f"{whiskers}."
        )
    return Importance(
        rows, len(complete), step, len(used), n_boot, time.perf_counter() - start, note
    )


def log_keys(study: optuna.Study | None, sweep_dir: Path | None) -> set[str] | None:
    """The searched keys on a log scale (``log: true``): from the study's distributions,
    else from the sweep spec named in the sweep's state (``sweep_state.yaml``); None when
    neither is readable (the plots then use linear axes)."""
    if study is not None:
        dists: dict[str, Any] = {}
        for t in study.get_trials(deepcopy=False):
            dists.update(t.distributions)
        if dists:
            return {k for k, d in dists.items() if getattr(d, "log", False)}
    if sweep_dir is None or not (sweep_dir / STATE_FILE).is_file():
        return None
    try:
        from sweeps.run.spec import read_spec_file  # imports torch: only when needed

        state = read_state(sweep_dir)
        space = read_spec_file(state.spec).presets[state.preset].space
        return {k for k, p in space.items() if p.log}
    except Exception:  # noqa: BLE001 - a moved or edited spec: linear axes, no error
        return None
