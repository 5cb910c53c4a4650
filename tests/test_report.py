"""sweeps/report.py on a realistic fake sweep folder (no Ray) and on two plain run folders:
every section, valid embedded and on-disk PNGs, parseable CSV/JSON, exit code 2 on bad input,
and (when Chromium is installed) a headless render of the page."""

from __future__ import annotations

import base64
import csv
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import yaml

from handpose.errors import UserError
from sweeps.report import main
from sweeps.report_data import param_importance

REPO = Path(__file__).resolve().parent.parent
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
TOTAL = 60
FINGERPRINT = "186265d23f7de34d"
SPACE = {  # configs/sweep/dropout_warmup.yaml, smoke preset (warmup scaled to 60 steps)
    "GENERAL.dropout_warmup_step": optuna.distributions.IntDistribution(0, 36),
    "GENERAL.dropout_schedule": optuna.distributions.CategoricalDistribution(
        ["step", "linear", "cosine"]),
    "MODEL.handec.dropout": optuna.distributions.FloatDistribution(0.0, 0.4),
    "LOSS.lambda_trans": optuna.distributions.FloatDistribution(0.005, 0.5, log=True),
    "LOSS.lambda_theta": optuna.distributions.FloatDistribution(0.3, 10.0, log=True),
    "LOSS.lambda_shape": optuna.distributions.FloatDistribution(0.3, 10.0, log=True),
    "LOSS.lambda_rel": optuna.distributions.FloatDistribution(0.002, 0.05, log=True),
    "LOSS.lambda_img": optuna.distributions.FloatDistribution(0.0002, 0.01, log=True),
}
# trial id -> (status, searched values, validation MPJPE (mm) at steps 20, 40, 60, ...)
TRIALS = {
    "aaaa0001": ("COMPLETED", (6, "step", 0.1, 0.05, 3.0, 3.0, 0.012, 0.002), [90.0, 85.0, 80.0]),
    "aaaa0002": ("COMPLETED", (20, "cosine", 0.3, 0.2, 1.0, 5.0, 0.03, 0.005), [92.0, 86.0, 82.0]),
    "aaaa0003": ("STOPPED_EARLY", (30, "linear", 0.05, 0.01, 0.5, 8.0, 0.01, 0.001), [95.0, 91.0]),
    "aaaa0004": ("ERROR", (10, "step", 0.2, 0.1, 2.0, 2.0, 0.02, 0.0005), [99.0]),
}
GAP = 3.0  # val minus train MPJPE (mm) in every fake validation
HEADINGS = ("Overview", "Leaderboard", "Validation MPJPE over steps",
            "MPJPE at shared validation steps", "Best MPJPE so far",
            "Validation std and generalisation gap", "Dropout schedule",
            "Train vs validation loss", "Searched parameters vs final MPJPE",
            "Hyperparameter importance", "Confirmation (multi-seed)", "Data files")


def write_run(run_dir: Path, curve: list[float], dropout: float, warmup: int,
              total: int = TOTAL) -> None:
    """A training run folder as handpose.train leaves it: config.yaml and metrics.jsonl with
    train lines every 10 steps and val lines every 20."""
    run_dir.mkdir(parents=True)
    config = {"GENERAL": {"total_step": total, "run_name": run_dir.name, "output_dir": "out",
                          "dropout_warmup_step": warmup, "val_seed": 42},
              "MODEL": {"handec": {"dropout": dropout}}}
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config))
    lines = []
    for step in range(10, 20 * len(curve) + 1, 10):
        rate = dropout if step >= warmup else 0.0
        lines.append({"step": step, "split": "train", "total": 5.0 - step / 30, "loss_theta": 0.1,
                      "loss_shape": 1.0, "loss_trans": 4.0, "loss_rel": 30.0, "loss_img": 15.0,
                      "lr": 1e-3, "dropout_rate": rate})
        if step % 20 == 0:
            mpjpe = curve[step // 20 - 1]
            lines.append({"step": step, "split": "val", "mpjpe": mpjpe, "mpjpe_rel": mpjpe - 10,
                          "pa_mpjpe": 25.0, "rte": mpjpe - 2, "val_total": 4.5 - step / 40,
                          "train_mpjpe": mpjpe - GAP, "gap_mpjpe": GAP, "dropout_rate": rate,
                          "val_fingerprint": FINGERPRINT, "num_samples": 64,
                          "train_total": 5.0 - step / 30})
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))


def make_sweep(root: Path, confirm: bool = True) -> Path:
    """A sweep folder like sweeps/dropout_warmup.py leaves it (4 trials, one of them known
    only by its summary curve), with its Optuna study and, optionally, confirm.json."""
    sweep = root / "fake"
    sweep.mkdir(parents=True)
    study = optuna.create_study(study_name=sweep.name, storage=f"sqlite:///{sweep}/optuna.db",
                                direction="minimize")
    trials = []
    for i, (tid, (status, values, curve)) in enumerate(TRIALS.items()):
        params = dict(zip(SPACE, values, strict=True))
        trial_dir = sweep / f"handpose_trial_{tid}_{i + 1}_GENERAL_dropout_schedule={values[1]}"
        run_dir = trial_dir / "run" if i < 2 else sweep / "runs" / f"handpose_trial_{tid}"
        if status != "ERROR":  # the errored trial left only its curve in summary.json
            write_run(run_dir, curve, values[2], values[0])
            trial_dir.mkdir(exist_ok=True)
            reports = [{"step": 20 * (k + 1), "mpjpe": v, "trial_id": tid,
                        "timestamp": 1_700_000_000 + 30 * i + 10 * (k + 1),
                        "time_total_s": 10.0 * (k + 1)} for k, v in enumerate(curve)]
            (trial_dir / "result.json").write_text(
                "".join(json.dumps(r) + "\n" for r in reports))
        study.enqueue_trial(params)
        trial = study.ask(SPACE)
        for k, v in enumerate(curve):
            trial.report(v, 20 * (k + 1))
        state = {"COMPLETED": optuna.trial.TrialState.COMPLETE,
                 "STOPPED_EARLY": optuna.trial.TrialState.PRUNED}.get(
            status, optuna.trial.TrialState.FAIL)
        study.tell(trial, curve[-1] if status == "COMPLETED" else None, state=state)
        trials.append({
            "trial_id": tid, "status": status, "overrides": params,
            "last_step": 20 * len(curve), "mpjpe": curve[-1], "best_mpjpe": min(curve),
            "mpjpe_rel": curve[-1] - 10, "pa_mpjpe": 25.0, "rte": curve[-1] - 2,
            "val_fingerprint": FINGERPRINT, "node_id": "n1", "path": str(trial_dir),
            "run_dir": str(run_dir) if i >= 2 else None,
            "curve": [[20 * (k + 1), v] for k, v in enumerate(curve)],
            "error": "NonFiniteLossError: non-finite loss" if status == "ERROR" else None})
    summary = {"metric": "mpjpe", "mode": "min", "preset": "smoke", "total_step": TOTAL,
               "val_seed": 42, "val_fingerprints": [FINGERPRINT], "comparable": True,
               "best": {"trial_id": "aaaa0001", "overrides": trials[0]["overrides"],
                        "mpjpe": 80.0, "step": TOTAL}, "trials": trials}
    (sweep / "summary.json").write_text(json.dumps(summary))
    if confirm:
        rows = [  # as sweeps/confirm.py writes them
            {"config": "baseline", "overrides": trials[0]["overrides"], "sweep_mpjpe": 80.0,
             "per_seed": [80.5, 81.0], "n": 2, "mpjpe_mean": 80.75, "mpjpe_std": 0.35,
             "diff_mean": 0.0, "diff_std": 0.0, "diff_ci95": [0.0, 0.0], "verdict": "reference"},
            {"config": "aaaa0002", "overrides": trials[1]["overrides"], "sweep_mpjpe": 82.0,
             "per_seed": [81.0, None], "n": 1, "mpjpe_mean": None, "mpjpe_std": None,
             "diff_mean": None, "diff_std": None, "diff_ci95": None,
             "verdict": "undetermined (fewer than 2 seeds finished)"}]
        (sweep / "confirm.json").write_text(json.dumps(
            {"rows": rows, "sentence": "The sweep winner aaaa0001 is the baseline recipe."}))
    return sweep


def check_page(html: str, out: Path) -> list[bytes]:
    """Every section heading is there; every <img> is a PNG data URI; every PNG next to the
    page is a valid, non-empty PNG and embedded. Returns the embedded PNGs."""
    for title in HEADINGS:
        assert f"<h2>{title}</h2>" in html, title
    assert "http://" not in html and "https://" not in html and "<script" not in html
    srcs = re.findall(r'<img src="([^"]*)"', html)
    pngs = []
    for src in srcs:
        assert src.startswith("data:image/png;base64,"), src[:40]
        data = base64.b64decode(src.split(",", 1)[1])
        assert data.startswith(PNG_SIGNATURE) and len(data) > 1000
        pngs.append(data)
    files = sorted(out.glob("*.png"))
    assert len(files) == len(srcs)
    for f in files:
        assert f.stat().st_size > 0 and f.read_bytes().startswith(PNG_SIGNATURE)
        assert f.read_bytes() in pngs
    return pngs


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def sweep_report(tmp_path_factory) -> tuple[Path, Path]:
    sweep = make_sweep(tmp_path_factory.mktemp("sweeps"))
    assert main([str(sweep), "--top", "3"]) == 0
    return sweep, sweep / "report"


def test_sweep_report_sections_images_and_tables(sweep_report):
    sweep, out = sweep_report
    html = (out / "report.html").read_text(encoding="utf-8")
    check_page(html, out)
    assert {p.name for p in out.glob("*.png")} == {
        "mpjpe_vs_step.png", "best_so_far.png", "generalisation_gap.png",
        "dropout_schedule.png", "train_vs_val_loss.png", "params_vs_mpjpe.png",
        "importance.png"}
    board = read_csv(out / "trials.csv")
    assert [r["id"] for r in board] == list(TRIALS)  # ranked by final MPJPE
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
    for text in ("undetermined (fewer than 2 seeds finished)", "is the baseline recipe",
                 "per_seed", "[81.00, –]", "LOSS.lambda_trans=0.2"):
        assert text in html  # the confirmation table and sentence


def test_sweep_report_json(sweep_report):
    _, out = sweep_report
    report = json.loads((out / "report.json").read_text())
    curves = report["curves"]
    assert curves["aaaa0003"]["val_mpjpe"][-1][0] == 40  # the ASHA-stopped trial ends early
    assert curves["aaaa0004"]["val_mpjpe"] == [[20, 99.0]]  # from summary.json's curve
    assert [s for s, _ in curves["aaaa0001"]["dropout_rate"]] == list(range(10, 61, 10))
    best = [p["best_mpjpe"] for p in report["best_so_far"]]
    assert best == sorted(best, reverse=True) and best[-1] == 80.0
    assert report["best_so_far"][-1]["total_steps"] == 60 + 60 + 40
    assert set(report["importance"]["values"]) == set(SPACE)
    assert "2 complete" in report["importance"]["note"]
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
    assert [(r["id"], r["status"]) for r in board] == [("after", "UNFINISHED"),
                                                      ("before", "COMPLETED")]
    # the config keys that differ between the runs, not the run names
    assert {k for k in board[0] if "." in k} == {"MODEL.handec.dropout",
                                                 "GENERAL.dropout_warmup_step"}
    assert "needs a sweep folder" in html  # importance: a note, not a crash


def test_sweep_plus_run_uses_searched_keys(sweep_report, tmp_path):
    sweep, _ = sweep_report
    write_run(tmp_path / "retrain", [91.0, 84.0, 79.0], dropout=0.1, warmup=6)
    main([str(sweep), str(tmp_path / "retrain"), "--out", str(tmp_path / "rep")])
    board = read_csv(tmp_path / "rep" / "trials.csv")
    assert (board[0]["id"], board[0]["kind"]) == ("retrain", "run")
    assert board[0]["MODEL.handec.dropout"] == "0.1" and board[0]["LOSS.lambda_trans"] == ""


def test_importance_needs_two_complete_trials(tmp_path):
    sweep = tmp_path / "one"
    sweep.mkdir()
    study = optuna.create_study(study_name="one", storage=f"sqlite:///{sweep}/optuna.db")
    trial = study.ask(SPACE)
    study.tell(trial, 80.0)
    values, text = param_importance(sweep)
    assert values is None and "not enough trials" in text and "1 complete" in text


def test_bad_input(tmp_path):
    proc = subprocess.run([sys.executable, "sweeps/report.py", str(tmp_path / "missing")],
                          cwd=REPO, capture_output=True, text=True)
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
    subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}",
                    "--window-size=1280,3000", (out / "report.html").as_uri()],
                   check=True, capture_output=True, timeout=60)
    image = Image.open(shot).convert("L")
    assert image.size == (1280, 3000)
    assert len(image.getcolors(maxcolors=65536) or range(65536)) > 50  # not a blank page
