"""The searcher: Ray's OptunaSearch (seeded TPE, the recipe as a start point), corrected so
that trials ASHA stopped early reach the Optuna study as PRUNED, with their intermediate
MPJPE per training step, instead of COMPLETE with an early rung's MPJPE (Ray 2.60's
behaviour). The study lives in ``<sweep>/optuna.db`` (SQLite) so Optuna's own tools open it.
"""

from __future__ import annotations

from pathlib import Path

from ray.tune.search.optuna import OptunaSearch

from sweeps.spec import SweepSpec

STUDY_FILE = "optuna.db"


class PruneAwareOptunaSearch(OptunaSearch):
    """OptunaSearch that reports intermediate values per ``time_attr`` (the training step)
    and tells trials that ended before ``max_t`` without error as PRUNED."""

    def __init__(self, *args, time_attr: str = "step", max_t: int, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._time_attr = time_attr
        self._max_t = max_t
        self._reported: dict[str, set[int]] = {}  # a retried trial re-reports its steps

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if trial_id in self._completed_trials or self.metric not in result:
            return
        step = int(result[self._time_attr])
        seen = self._reported.setdefault(trial_id, set())
        if step not in seen:
            self._ot_trials[trial_id].report(float(result[self.metric]), step)
            seen.add(step)

    def on_trial_complete(self, trial_id: str, result: dict | None = None,
                          error: bool = False) -> None:
        if result is not None and not error:  # Tune hands the stopping result only to us
            self.on_trial_result(trial_id, result)
        stopped_early = (not error and result is not None and self.metric in result
                         and int(result.get(self._time_attr, 0)) < self._max_t)
        if not stopped_early or trial_id in self._completed_trials:
            super().on_trial_complete(trial_id, result, error)
            return
        from optuna.trial import TrialState

        self._ot_study.tell(self._ot_trials[trial_id], state=TrialState.PRUNED)
        self._completed_trials.add(trial_id)


def study_url(sweep_dir: Path) -> str:
    return f"sqlite:///{Path(sweep_dir).resolve() / STUDY_FILE}"


def make_searcher(spec: SweepSpec, sweep_dir: Path, max_t: int) -> PruneAwareOptunaSearch:
    """The searcher, its study stored in ``<sweep_dir>/optuna.db``."""
    import optuna

    sweep_dir.mkdir(parents=True, exist_ok=True)
    storage = optuna.storages.RDBStorage(study_url(sweep_dir))
    return PruneAwareOptunaSearch(
        metric=spec.metric, mode=spec.mode, time_attr="step", max_t=max_t,
        sampler=optuna.samplers.TPESampler(seed=spec.seed),
        points_to_evaluate=spec.points_to_evaluate or None, study_name=sweep_dir.name,
        storage=storage)
