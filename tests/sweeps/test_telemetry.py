"""The sweep's Ray application metrics (sweeps/run/telemetry.py), cheaply: a trial whose
export fails trains on with one warning; an odd sweep name reaches the node's metrics
endpoint of the session's local Ray; the driver's counts from fake trials and a journal;
the spec switch; the dashboard's queries against the declared metric names. The values of
a real sweep are checked against its metrics.jsonl in tests/deploy/test_multinode.py."""

from __future__ import annotations

import json
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from sweeps.run import telemetry, trainable
from sweeps.run.spec import SPEC_PATH, read_spec_file
from tests.deploy.prometheus_helpers import SWEEP_DASHBOARD, scrape, unknown_metrics

STEPS = (10, 20, 30)


def _fake_train(cfg, hook, run_dir, aim_extra, log_hook=None):
    for step in STEPS:
        if log_hook is not None:
            log_hook({"step": step, "lr": 1e-4, "dropout_rate": 0.1, "samples_per_s": 50.0})
        hook({"step": step, "mpjpe": 100.0 - step}, None)


def _run(tmp_path: Path, monkeypatch, export: bool) -> list[dict]:
    monkeypatch.setattr(trainable, "train", _fake_train)
    node = SimpleNamespace(get_node_id=lambda: "n")
    monkeypatch.setattr(trainable.ray, "get_runtime_context", lambda: node)
    cfg = SimpleNamespace(GENERAL=SimpleNamespace(total_step=STEPS[-1]))
    monkeypatch.setattr(trainable, "load_config", lambda base, **_: cfg)
    reported: list[dict] = []
    trial = {"name": "t", "experiment": "sweep", "id": "abc_00000"}
    trainable._run_trial(
        {}, {}, tmp_path / "run", trial, lambda m, c: reported.append(m), None, 0.0, export
    )
    return reported


def test_a_failing_export_never_fails_the_trial_and_warns_once(tmp_path, monkeypatch):
    from ray.util import metrics

    def unreachable(self, value, tags=None):
        raise ConnectionError("metrics agent unreachable")

    monkeypatch.setattr(metrics.Gauge, "set", unreachable)
    warned: list[str] = []  # the trial's logger (its handlers are the run's console/log.txt)
    monkeypatch.setattr(telemetry.LOG, "warning", lambda msg, *a: warned.append(msg % a))
    reported = _run(tmp_path, monkeypatch, export=True)
    assert [r["step"] for r in reported] == list(STEPS)  # trained and reported on
    warnings = [m for m in warned if "metrics export off" in m]
    assert len(warnings) == 1, warned
    assert "metrics agent unreachable" in warnings[0]


@pytest.mark.parametrize("export", [True, False])
def test_the_spec_switch_turns_the_trial_export_off(tmp_path, monkeypatch, export):
    made = []
    monkeypatch.setattr(trainable, "TrialMetrics", lambda *a: made.append(a) or _Recorder())
    _run(tmp_path, monkeypatch, export=export)
    assert made == ([("sweep", "abc_00000")] if export else [])


def test_the_spec_key_defaults_on_and_reaches_the_tuner(tmp_path):
    from sweeps.run.tuning import sweep_callbacks

    preset = read_spec_file(SPEC_PATH).presets["smoke"]
    assert preset.export_metrics is True
    run = SimpleNamespace(spec=SimpleNamespace(settings=preset), name="s", sweep_dir=tmp_path)
    assert [type(c).__name__ for c in sweep_callbacks(run)] == ["SweepMetrics"]
    raw = yaml.safe_load(SPEC_PATH.read_text())
    raw["presets"]["smoke"]["export_metrics"] = False
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(raw))
    run.spec.settings = read_spec_file(path).presets["smoke"]
    assert sweep_callbacks(run) == []


class _Recorder:
    """A Publisher that keeps the latest value of each (name, tags)."""

    def __init__(self, *args, **kwargs) -> None:
        self.latest: dict[tuple, float] = {}

    def publish(self, points) -> None:
        for name, value, tags in points:
            self.latest[(name, tuple(sorted(tags.items())))] = value

    def log_step(self, values) -> None:
        pass

    validation = log_step

    def close(self) -> None:
        pass


def _trial(tid: str, status: str, **last) -> SimpleNamespace:
    return SimpleNamespace(trial_id=tid, status=status, last_result=last)


def test_the_driver_counts_trials_best_baseline_and_rung_decisions(tmp_path, monkeypatch):
    recorder = _Recorder()
    monkeypatch.setattr(telemetry, "Publisher", lambda *a, **k: recorder)
    journal = tmp_path / "scheduler_state.jsonl"
    lines = [
        {"add": "a", "index": 0, "sentinel": True},
        {"rung": 20, "trial": "a", "value": -90.0, "num_stopped": 0},
        {"rung": 20, "trial": "b", "value": -95.0, "num_stopped": 0},
        {"rung": 20, "trial": "c", "value": -99.0, "num_stopped": 1, "stop": True},
    ]
    journal.write_text("".join(json.dumps(r) + "\n" for r in lines) + '{"rung": 40, "tr')
    trials = [
        _trial("a", "TERMINATED", mpjpe=80.0),  # the baseline, completed
        _trial("b", "TERMINATED", mpjpe=70.0),
        _trial("c", "TERMINATED", mpjpe=99.0),  # stopped at rung 20 (the journal)
        _trial("d", "TERMINATED", mpjpe=float("nan"), diverged=1),
        _trial("e", "ERROR"),
        _trial("f", "RUNNING", mpjpe=60.0),  # not final: not the best
        _trial("g", "PENDING"),
    ]
    cb = telemetry.SweepMetrics("sw", journal)
    cb.on_trial_result(0, trials, trials[0], {"mpjpe": 81.5})
    cb.on_step_end(0, trials)

    def value(name: str, **tags: str) -> float:
        return recorder.latest[(name, tuple(sorted({"sweep": "sw", **tags}.items())))]

    counts = {s: value("handpose_sweep_trials", status=s) for s in telemetry.STATUSES}
    assert counts == {
        "pending": 1,
        "running": 1,
        "completed": 2,
        "stopped_early": 1,
        "errored": 2,
    }
    assert value("handpose_sweep_best_mpjpe_mm") == 70.0
    assert value("handpose_sweep_baseline_mpjpe_mm") == 81.5
    assert value("handpose_sweep_rung_decisions", rung="20", decision="continue") == 2
    assert value("handpose_sweep_rung_decisions", rung="20", decision="stop") == 1
    # the torn last line is read once it is whole
    with open(journal, "a") as f:
        f.write('ial": "b", "value": -70.0, "num_stopped": 1}\n')
    cb.on_experiment_end(trials)
    assert value("handpose_sweep_rung_decisions", rung="40", decision="continue") == 1
    assert value("handpose_sweep_rung_decisions", rung="20", decision="continue") == 2


def test_a_sweep_name_with_odd_characters_is_exported_safely(local_ray):
    import ray

    name = 'smoke "β" run\\1\n{x}'
    exporter = telemetry.TrialMetrics(name, "abc_00001\t")
    exporter.validation({"step": 40, "mpjpe": 42.125, "pa_mpjpe": 30.5})
    node = next(n for n in ray.nodes() if n["Alive"])
    url = f"http://{node['NodeManagerAddress']}:{node['MetricsExportPort']}/metrics"
    try:
        end, found = time.monotonic() + 30, []
        while not found and time.monotonic() < end:
            time.sleep(0.5)
            found = [s for s in scrape(url) if s.name == "ray_handpose_trial_mpjpe_mm"]
    finally:
        exporter.close()
    assert not exporter.publisher.failed
    (sample,) = [s for s in found if s.labels["trial_id"] == "abc_00001_"]
    assert sample.labels["sweep"] == 'smoke "\\u03b2" run\\1_{x}' == telemetry.label_value(name)
    assert sample.value == 42.125


def test_every_dashboard_query_names_a_declared_metric(tmp_path):
    declared = {f"ray_{n}" for n, _, _ in telemetry.LOG_STEP_METRICS}
    declared |= {f"ray_{n}" for n, _, _ in telemetry.VALIDATION_METRICS}
    declared |= {f"ray_{n}" for n in telemetry.SWEEP_METRICS}
    assert unknown_metrics(SWEEP_DASHBOARD, declared) == {}
    # a misspelled metric in a panel is caught
    board = json.loads(SWEEP_DASHBOARD.read_text())
    target = board["panels"][0]["targets"][0]
    target["expr"] = target["expr"].replace("mpjpe_mm", "mpjep_mm")
    bad = tmp_path / "board.json"
    bad.write_text(json.dumps(board))
    assert unknown_metrics(bad, declared) == {
        board["panels"][0]["title"]: {"ray_handpose_trial_mpjep_mm"}
    }
