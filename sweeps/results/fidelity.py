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
from sweeps.results.trials import COMPLETED, STOPPED_EARLY

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
    reached the full budget (sentinels, the baseline and ASHA's survivors), and a message
    that says what it means and what to do (:func:`fidelity_message`)."""
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
    low = any(r["spearman"] is not None and r["spearman"] < LOW_RHO for r in per_rung)
    message = fidelity_message(trials, per_rung)
    return {"n_full": len(full), "per_rung": per_rung, "low": low, "message": message}


def _who_ran_out(full: list[dict[str, Any]]) -> str:
    """Which full-budget trials these are: ``"the baseline and 2 sentinels, which ASHA never
    stops, and 3 that ASHA kept"``."""
    base = sum(bool(t.get("baseline")) for t in full)
    sent = sum(bool(t.get("sentinel")) and not t.get("baseline") for t in full)
    kept = len(full) - base - sent
    never = " and ".join(
        (["the baseline"] if base else [])
        + ([f"{sent} sentinel{'s' * (sent != 1)}"] if sent else [])
    )
    return ", and ".join(
        ([f"{never}, which ASHA never stops"] if never else [])
        + ([f"{kept} that ASHA kept"] if kept else [])
    )


def stopped_trials(trials: list[dict[str, Any]], most: int = 5) -> str:
    """The trials ASHA stopped, best last MPJPE first: ``"a1 (52.10 mm at step 100), ..."``,
    at most ``most`` of them and ``"and N more"``."""
    stopped = sorted(
        (t for t in trials if t["status"] == STOPPED_EARLY and t["mpjpe"] is not None),
        key=lambda t: t["mpjpe"],
    )
    named = ", ".join(
        f"{t['trial_id']} ({t['mpjpe']:.2f} mm at step {t['last_step']})" for t in stopped[:most]
    )
    return named + (f" and {len(stopped) - most} more" if len(stopped) > most else "")


REMEDY = (
    "to check them, sweep again with a later first rung (scheduler.grace_period) "
    "or more sentinels (scheduler.sentinel_fraction)"
)


def fidelity_message(trials: list[dict[str, Any]], per_rung: list[dict[str, Any]]) -> str:
    """What the rung-vs-final correlation means and what to do: which trials ran the full
    budget, how well each rung's MPJPE ranked them like their final MPJPE, and, when a rung
    ranks them unlike the end (rho < ``LOW_RHO``) or too few ran out to tell, the trials
    ASHA stopped (which early stopping may have discarded) and :data:`REMEDY`."""
    full = [t for t in trials if t["status"] == COMPLETED and t["mpjpe"] is not None]
    n_stopped = sum(t["status"] == STOPPED_EARLY for t in trials)
    if not per_rung:
        return "no rung before the full budget: nothing was stopped early"
    ran = f"{len(full)} trials ran the full budget" + (f": {_who_ran_out(full)}" if full else "")
    known = [r for r in per_rung if r["spearman"] is not None]
    stopped = (
        f"the {n_stopped} trial{'s' * (n_stopped != 1)} ASHA stopped: {stopped_trials(trials)}"
    )
    if not known:
        return f"{ran}; too few to tell how well early MPJPE predicts final MPJPE (needs 3)" + (
            f", so nothing checked {stopped}; {REMEDY}" if n_stopped else ""
        )
    worst = min(known, key=lambda r: r["spearman"])
    if worst["spearman"] < LOW_RHO:
        unlike = (
            f"{ran}; MPJPE at step {worst['step']} ranked them unlike their final MPJPE "
            f"(Spearman rho {worst['spearman']:.2f} < {LOW_RHO} over {worst['n']})"
        )
        if not n_stopped:
            return f"{unlike}; ASHA stopped no trial, so none was discarded"
        return f"{unlike}, so early stopping may have discarded winners among {stopped}; {REMEDY}"
    return (
        f"{ran}; MPJPE at the rungs ranked them like their final MPJPE (Spearman rho "
        + ", ".join(f"{r['spearman']:.2f} at step {r['step']}" for r in known)
        + f"), so ASHA's cuts of {n_stopped} trials look safe"
    )


def validation_noise(trials: list[dict[str, Any]]) -> float | None:
    """Validation noise (mm): the median, over full-budget trials, of the std of their last
    ``NOISE_WINDOW`` validation MPJPEs; None without such a trial."""
    stds = []
    for t in trials:
        values = [v for _, v in t["curve"] if v is not None][-NOISE_WINDOW:]
        if t["status"] == COMPLETED and len(values) == NOISE_WINDOW:
            stds.append(statistics.stdev(values))
    return statistics.median(stds) if stds else None


NOISE_FACTOR = 2 * math.sqrt(2)  # two noisy finals: |diff| beyond this x noise is beyond noise


def _digits(a: float, b: float) -> int:
    """Decimals (2 to 4) at which ``a`` and ``b`` print differently, so a printed comparison
    of the two never reads the wrong way round (4 when they agree even there)."""
    return next((d for d in (2, 3) if round(a, d) != round(b, d)), 4)


def best_vs_baseline(
    best: dict[str, Any] | None, baseline: dict[str, Any] | None, noise: float | None
) -> dict[str, Any] | None:
    """The best trial against the baseline: the difference (mm; < 0 = better) and whether it
    is beyond the validation noise, ``|diff| > 2 sqrt(2) x noise`` (two noisy finals). The
    sentence states the rule with its numbers; without a noise estimate it judges nothing."""
    if best is None or baseline is None or baseline["mpjpe"] is None:
        return None
    diff = best["mpjpe"] - baseline["mpjpe"]
    if best["trial_id"] == baseline["trial_id"]:
        return {
            "diff_mm": 0.0,
            "noise_mm": noise,
            "threshold_mm": None if noise is None else NOISE_FACTOR * noise,
            "beyond_noise": False,
            "sentence": "The best trial is the baseline (the base config's own values): "
            "the sweep found nothing better.",
        }
    against = f"against the baseline {baseline['trial_id']} ({baseline['mpjpe']:.2f} mm)"
    if noise is None:
        return {
            "diff_mm": diff,
            "noise_mm": None,
            "threshold_mm": None,
            "beyond_noise": False,
            "sentence": f"The best trial is {diff:+.2f} mm {against}; the validation noise is "
            "unknown (no full-budget trial with 3 validations), so nothing says whether that "
            "is beyond it. Re-train both with several seeds: --confirm K.",
        }
    threshold = NOISE_FACTOR * noise
    beyond = abs(diff) > threshold
    d = _digits(abs(diff), threshold)
    rule = (
        f"|diff| = {abs(diff):.{d}f} mm {'>' if beyond else '<='} 2*sqrt(2)*noise = "
        f"2*sqrt(2)*{noise:.{d}f} mm = {threshold:.{d}f} mm"
    )
    if beyond:
        word = "better" if diff < 0 else "worse"
        sentence = (
            f"The best trial is {word} than the baseline beyond the validation noise: "
            f"{diff:+.2f} mm {against}, {rule}. Seed noise is not measured by a sweep: "
            "--confirm does."
        )
    else:
        sentence = (
            f"The best trial is within the validation noise of the baseline: {diff:+.2f} mm "
            f"{against}, {rule}. Re-train both with several seeds: --confirm K."
        )
    return {
        "diff_mm": diff,
        "noise_mm": noise,
        "threshold_mm": threshold,
        "beyond_noise": beyond,
        "sentence": sentence,
    }


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
