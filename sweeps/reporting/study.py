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

MIN_FINISHED = 8  # fewer complete trials: no importance bars, a sentence instead
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
    def of(cls, t: FrozenTrial) -> _ShallowTrial:
        return cls(
            number=0,
            state=TrialState.COMPLETE,
            value=t.value,
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


def param_importance(study: optuna.Study | None, why_not: str, seed: int = 0) -> Importance:
    """Importance of each searched key over the study's complete trials, with a bootstrap:
    the complete trials resampled with replacement, PED-ANOVA on each resample. Resamples:
    ``RESAMPLES``, fewer for big studies (at most ``RESAMPLE_TRIALS`` trials in all, at
    least ``MIN_RESAMPLES``): about 2 CPU-s for 393 complete of 1000 trials (docs/report.md)."""
    if study is None:
        return Importance(note=why_not)
    start = time.perf_counter()
    states = [t.state for t in study.get_trials(deepcopy=False)]
    complete = [
        t
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if t.value is not None
    ]
    n_pruned = states.count(TrialState.PRUNED)
    if len(complete) < MIN_FINISHED:
        return Importance(
            n_finished=len(complete),
            note=(
                f"too few finished trials ({len(complete)}) for importance: it needs at least "
                f"{MIN_FINISHED} trials that ran the full budget ({n_pruned} stopped early do "
                "not count: their MPJPE is from an earlier step)"
            ),
        )
    if study.direction != optuna.study.StudyDirection.MINIMIZE:
        return Importance(
            n_finished=len(complete),
            note="importance: the study maximizes; the report expects MPJPE (minimize)",
        )
    slim = [_ShallowTrial.of(t) for t in complete]
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
    seconds = time.perf_counter() - start
    return Importance(
        rows,
        len(complete),
        n_boot,
        seconds,
        note=(
            f"PED-ANOVA (Optuna) on the {len(complete)} trials that ran the full budget "
            f"(sentinels, the baseline and the trials ASHA kept; {n_pruned} stopped early are not "
            f"used); bars: median over {n_boot} bootstrap resamples of those trials, whiskers: "
            "5-95% of the resamples. ASHA chose the survivors, so the importance describes the "
            "region they cover; wide whiskers: the ranking is not settled."
        ),
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
