"""sweeps/report.py on a realistic fake sweep folder (no Ray) and on two plain run folders:
every section, valid embedded and on-disk PNGs, parseable CSV/JSON, exit code 2 on bad input,
the baseline, sentinels and the fidelity check, and (when Chromium is installed) a headless
render of the page."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from handpose.errors import UserError
from sweeps.reporting.page import main, write_report
from tests.helpers import REPO
from tests.sweeps.report_helpers import (
    BEST_VS_BASELINE,
    FIDELITY_MESSAGE,
    GAP,
    LOG_KEYS,
    TRIALS,
    check_page,
    make_sweep,
    read_csv,
    write_run,
)


@pytest.fixture(scope="module")
def sweep_report(tmp_path_factory) -> tuple[Path, Path]:
    sweep = make_sweep(tmp_path_factory.mktemp("sweeps"))
    assert main([str(sweep), "--top", "3"]) == 0
    return sweep, sweep / "report"


def test_sweep_report_sections_images_and_tables(sweep_report):
    sweep, out = sweep_report
    html = (out / "report.html").read_text(encoding="utf-8")
    check_page(html, out)
    assert {p.name for p in out.glob("*.png")} == {  # no importance: 2 complete trials
        "mpjpe_vs_step.png",
        "fidelity.png",
        "best_so_far.png",
        "generalisation_gap.png",
        "dropout_schedule.png",
        "train_vs_val_loss.png",
        "params_vs_mpjpe.png",
    }
    board = read_csv(out / "trials.csv")
    assert [r["id"] for r in board] == list(TRIALS)  # ranked by final MPJPE
    assert [r["role"] for r in board] == ["", "baseline", "", ""]
    assert '<tr class="base"><td class="n">2</td><td>aaaa0002</td><td>baseline</td>' in html
    for text in (
        BEST_VS_BASELINE,
        FIDELITY_MESSAGE,
        "too few trials for importance: 2 ran the full budget",
        "aaaa0002 (the base config&#x27;s own values): 82.00 mm",
        "1 trials ran the full budget whatever ASHA said: aaaa0002",
        "log x axis: the keys searched with log: true",
    ):
        assert text in html, text
    assert "early stopping may have discarded winners" not in html
    assert [r["status"] for r in board] == [s for s, _, _ in TRIALS.values()]
    assert float(board[0]["mpjpe"]) == 80.0 and board[0]["LOSS.lambda_trans"] == "0.05"
    assert board[3]["error"] == "NonFiniteLossError: non-finite loss" and not board[0]["error"]
    assert "NonFiniteLossError: non-finite loss" in html
    at = read_csv(out / "mpjpe_at_steps.csv")
    assert list(at[0]) == ["id", "status", "20", "40", "60"]
    stopped = next(r for r in at if r["status"] == "STOPPED_EARLY")
    assert (stopped["40"], stopped["60"]) == ("91.0", "")  # ended early: no value at 60
    stats = {r["id"]: r for r in read_csv(out / "trial_stats.csv")}
    assert float(stats["aaaa0001"]["mpjpe_std"]) == pytest.approx(5.0)  # std(90, 85, 80)
    assert float(stats["aaaa0001"]["gap_final"]) == GAP
    assert stats["aaaa0004"]["num_val"] == "1" and stats["aaaa0004"]["gap_final"] == ""
    for text in (
        "undetermined (fewer than 2 seeds finished)",
        "is the baseline recipe",
        "per_seed",
        "[81.00, –]",
        "LOSS.lambda_trans=0.2",
    ):
        assert text in html  # the confirmation table and sentence


def test_sweep_report_json(sweep_report):
    _, out = sweep_report
    report = json.loads((out / "report.json").read_text())
    curves = report["curves"]
    assert curves["aaaa0003"]["val_mpjpe"][-1][0] == 40  # the ASHA-stopped trial ends early
    assert curves["aaaa0004"]["val_mpjpe"] == [[20, 99.0]]  # from summary.json's curve
    assert [s for s, _ in curves["aaaa0001"]["dropout_rate"]] == list(range(10, 61, 10))
    progress = report["best_so_far"]  # a point at each full-budget trial's end
    assert [(p["trial_id"], p["best_mpjpe"]) for p in progress["points"]] == [
        ("aaaa0001", 80.0),
        ("aaaa0002", 80.0),
    ]
    assert progress["end_total_steps"] == 60 + 60 + 40
    assert report["importance"]["rows"] == [] and report["importance"]["n_finished"] == 2
    assert set(report["log_keys"]) == LOG_KEYS  # from the study's distributions
    assert [(p["id"], p["role"], p["20"], p["40"]) for p in report["fidelity_points"]] == [
        ("aaaa0001", "", 90.0, 85.0),
        ("aaaa0002", "baseline", 92.0, 86.0),
    ]
    assert report["confirm"]["rows"][1]["config"] == "aaaa0002"


def test_run_folders_before_after(tmp_path):
    before, after = tmp_path / "before", tmp_path / "after"
    write_run(before, [95.0, 90.0, 88.0], dropout=0.0, warmup=0)
    write_run(after, [94.0, 87.0], dropout=0.2, warmup=20)  # still running: 2 of 3 vals
    assert main([str(before), str(after)]) == 0
    out = before / "report"
    html = (out / "report.html").read_text(encoding="utf-8")
    check_page(html, out)
    board = read_csv(out / "trials.csv")
    assert [(r["id"], r["status"]) for r in board] == [
        ("after", "UNFINISHED"),
        ("before", "COMPLETED"),
    ]
    # the config keys that differ between the runs, not the run names
    assert {k for k in board[0] if "." in k} == {
        "MODEL.handec.dropout",
        "GENERAL.dropout_warmup_step",
    }
    assert "needs a sweep folder" in html  # importance: a note, not a crash


def test_sweep_plus_run_uses_searched_keys(sweep_report, tmp_path):
    sweep, _ = sweep_report
    write_run(tmp_path / "retrain", [91.0, 84.0, 79.0], dropout=0.1, warmup=6)
    main([str(sweep), str(tmp_path / "retrain"), "--out", str(tmp_path / "rep")])
    board = read_csv(tmp_path / "rep" / "trials.csv")
    assert (board[0]["id"], board[0]["kind"]) == ("retrain", "run")
    assert board[0]["MODEL.handec.dropout"] == "0.1" and board[0]["LOSS.lambda_trans"] == ""


def test_rows_left_out_of_the_tables_are_summed_up(tmp_path):
    """With fewer table rows than trials, a line counts the rest by status, with their
    MPJPE range."""
    sweep = make_sweep(tmp_path, confirm=False)
    html = write_report([sweep], tmp_path / "rep", lines=2, rows=3).read_text(encoding="utf-8")
    check_page(html, tmp_path / "rep")
    assert "1 more entries not shown (1 error; final MPJPE 99.00-99.00 mm)" in html


def test_bad_input(tmp_path):
    proc = subprocess.run(
        [sys.executable, "sweeps/report.py", str(tmp_path / "missing")],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"error: {tmp_path / 'missing'}: no such folder"]
    with pytest.raises(UserError, match="neither a sweep folder"):
        main([str(tmp_path)])
    (tmp_path / "summary.json").write_text(json.dumps({"metric": "mpjpe", "trials": []}))
    with pytest.raises(UserError, match="nothing to report"):
        main([str(tmp_path)])


@pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium not installed")
def test_renders_in_headless_chromium(sweep_report, tmp_path):
    from PIL import Image

    _, out = sweep_report
    shot = tmp_path / "shot.png"
    subprocess.run(
        [
            "chromium",
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={tmp_path / 'profile'}",
            f"--screenshot={shot}",
            "--window-size=1280,3000",
            (out / "report.html").as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    image = Image.open(shot).convert("L")
    assert image.size == (1280, 3000)
    assert len(image.getcolors(maxcolors=65536) or range(65536)) > 50  # not a blank page
