"""Prometheus and Grafana in docker/compose.yaml (profile ``monitoring``), without an engine:
Prometheus reads the head's service-discovery file through the shared /tmp/ray volume,
Grafana is provisioned with that Prometheus, Ray's dashboards from the head's session
folder and the sweep dashboard, and the head's dashboard is told where both are."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import yaml

from tests.deploy.docker_helpers import DOCKER, docker_yaml

SD_FILE = "/tmp/ray/prom_metrics_service_discovery.json"  # the head writes it (Ray docs)


def _mounts(svc: dict) -> dict[str, str]:
    """Container path -> source (a volume name, or a path under docker/)."""
    out = {}
    for v in svc["volumes"]:
        source, target = v.split(":")[:2]
        out[target] = source
    return out


def test_prometheus_scrapes_the_nodes_through_the_heads_discovery_file():
    services = docker_yaml("compose.yaml")["services"]
    prom, head = services["prometheus"], services["head"]
    # a plain `up` (the e2e check's) starts the cluster only: these images come from a
    # registry, which not every machine reaches
    assert prom["profiles"] == ["monitoring"] and prom["ports"] == ["127.0.0.1:9090:9090"]
    assert _mounts(head)["/tmp/ray"] == _mounts(prom)["/tmp/ray"]  # the same volume
    assert all(v.endswith(":ro") for v in prom["volumes"])
    # the official image by default; PROMETHEUS_IMAGE for a stand-in (docker/e2e.sh's), and
    # flags that both need spelled out (Debian's binary defaults to relative paths)
    assert prom["image"] == "${PROMETHEUS_IMAGE:-prom/prometheus:v2.53.2}"
    flags = prom["command"].split()
    assert "--config.file=/etc/prometheus/prometheus.yml" in flags
    assert "--web.listen-address=0.0.0.0:9090" in flags
    assert any(f.startswith("--storage.tsdb.path=/") for f in flags)
    config = _mounts(prom)["/etc/prometheus/prometheus.yml"]
    path = DOCKER / config
    jobs = yaml.safe_load(path.read_text())["scrape_configs"]
    assert [f for j in jobs for sd in j["file_sd_configs"] for f in sd["files"]] == [SD_FILE]
    if shutil.which("promtool"):
        check = subprocess.run(
            ["promtool", "check", "config", str(path)], capture_output=True, text=True
        )
        assert check.returncode == 0, check.stdout + check.stderr


def test_grafana_has_rays_dashboards_the_sweep_dashboard_and_the_heads_links():
    services = docker_yaml("compose.yaml")["services"]
    graf, head = services["grafana"], services["head"]
    assert graf["profiles"] == ["monitoring"] and graf["ports"] == ["127.0.0.1:3000:3000"]
    env = head["environment"]
    assert env["RAY_GRAFANA_HOST"] == "http://grafana:3000"
    assert env["RAY_PROMETHEUS_HOST"] == "http://prometheus:9090"
    assert env["RAY_GRAFANA_IFRAME_HOST"] == "http://127.0.0.1:3000"  # the published port
    assert env["RAY_AUTH_MODE"] == "token"  # the node's own settings kept
    mounts = _mounts(graf)
    assert mounts["/tmp/ray"] == _mounts(head)["/tmp/ray"]
    provisioning = DOCKER / mounts["/etc/grafana/provisioning"]
    (source,) = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())[
        "datasources"
    ]
    assert source["url"] == env["RAY_PROMETHEUS_HOST"] and source["name"] == "Prometheus"
    providers = yaml.safe_load((provisioning / "dashboards" / "dashboards.yml").read_text())
    paths = {p["name"]: p["options"]["path"] for p in providers["providers"]}
    assert paths["Ray"] == "/tmp/ray/session_latest/metrics/grafana/dashboards"
    board = next(t for t, s in mounts.items() if s.endswith("sweep_dashboard.json"))
    assert str(Path(board).parent) == paths["handpose sweep"]
    assert (DOCKER / mounts[board]).is_file()
