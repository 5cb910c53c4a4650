"""The searcher: Ray's OptunaSearch with a seeded TPE sampler and the recipe as a start point."""

from __future__ import annotations

from pathlib import Path

from sweeps.spec import SweepSpec


def make_searcher(spec: SweepSpec, sweep_dir: Path):
    import optuna
    from ray.tune.search.optuna import OptunaSearch

    sampler = optuna.samplers.TPESampler(seed=spec.seed)
    return OptunaSearch(metric=spec.metric, mode=spec.mode, sampler=sampler,
                        points_to_evaluate=spec.points_to_evaluate or None,
                        study_name=sweep_dir.name)
