"""Helpers of the deployment-file tests (tests/deploy/test_docker_*.py): the docker/ folder, its
YAML files, the GPU pool sizing against the sweep spec's presets, and the check that no Ray
token is written into a file."""

from __future__ import annotations

import re
from collections.abc import Iterator

import yaml

from tests.helpers import REPO

DOCKER = REPO / "docker"


def docker_yaml(name: str):
    """The parsed YAML file ``docker/<name>``."""
    return yaml.safe_load((DOCKER / name).read_text())


def trial_demand(preset: str) -> tuple[int, float, float]:
    """``(workers at once, CPUs, GPUs per worker)`` of a preset of the sweep spec at full
    concurrency: ``max_concurrent`` trials x ``resources.workers`` (read with yaml; a key the
    preset leaves out has the spec's default, ``sweeps.run.spec.ResourcesCfg``)."""
    from sweeps.run.spec import ResourcesCfg

    spec = yaml.safe_load((REPO / "configs" / "sweep" / "dropout_warmup.yaml").read_text())
    p = spec["presets"][preset]
    res = {**vars(ResourcesCfg()), **p.get("resources", {})}
    return p["max_concurrent"] * int(res["workers"]), float(res["cpu"]), float(res["gpu"])


def check_pool(nodes: int, node_cpu: float, node_gpu: float, preset: str = "gpu") -> None:
    """``nodes`` nodes of ``node_cpu`` CPUs / ``node_gpu`` GPUs run every worker of the
    preset's concurrent trials at once, each node fills its GPUs, and the pool is not
    grossly larger than that (at most twice the GPUs needed)."""
    workers, cpu, gpu = trial_demand(preset)
    assert gpu > 0 and node_gpu >= gpu and node_cpu >= cpu
    per_node = min(node_gpu // gpu, node_cpu // cpu)  # worker bundles on one node
    assert per_node >= node_gpu // gpu, f"{node_cpu} CPUs leave GPUs of a node idle"
    assert nodes * per_node >= workers, (
        f"{nodes} nodes hold {nodes * per_node} workers; the {preset} preset runs {workers}"
    )
    assert nodes * node_gpu <= 2 * workers * gpu, (
        f"{nodes * node_gpu} GPUs for {workers * gpu} the {preset} preset uses"
    )


def _walk(node, path: str = "") -> Iterator[tuple[str, object]]:
    """Every (path, value) in a parsed YAML document."""
    yield path, node
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _walk(v, f"{path}.{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _walk(v, f"{path}[{i}]")


def no_literal_token(doc) -> None:
    """No token value anywhere: RAY_AUTH_TOKEN only by reference (secret, ${VAR}, file)."""
    for where, node in _walk(doc):
        if isinstance(node, dict) and node.get("name") == "RAY_AUTH_TOKEN":
            assert "value" not in node, f"{where}: a literal RAY_AUTH_TOKEN"
        if isinstance(node, str):
            for m in re.finditer(r"(?<![{\w])RAY_AUTH_TOKEN[=:]\s*(\S+)", node):
                assert m.group(1).startswith("${"), f"{where}: RAY_AUTH_TOKEN={m.group(1)}"
        if isinstance(node, dict) and isinstance(node.get("RAY_AUTH_TOKEN"), str):
            assert node["RAY_AUTH_TOKEN"].startswith("${"), f"{where}: literal token"
