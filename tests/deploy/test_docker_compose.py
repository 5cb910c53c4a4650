"""docker/compose.yaml, parsed and checked without a Docker engine: against the Compose
Specification's schema, a Ray head, two workers and an Aim server that run the `smoke` preset
of the sweep spec at full concurrency, and its security (token from the shell, loopback
ports only)."""

from __future__ import annotations

import json
import re

import jsonschema
import pytest
import ray

from tests.deploy.docker_helpers import DOCKER, docker_yaml, no_literal_token, trial_demand


def test_compose_matches_the_compose_spec():
    """Against the Compose Specification's JSON schema (the copy vendored in
    check-jsonschema, a dev dependency): unknown or misspelt keys fail here."""
    pytest.importorskip("check_jsonschema", reason="pip install -e '.[dev]' (check-jsonschema)")
    from importlib.resources import files

    schema = json.loads(
        (files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json").read_text()
    )
    validator = jsonschema.validators.validator_for(schema)(schema)
    errors = [
        f"{'.'.join(map(str, e.path))}: {e.message}"
        for e in validator.iter_errors(docker_yaml("compose.yaml"))
    ]
    assert not errors, "\n".join(errors)


def _ray_services(compose: dict) -> dict[str, dict]:
    return {n: s for n, s in compose["services"].items() if s.get("command", "").startswith("ray ")}


MONITORING = {"prometheus", "grafana"}  # tests/deploy/test_prometheus_compose.py


def test_compose_runs_a_head_two_workers_and_an_aim_server():
    compose = docker_yaml("compose.yaml")
    ray_nodes = _ray_services(compose)
    services = {n: s for n, s in compose["services"].items() if n not in MONITORING}
    assert set(ray_nodes) == {"head", "worker-1", "worker-2"} and set(compose["services"]) == {
        *ray_nodes,
        "aim",
        *MONITORING,
    }
    images = {s["image"] for s in services.values()}
    assert images == {f"handpose-sweep:{ray.__version__}-cpu"}
    args = services["head"]["build"]["args"]
    assert args["TORCH_CUDA"] == "cpu" and args["TORCH_INDEX_URL"].endswith("/whl/cpu")
    head = services["head"]["command"]
    for flag in (
        "--head",
        "--block",
        "--port=6379",
        "--dashboard-port=8265",
        "--ray-client-server-port=10001",
    ):
        assert flag in head
    for name in ("worker-1", "worker-2"):
        assert "--address=head:6379" in services[name]["command"]
        assert services[name]["depends_on"]["head"]["condition"] == "service_healthy"
    for svc in services.values():
        assert "shared:/mnt/shared" in svc["volumes"]
    for svc in ray_nodes.values():
        assert svc["environment"]["HANDPOSE_SWEEP_STORAGE"].startswith("/mnt/shared/")
    # the Aim server: the repo on the shared volume, up before the driver's node, the URL
    # the file's own submit command passes
    aim = services["aim"]
    assert re.fullmatch(
        r"aim server --repo /mnt/shared/\S+ --host 0\.0\.0\.0 --port 53800"
        r" --yes",
        aim["command"],
    )
    assert "53800" in " ".join(aim["healthcheck"]["test"])
    assert services["head"]["depends_on"]["aim"]["condition"] == "service_healthy"
    assert "AIM.server_url=aim://aim:53800" in (DOCKER / "compose.yaml").read_text()
    # the smoke preset runs at full concurrency on the workers
    workers, cpu, _ = trial_demand("smoke")
    cpus = sum(
        int(re.search(r"--num-cpus=(\d+)", s["command"])[1])
        for n, s in ray_nodes.items()
        if n != "head"
    )
    assert cpus >= workers * cpu, f"{cpus} CPUs for {workers} workers of {cpu} CPUs"


def test_compose_is_secure():
    compose = docker_yaml("compose.yaml")
    ray_nodes = _ray_services(compose)
    for name, svc in compose["services"].items():
        env = svc.get("environment", {})
        if name in ray_nodes:
            assert env["RAY_AUTH_MODE"] == "token", name
            assert env["RAY_AUTH_TOKEN"].startswith("${RAY_AUTH_TOKEN:?"), name  # the shell's
        elif name not in MONITORING:  # the Aim server: no Ray token, no port (no authentication)
            assert "RAY_AUTH_TOKEN" not in env and not svc.get("ports"), name
        else:
            assert "RAY_AUTH_TOKEN" not in env, name
        for port in svc.get("ports", []):
            port = re.sub(r"\$\{\w+:-(\d+)\}", r"\1", str(port))  # a variable's default
            host = port.rsplit(":", 2)
            assert len(host) == 3 and host[0] == "127.0.0.1", f"{name} publishes {port}"
        assert "privileged" not in svc and svc.get("network_mode") != "host"
    no_literal_token(compose)
