"""Live trial table: trial, status, step, MPJPE and the searched values."""

from __future__ import annotations

from ray.tune import CLIReporter

from sweeps.spec import SweepSpec


def progress_reporter(spec: SweepSpec) -> CLIReporter:
    return CLIReporter(
        metric_columns={"step": "step", "mpjpe": "mpjpe_mm", "rte": "rte_mm",
                        "dropout_rate": "dropout"},
        parameter_columns={k: k.split(".")[-1] for k in spec.space},
        max_report_frequency=15, sort_by_metric=True, max_progress_rows=30)
