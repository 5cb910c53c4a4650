"""The searcher: Ray's OptunaSearch (seeded TPE, the baseline as its first point), corrected so
that

- trials ASHA stopped early reach the study as PRUNED with their MPJPE per training step
  (Ray 2.60 tells them COMPLETE with an early rung's MPJPE);
- a diverged trial (non-finite loss) is told PRUNED with a penalty value at the step it
  diverged, so TPE learns to avoid the region (FAIL trials are ignored by TPE);
- a trial Optuna has already finished is never told again (a driver killed between a
  ``tell`` and Tune's next state save reruns it on ``--resume``): no
  ``UpdateFinishedTrialError`` can end ``tuner.fit()``;
- on ``--resume``, trials the study holds as RUNNING but Tune does not know are told FAIL,
  so constant-liar TPE stops treating them as pending (tagged ``superseded``, the reason);
- the study names its objective (the sweep's metric, ``mpjpe``: optuna-dashboard said
  "Objective 0") and each Optuna trial holds its Ray trial id as the user attribute
  ``ray_trial_id``, set when the trial is asked for, so pruned, failed and orphaned trials
  carry it too (a trial of a study written before this rule gets it when first seen).

The study is ``<sweep>/optuna.journal`` (``sweeps/run/study_file.py``).
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

from ray.tune.search.optuna import OptunaSearch

from sweeps.run.recovery import SUPERSEDED_ATTR, SUPERSEDED_REASON
from sweeps.run.spec import SweepSpec
from sweeps.run.study_file import RAY_TRIAL_ID, study_storage

log = logging.getLogger(__name__)
DIVERGED_PENALTY = 1.0e6  # mm: what Optuna is told for a trial whose loss became NaN/inf


class _Private:
    """The OptunaSearch internals we need, in one place (Ray offers no public hook to tell a
    trial PRUNED or to map a Tune trial to its Optuna trial). ``tests/sweeps/test_sweep_search.py``
    checks that they still exist, so a Ray upgrade that renames them fails loudly."""

    @staticmethod
    def study(s: OptunaSearch) -> Any:
        return s._ot_study

    @staticmethod
    def trial(s: OptunaSearch, trial_id: str) -> Any:
        return s._ot_trials.get(trial_id)

    @staticmethod
    def known_trials(s: OptunaSearch) -> dict[str, Any]:
        return s._ot_trials

    @staticmethod
    def completed(s: OptunaSearch) -> set[str]:
        return s._completed_trials

    @staticmethod
    def stored(s: OptunaSearch, ot_trial: Any) -> Any:
        """The trial as the storage holds it now (a ``FrozenTrial``: a Trial object keeps no
        state of its own)."""
        return s._ot_study._storage.get_trial(ot_trial._trial_id)


class PruneAwareOptunaSearch(OptunaSearch):
    """OptunaSearch that reports intermediate values per ``time_attr`` (the training step),
    tells trials that ended before ``max_t`` without error as PRUNED and never tells a
    finished Optuna trial twice."""

    def __init__(self, *args, time_attr: str = "step", max_t: int, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._time_attr = time_attr
        self._max_t = max_t
        self._reported: dict[str, set[int]] = {}  # a retried trial re-reports its steps
        self._checked: set[str] = set()  # trials whose study state was read in this process

    def _open(self, trial_id: str) -> Any | None:
        """The trial's Optuna trial if Optuna still holds it RUNNING, else None.

        The study is read once per trial and process (the first time this process sees the
        trial, so once again after :meth:`restore`): only a trial told before a driver crash
        can be finished there and not in ``_completed_trials``. Per result, the cost is the
        journal append of ``Trial.report`` (fsync'd by Optuna), not this read."""
        if trial_id in _Private.completed(self):
            return None
        ot_trial = _Private.trial(self, trial_id)
        if ot_trial is None:
            return None
        if trial_id not in self._checked:  # told already, before a driver crash? (read once)
            from optuna.trial import TrialState

            self._checked.add(trial_id)
            stored = _Private.stored(self, ot_trial)
            if stored.state != TrialState.RUNNING:
                _Private.completed(self).add(trial_id)
                return None
            if RAY_TRIAL_ID not in stored.user_attrs:  # a study written before that rule
                ot_trial.set_user_attr(RAY_TRIAL_ID, trial_id)
        return ot_trial

    def set_search_properties(
        self, metric: str | None, mode: str | None, config: dict, **spec: Any
    ) -> bool:
        """Tune's search space and metric (the study is made here), then the objective's
        name."""
        done = super().set_search_properties(metric, mode, config, **spec)
        if done:
            self._name_objective()
        return done

    def suggest(self, trial_id: str) -> dict | None:
        """The trial's values; a new Optuna trial gets ``trial_id`` as its user attribute
        :data:`~sweeps.run.study_file.RAY_TRIAL_ID`."""
        new = _Private.trial(self, trial_id) is None
        params = super().suggest(trial_id)
        if new:
            _Private.trial(self, trial_id).set_user_attr(RAY_TRIAL_ID, trial_id)
        return params

    def _name_objective(self) -> None:
        """Name the study's objective after the sweep's metric (optuna-dashboard shows it
        instead of "Objective 0"); a study that has the name is left as it is."""
        import optuna

        study = _Private.study(self)
        names = [self.metric] if isinstance(self.metric, str) else list(self.metric)
        if study is None or study.metric_names == names:
            return
        with warnings.catch_warnings():  # experimental since Optuna 3.2, still in 5.0
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(names)

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if self.metric not in result or trial_id in _Private.completed(self):
            return
        step = int(result[self._time_attr])
        seen = self._reported.setdefault(trial_id, set())
        if step in seen:
            return
        ot_trial = self._open(trial_id)
        if ot_trial is None:
            return
        value = DIVERGED_PENALTY if result.get("diverged") else float(result[self.metric])
        ot_trial.report(value, step)
        seen.add(step)

    def on_trial_complete(
        self, trial_id: str, result: dict | None = None, error: bool = False
    ) -> None:
        from optuna.trial import TrialState

        if result is not None and not error:  # Tune hands the stopping result only to us
            self.on_trial_result(trial_id, result)
        ot_trial = self._open(trial_id)
        if ot_trial is None:
            return
        diverged = bool(result and result.get("diverged"))
        stopped_early = (
            not error
            and result is not None
            and self.metric in result
            and int(result.get(self._time_attr, 0)) < self._max_t
        )
        try:
            if diverged or stopped_early:
                _Private.study(self).tell(ot_trial, state=TrialState.PRUNED)
            elif error or result is None:
                _Private.study(self).tell(ot_trial, state=TrialState.FAIL)
            else:
                _Private.study(self).tell(ot_trial, float(result[self.metric]))
        except Exception as e:  # noqa: BLE001 - a storage hiccup must not end the sweep
            log.warning("could not tell Optuna trial %s: %s", trial_id, e)
        _Private.completed(self).add(trial_id)

    def restore(self, checkpoint_path: str) -> None:
        """Tune's saved searcher (``--resume``), the objective's name, then
        :meth:`fail_orphans`."""
        super().restore(checkpoint_path)
        self._checked = set()  # what the saved process had checked may have changed since
        self._name_objective()  # a study written before the name was set
        n = self.fail_orphans()
        if n:
            log.warning("told FAIL to %d Optuna trials left RUNNING by a driver crash", n)

    def fail_orphans(self) -> int:
        """Tell FAIL every study trial that is RUNNING but belongs to no trial Tune knows
        (asked after Tune's last state save, before a driver crash), tagged
        ``SUPERSEDED_ATTR`` with the reason; returns how many."""
        from optuna.trial import Trial, TrialState

        study = _Private.study(self)
        if study is None:
            return 0
        ours = {t.number for t in _Private.known_trials(self).values()}
        n = 0
        for frozen in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if frozen.number not in ours:  # tagged first: a finished trial takes no attribute
                Trial(study, frozen._trial_id).set_user_attr(SUPERSEDED_ATTR, SUPERSEDED_REASON)
                study.tell(frozen.number, state=TrialState.FAIL)
                n += 1
        return n


def startup_trials(spec: SweepSpec, num_samples: int) -> int:
    """TPE's random start-up trials: the spec's, else a quarter of the trials (>= 2)."""
    return spec.startup_trials or max(2, num_samples // 4)


def make_searcher(
    spec: SweepSpec, sweep_dir: Path, max_t: int, num_samples: int
) -> PruneAwareOptunaSearch:
    """The searcher, its study in ``<sweep_dir>/optuna.journal``."""
    import optuna

    sweep_dir.mkdir(parents=True, exist_ok=True)
    sampler = optuna.samplers.TPESampler(
        seed=spec.seed, n_startup_trials=startup_trials(spec, num_samples), constant_liar=True
    )
    return PruneAwareOptunaSearch(
        metric=spec.metric,
        mode=spec.mode,
        time_attr="step",
        max_t=max_t,
        sampler=sampler,
        points_to_evaluate=spec.points_to_evaluate or None,
        study_name=sweep_dir.name,
        storage=study_storage(sweep_dir),
    )
