"""What a sweep's numbers mean: rung-vs-final rank correlation, validation noise, and the
best trial against the baseline. Pure functions of ``summary.json``'s trial dicts (no Ray).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Any

import numpy as np

from handpose.errors import UserError
from sweeps.results.trials import COMPLETED

LOW_RHO = 0.5  # below this, early stopping may have discarded winners
NOISE_WINDOW = 3  # last validations of a trial whose spread is its validation noise


def spearman(x: list[float], y: list[float]) -> float | None:
    """Spearman's rank correlation (average ranks for ties); None below 3 pairs or when
    one side is constant."""
    if len(x) < 3:
        return None

    def ranks(v: list[float]) -> np.ndarray:
        a = np.asarray(v, dtype=float)
        order = a.argsort(kind="mergesort")
        r = np.empty(len(a))
        r[order] = np.arange(len(a), dtype=float)
        for value in np.unique(a):  # ties share their mean rank
            tie = a == value
            r[tie] = r[tie].mean()
        return r

    rx, ry = ranks(x), ranks(y)
    if rx.std() == 0 or ry.std() == 0:
        return None
    return float(np.corrcoef(rx, ry)[0, 1])


def value_at(curve: list[list[Any]], step: int) -> float | None:
    """The MPJPE (mm) ASHA compares at a rung at ``step``: the first one reported at or after
    ``step``; None when the trial reported none there.

    Ray's ``_Bracket.on_result`` (``AsyncHyperBandScheduler``, kept by ``SweepASHA``)
    records a trial at a milestone with its first result whose step is ``>=`` the
    milestone. None values (no finite MPJPE) are skipped: Ray takes the next result when
    one lacks the metric (a NaN it would record, but it ranks nothing). Not modelled: one
    result past two rungs is recorded at the higher rung only, and ``SweepASHA``'s
    schedule-aware rule ignores results before a trial's ready step."""
    after = [(s, v) for s, v in curve if s >= step and v is not None]
    return min(after, key=lambda p: p[0])[1] if after else None


def rung_fidelity(
    trials: list[dict[str, Any]], rung_steps: list[int], total_step: int
) -> dict[str, Any]:
    """Spearman's rho between each rung's MPJPE and the final MPJPE, over the trials that
    reached the full budget (sentinels, the baseline and ASHA's survivors)."""
    full = [t for t in trials if t["status"] == COMPLETED and t["mpjpe"] is not None]
    per_rung = []
    for step in (s for s in rung_steps if s < total_step):
        pairs = [(value_at(t["curve"], step), t["mpjpe"]) for t in full]
        pairs = [(a, b) for a, b in pairs if a is not None]
        per_rung.append(
            {
                "step": step,
                "n": len(pairs),
                "spearman": spearman([a for a, _ in pairs], [b for _, b in pairs]),
            }
        )
    known = [r for r in per_rung if r["spearman"] is not None]
    low = any(r["spearman"] < LOW_RHO for r in known)
    if not per_rung:
        message = "no rung before the full budget: nothing was stopped early"
    elif not known:
        message = (
            f"{len(full)} trials reached the full budget: too few to tell how well "
            "early MPJPE predicts final MPJPE (needs 3)"
        )
    elif low:
        worst = min(known, key=lambda r: r["spearman"])
        message = (
            f"early stopping may have discarded winners: at step {worst['step']} the "
            f"rank correlation with final MPJPE is {worst['spearman']:.2f} "
            f"(< {LOW_RHO}) over {worst['n']} full-budget trials"
        )
    else:
        message = (
            "rung MPJPE ranks trials like final MPJPE: rho "
            + ", ".join(f"{r['spearman']:.2f} at step {r['step']}" for r in known)
            + f" over {known[0]['n']} full-budget trials"
        )
    return {"n_full": len(full), "per_rung": per_rung, "low": low, "message": message}


def validation_noise(trials: list[dict[str, Any]]) -> float | None:
    """Validation noise (mm): the median, over full-budget trials, of the std of their last
    ``NOISE_WINDOW`` validation MPJPEs; None without such a trial."""
    stds = []
    for t in trials:
        values = [v for _, v in t["curve"] if v is not None][-NOISE_WINDOW:]
        if t["status"] == COMPLETED and len(values) == NOISE_WINDOW:
            stds.append(statistics.stdev(values))
    return statistics.median(stds) if stds else None


def best_vs_baseline(
    best: dict[str, Any] | None, baseline: dict[str, Any] | None, noise: float | None
) -> dict[str, Any] | None:
    """The best trial against the baseline: the difference (mm; < 0 = better) and whether it
    is beyond the validation noise (|diff| > 2 sqrt(2) x noise: two noisy finals)."""
    if best is None or baseline is None or baseline["mpjpe"] is None:
        return None
    diff = best["mpjpe"] - baseline["mpjpe"]
    if best["trial_id"] == baseline["trial_id"]:
        return {
            "diff_mm": 0.0,
            "noise_mm": noise,
            "beyond_noise": False,
            "sentence": "The best trial is the baseline (the base config's own values): "
            "the sweep found nothing better.",
        }
    beyond = noise is not None and abs(diff) > 2 * math.sqrt(2) * noise
    numbers = (
        f"{diff:+.1f} mm against the baseline {baseline['trial_id']} "
        f"({baseline['mpjpe']:.1f} mm); validation noise "
        + (f"{noise:.1f} mm" if noise is not None else "unknown")
    )
    if beyond:
        word = "better" if diff < 0 else "worse"
        sentence = (
            f"The best trial is {word} than the baseline beyond the validation noise: "
            f"{numbers}. Seed noise is not measured by a sweep: --confirm does."
        )
    else:
        sentence = (
            f"The best trial is within the validation noise of the baseline: "
            f"{numbers}. Re-train both with several seeds: --confirm K."
        )
    return {"diff_mm": diff, "noise_mm": noise, "beyond_noise": beyond, "sentence": sentence}


# Multi-seed confirmation (sweeps/results/confirm.py): a paired comparison with the baseline.
BETTER, WORSE, NOISE = (
    "better than baseline",
    "worse than baseline",
    "within noise of the baseline",
)
# Two-sided 95% critical values of Student's t for df = 1..9; larger df use the
# Cornish-Fisher expansion below (error < 1e-5 from df = 10 on). No scipy dependency.
T95_SMALL_DF = (12.7062, 4.3027, 3.1824, 2.7764, 2.5706, 2.4469, 2.3646, 2.3060, 2.2622)
Z975 = 1.959963984540054


def t_critical_95(df: int) -> float:
    """The 0.975 quantile of Student's t with ``df`` degrees of freedom."""
    if df < 1:
        raise ValueError(f"t distribution needs df >= 1, got {df}")
    if df <= len(T95_SMALL_DF):
        return T95_SMALL_DF[df - 1]
    z = Z975
    return (
        z
        + (z**3 + z) / (4 * df)
        + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)
        + (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / (384 * df**3)
        + (79 * z**9 + 776 * z**7 + 1482 * z**5 - 1920 * z**3 - 945 * z) / (92160 * df**4)
    )


def paired_stats(values: Sequence[float], baseline: Sequence[float]) -> dict[str, Any]:
    """Mean and std (ddof=1) of ``values`` and their paired comparison with ``baseline``
    (``values[i]`` and ``baseline[i]`` trained with the same seed). Lower MPJPE is better:
    ``diff = values - baseline`` < 0 means better than the baseline."""
    if len(values) != len(baseline):
        raise ValueError(f"{len(values)} values vs {len(baseline)} baseline values")
    if len(values) < 2:
        raise UserError(
            f"{len(values)} seed(s): a confirmation needs at least 2 training "
            "seeds per configuration (--seeds S >= 2)"
        )
    v, b = np.asarray(values, dtype=float), np.asarray(baseline, dtype=float)
    diff = v - b
    n = len(diff)
    diff_mean, diff_std = float(diff.mean()), float(diff.std(ddof=1))
    half = t_critical_95(n - 1) * diff_std / math.sqrt(n)
    lo, hi = diff_mean - half, diff_mean + half
    verdict = BETTER if hi < 0 else WORSE if lo > 0 else NOISE
    return {
        "n": n,
        "mpjpe_mean": float(v.mean()),
        "mpjpe_std": float(v.std(ddof=1)),
        "diff_mean": diff_mean,
        "diff_std": diff_std,
        "diff_ci95": [lo, hi],
        "verdict": verdict,
    }
