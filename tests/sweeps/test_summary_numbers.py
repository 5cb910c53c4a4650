"""What the closing lines of a sweep say (issue 30): the noise rule with its numbers on both
sides of the boundary, a fidelity line that says what it means and what to do (the README
quotes a real sweep's word for word), and a best_config.yaml that logs to its own Aim experiment.
Hand-made trial dicts and a fake sweep folder; no Ray."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from handpose.config import load_config
from sweeps.results.fidelity import REMEDY, best_vs_baseline, rung_fidelity, validation_noise
from sweeps.results.summary import print_results, write_outputs
from sweeps.results.trials import COMPLETED, STOPPED_EARLY
from sweeps.run.spec import PresetCfg, SweepSpec
from tests.helpers import REPO


def _trial(tid: str, curve: list[float], status: str = COMPLETED, **role: bool) -> dict:
    """A trial validated every 100 steps (``curve``: MPJPE in mm at 100, 200, ...)."""
    return {
        "trial_id": tid,
        "status": status,
        "overrides": {"MODEL.handec.dropout": 0.1},
        "curve": [[100 * (i + 1), v] for i, v in enumerate(curve)],
        "mpjpe": curve[-1],
        "last_step": 100 * len(curve),
        "val_fingerprint": "f00d",
        **dict.fromkeys(("mpjpe_rel", "pa_mpjpe", "rte")),
        "baseline": role.get("baseline", False),
        "sentinel": role.get("sentinel", False) or role.get("baseline", False),
    }


def _numbers(sentence: str) -> tuple[float, str, float]:
    """``|diff| = A mm <op> ... = T mm`` from a best-vs-baseline sentence."""
    m = re.search(r"\|diff\| = ([\d.]+) mm (<=|>) 2\*sqrt\(2\)\*noise = .* = ([\d.]+) mm", sentence)
    assert m, sentence
    return float(m[1]), m[2], float(m[3])


@pytest.mark.parametrize("gap", [-1e-4, 1e-4, -0.003, 0.003, -0.5, 0.5])
def test_the_noise_rule_is_in_the_sentence_on_both_sides_of_its_boundary(gap):
    """noise 0.655 mm: threshold 2 sqrt(2) x 0.655 = 1.853 mm. A gap above it is never
    called within noise; the sentence prints the rule with numbers that read the same way
    as the verdict, however close to the boundary."""
    noise = 0.655
    threshold = 2 * math.sqrt(2) * noise
    base = _trial("base", [60.0, 52.0])
    best = _trial("best", [60.0, 52.0 - threshold - gap])
    v = best_vs_baseline(best, base, noise)
    assert v["threshold_mm"] == pytest.approx(threshold)
    assert v["beyond_noise"] == (gap > 0)
    assert ("within the validation noise" in v["sentence"]) == (gap < 0)
    diff, op, shown = _numbers(v["sentence"])
    assert op == (">" if gap > 0 else "<=")
    assert (diff > shown) == (gap > 0)  # the printed numbers agree with the verdict


def test_no_noise_estimate_judges_nothing():
    v = best_vs_baseline(_trial("best", [50.0]), _trial("base", [52.0]), None)
    assert not v["beyond_noise"] and "within" not in v["sentence"]
    assert "validation noise is unknown" in v["sentence"] and "--confirm" in v["sentence"]


def _default_like_sweep() -> list[dict]:
    """The default sweep's shape: the baseline, 2 sentinels and 3 survivors ran the full
    budget (300 steps), 4 trials stopped by ASHA; MPJPE at step 100 ranks the full-budget
    trials almost backwards."""
    full = [
        _trial("29c5bac7", [60.5, 55.0, 51.54], baseline=True),
        _trial("76cd8bca", [58.2, 54.0, 50.19], sentinel=True),
        _trial("a75e267e", [61.0, 55.5, 52.80], sentinel=True),
        _trial("2d1cc3df", [57.9, 53.2, 53.40]),
        _trial("0b9e11f2", [59.1, 54.8, 51.10]),
        _trial("c3d4e5f6", [57.0, 56.0, 54.20]),
    ]
    stopped = [
        _trial("5e0f1a2b", [58.31], STOPPED_EARLY),
        _trial("9a8b7c6d", [62.40, 57.75], STOPPED_EARLY),
        _trial("1f2e3d4c", [64.02], STOPPED_EARLY),
        _trial("e5d4c3b2", [63.10], STOPPED_EARLY),
    ]
    return full + stopped


def test_the_fidelity_line_says_what_it_means_and_what_to_do():
    trials = _default_like_sweep()
    fid = rung_fidelity(trials, [100, 200, 300], 300)
    msg = fid["message"]
    assert fid["low"] and "early stopping may have discarded winners" in msg
    assert msg.startswith(
        "6 trials ran the full budget: the baseline and 2 sentinels, which ASHA never stops, "
        "and 3 that ASHA kept; "
    )
    # the stopped trials are named, best first, with the MPJPE they were stopped at
    named = re.findall(r"(\w{8}) \(([\d.]+) mm at step (\d+)\)", msg)
    assert [t for t, _, _ in named] == ["9a8b7c6d", "5e0f1a2b", "e5d4c3b2", "1f2e3d4c"]
    assert msg.endswith(REMEDY)
    good = [t for t in trials if t["status"] == COMPLETED]
    for t in good:  # MPJPE at steps 100 and 200 ordered like the final one
        t["curve"][0][1], t["curve"][1][1] = t["mpjpe"] + 10, t["mpjpe"] + 5
    safe = rung_fidelity(good + trials[6:], [100, 200, 300], 300)["message"]
    assert not rung_fidelity(good, [100, 200, 300], 300)["low"]
    assert "ranked them like their final MPJPE" in safe and "cuts of 4 trials look safe" in safe


def test_a_low_rung_rho_with_nothing_stopped_names_no_discarded_trial():
    """A sweep in which every trial ran out (no ASHA cut) has nothing to check again."""
    full = [t for t in _default_like_sweep() if t["status"] == COMPLETED]
    msg = rung_fidelity(full, [100, 200, 300], 300)["message"]
    assert msg.endswith(
        "ranked them unlike their final MPJPE (Spearman rho -0.43 < 0.5 over 6); "
        "ASHA stopped no trial, so none was discarded"
    ), msg
    assert REMEDY not in msg and "0 trials" not in msg


def test_the_readme_quotes_a_real_default_sweep_word_for_word():
    """The README's closing lines are those of the default sweep recorded in
    benchmarks/results/default_sweep-summary.json (docs/benchmarks.md section 9), and
    today's code, given that sweep's trials, still prints them."""
    summary = json.loads((REPO / "benchmarks/results/default_sweep-summary.json").read_text())
    trials = summary["trials"]
    best = next(t for t in trials if t["trial_id"] == summary["best"]["trial_id"])
    baseline = next(t for t in trials if t["baseline"])
    sentence = best_vs_baseline(best, baseline, validation_noise(trials))["sentence"]
    fidelity = rung_fidelity(trials, summary["rungs"], summary["total_step"])["message"]
    assert sentence == summary["best_vs_baseline"]["sentence"]
    assert fidelity == summary["fidelity"]["message"]
    readme = (REPO / "README.md").read_text()
    assert sentence in readme and "fidelity: " + fidelity in readme


def test_console_and_best_config_keep_the_winner_out_of_the_sweeps_aim_experiment(tmp_path, capsys):
    """best_config.yaml logs to its own Aim experiment, <sweep>-best, and the line that
    prints the train command says so; the fidelity line is the summary's message, with no
    list of sentinels to "run to the full budget"."""
    sweep = tmp_path / "dw-1"
    sweep.mkdir()
    base = load_config("stage1-tiny")
    base.AIM.server_url = str(sweep)  # the sweep's default Aim repo (a path-only edit)
    settings = PresetCfg()
    settings.scheduler.grace_period = 100
    spec = SweepSpec("cpu", "mpjpe", "min", settings, {"MODEL.handec.dropout": {}}, [])
    trials = sorted(_default_like_sweep(), key=lambda t: t["mpjpe"])  # as collect_trials
    summary = write_outputs(sweep, spec, base, trials, 10)
    best = OmegaConf.load(sweep / "best_config.yaml")
    assert best.AIM.experiment == "dw-1-best" and best.AIM.server_url == str(sweep)
    assert best.GENERAL.run_name == f"best-{summary['best']['trial_id']}"
    print_results(summary, sweep, base)
    out = capsys.readouterr().out
    train = next(ln for ln in out.splitlines() if ln.startswith("train the best config"))
    assert (
        f"(Aim: experiment dw-1-best in {sweep}, apart from the sweep's experiment dw-1)" in train
    )
    (fidelity,) = [ln for ln in out.splitlines() if ln.startswith("fidelity:")]
    assert fidelity == f"fidelity: {summary['fidelity']['message']}"
    assert "whatever ASHA says" not in out
    assert "|diff| = " in out  # the noise rule, with its numbers


def test_best_config_with_aim_off_says_so(tmp_path: Path, capsys):
    sweep = tmp_path / "dw-2"
    sweep.mkdir()
    base = load_config("stage1-tiny", ["AIM.enabled=false"])
    spec = SweepSpec("cpu", "mpjpe", "min", PresetCfg(), {"MODEL.handec.dropout": {}}, [])
    summary = write_outputs(sweep, spec, base, _default_like_sweep(), 10)
    print_results(summary, sweep, base)
    assert "(Aim is off, as in the sweep)" in capsys.readouterr().out
