"""docker/cluster.yaml (the Ray cluster launcher's config), checked without a cloud: Ray's
own config validation (the schema shipped in the ray package), the head, GPU workers, shared
storage and ports, the Aim server on the head, the GPU pool sized for the `gpu` preset of the
sweep spec, and its security (token by file, loopback dashboard, no open Ray ports)."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import jsonschema
import ray

from tests.deploy.docker_helpers import check_pool, docker_yaml, no_literal_token

RAY_PORTS = ("6379", "8265", "10001")


def test_cluster_yaml_is_valid_for_ray_up():
    cfg = docker_yaml("cluster.yaml")
    schema = json.loads((Path(ray.__file__).parent / "autoscaler" / "ray-schema.json").read_text())
    jsonschema.validate(cfg, schema)
    # what `ray up` does before it touches the cloud: fill in the provider defaults, validate
    from ray.autoscaler._private.util import prepare_config, validate_config

    validate_config(prepare_config(copy.deepcopy(cfg)))


def test_cluster_yaml_has_head_gpu_workers_shared_storage_and_ports():
    cfg = docker_yaml("cluster.yaml")
    types = cfg["available_node_types"]
    assert cfg["head_node_type"] in types
    assert types[cfg["head_node_type"]]["resources"].get("CPU") == 0  # trials on workers
    gpu = [t for n, t in types.items() if n != cfg["head_node_type"]]
    assert gpu and all(t["max_workers"] >= 1 for t in gpu)
    docker = cfg["docker"]
    for image in (docker["image"], docker["head_image"]):
        assert f"handpose-sweep:{ray.__version__}-" in image
    assert docker["image"].endswith("-gpu")
    opts = " ".join(docker["run_options"])
    assert "-v /mnt/shared:/mnt/shared" in opts
    assert "HANDPOSE_SWEEP_STORAGE=/mnt/shared/results" in opts
    assert any("/mnt/shared" in c for c in cfg["initialization_commands"])
    head = " ".join(cfg["head_start_ray_commands"])
    for flag in ("--port=6379", "--dashboard-port=8265", "--ray-client-server-port=10001"):
        assert flag in head
    assert "$RAY_HEAD_IP:6379" in " ".join(cfg["worker_start_ray_commands"])


def test_cluster_yaml_runs_the_aim_server_on_the_head_and_sizes_the_gpu_pool():
    cfg = docker_yaml("cluster.yaml")
    head, workers = (
        " ".join(cfg[k]) for k in ("head_start_ray_commands", "worker_start_ray_commands")
    )
    # the Aim server on the head, its repo on the shared storage, chowned for the image's user
    assert re.search(r"aim server --repo /mnt/shared/aim .*--port 53800", head)
    assert "/mnt/shared/aim" in " ".join(
        c for c in cfg["initialization_commands"] if "chown 1000:100" in c
    )
    # aim://head:53800 is the head everywhere
    assert '"127.0.0.1 head"' in head and '"$RAY_HEAD_IP head"' in workers
    # the GPU pool runs the gpu preset at full concurrency
    types = cfg["available_node_types"]
    pools = [t for n, t in types.items() if n != cfg["head_node_type"]]
    assert len(pools) == 1 and cfg["max_workers"] >= pools[0]["max_workers"]
    check_pool(pools[0]["max_workers"], pools[0]["resources"]["CPU"], pools[0]["resources"]["GPU"])


def test_cluster_yaml_is_secure():
    cfg = docker_yaml("cluster.yaml")
    opts = cfg["docker"]["run_options"]
    assert "-e RAY_AUTH_MODE=token" in opts
    # the token: a file synced from the user's machine, never a value in the config
    path = next(o.split("=", 1)[1] for o in opts if o.startswith("-e RAY_AUTH_TOKEN_PATH="))
    mounted = {dst.replace("~", "/home/ray"): src for dst, src in cfg["file_mounts"].items()}
    assert str(Path(path).parent) in mounted, "the token file is not synced to the nodes"
    assert not any("RAY_AUTH_TOKEN=" in o for o in opts)
    no_literal_token(cfg)
    # dashboard/job API on loopback (SSH tunnel), no inbound rules for Ray's ports
    assert "--dashboard-host=127.0.0.1" in " ".join(cfg["head_start_ray_commands"])
    for rule in cfg["provider"].get("security_group", {}).get("IpPermissions", []):
        ports = {str(rule.get("FromPort")), str(rule.get("ToPort"))}
        assert not ports & set(RAY_PORTS), f"security group opens {ports}"
