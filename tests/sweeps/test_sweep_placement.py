"""A trial that the cluster's nodes cannot hold is named in one line before the sweep waits:
an error (exit 2) on a fixed cluster, a warning on one that can grow (``sweeps/run/
placement.py``), checked with the session's local Ray (2 CPUs, no GPU)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from handpose.errors import UserError
from sweeps.run.placement import (
    KUBERAY_ENV,
    autoscaler,
    check_placement,
    node_resources,
    trial_bundles,
    unplaced,
)
from sweeps.run.spec import SPEC_PATH, ResourcesCfg, read_spec_file
from tests.helpers import REPO, data_overrides

GPU_ASKS = "1 x {CPU: 0.01} + 2 x {CPU: 8, GPU: 1}"  # the gpu preset's trial


def _resources(preset: str) -> ResourcesCfg:
    return read_spec_file(SPEC_PATH).presets[preset].resources


def test_the_gpu_preset_is_an_error_on_a_fixed_cluster_without_gpus(local_ray):
    nodes = node_resources()
    assert check_placement(_resources("cpu"), nodes, None) is None  # the cpu preset fits
    with pytest.raises(UserError) as e:
        check_placement(_resources("gpu"), nodes, None)
    msg = str(e.value)
    assert "\n" not in msg
    assert f"each trial asks for {GPU_ASKS}" in msg, msg
    assert "(1 node, 2 CPUs, 0 GPUs)" in msg and "the cluster is fixed" in msg, msg


def test_the_gpu_preset_is_a_warning_on_a_cluster_that_can_grow(local_ray):
    line = check_placement(_resources("gpu"), node_resources(), "KubeRay")
    assert line is not None and "\n" not in line
    assert line.startswith(f"warning: each trial asks for {GPU_ASKS}"), line
    assert line.endswith("trials wait until the autoscaler adds nodes (KubeRay)"), line


def test_bundles_pack_across_nodes_but_never_span_one():
    bundles = trial_bundles(ResourcesCfg(cpu=8, gpu=1, workers=2))
    two_nodes = [{"CPU": 8.0, "GPU": 1.0}, {"CPU": 8.01, "GPU": 1.0}]
    assert unplaced(bundles, two_nodes) == []
    # one node of the same totals has no room left for the trial's own 0.01 CPU
    assert unplaced(bundles, [{"CPU": 16.01, "GPU": 2.0}]) == []
    assert unplaced(bundles, [{"CPU": 16.0, "GPU": 2.0}]) == [{"CPU": 0.01}]
    assert unplaced(bundles, [{"CPU": 4.0, "GPU": 1.0}] * 4) == bundles[1:]


def test_what_says_a_cluster_can_grow(monkeypatch, tmp_path):
    monkeypatch.delenv(KUBERAY_ENV, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert autoscaler() is None
    launcher = tmp_path / "ray_bootstrap_config.yaml"
    launcher.write_text("cluster_name: x\nmax_workers: 0\n")
    assert autoscaler() is None  # a launched cluster that may not grow
    launcher.write_text("cluster_name: x\n")  # max_workers: Ray's default, 2
    assert "the cluster launcher" in autoscaler()
    monkeypatch.setenv(KUBERAY_ENV, "1")
    assert autoscaler().startswith("KubeRay")


def test_the_gpu_preset_without_gpus_exits_2_in_one_line_before_any_trial(
    local_ray, data_dir, tmp_path
):
    """The CLI joins the session's Ray (``--address``, no Ray of its own to start)."""
    import ray

    address = ray.get_runtime_context().gcs_address
    proc = subprocess.run(
        [
            *(sys.executable, "sweeps/dropout_warmup.py", "--preset", "gpu"),
            *("--address", address, "--storage", str(tmp_path), "--name", "gpu"),
            *data_overrides(data_dir),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    errors = [s for s in proc.stderr.splitlines() if s.startswith("error: ")]  # + Ray's logs
    assert len(errors) == 1 and errors[0].startswith(f"error: each trial asks for {GPU_ASKS}")
    preset = next(s for s in proc.stdout.splitlines() if s.startswith("preset: "))
    assert preset.startswith(
        "preset: gpu (--preset; no GPU visible here; cluster: 1 node, 2 CPUs, 0 GPUs, "
        "fixed size), 32 trials"
    ), preset
    assert not (tmp_path / "gpu").exists()  # no sweep folder, no trial
