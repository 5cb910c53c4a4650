"""The cluster path for real, with processes: a head and a worker node on localhost
(`ray start`, token authentication on, tests/deploy/ray_cluster.py), the smoke sweep submitted with
`ray job submit`, trials on both nodes, results in the shared storage path. Plus the
secure-by-default settings of the image: a node with RAY_AUTH_MODE=token and no token
refuses to start.

Every test here starts real Ray nodes (tens of seconds of CPU each): all are `slow`."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest
import yaml

from sweeps.run.spec import SPEC_PATH
from tests.deploy.ray_cluster import (
    RAY,
    Node,
    client_env,
    free_ports,
    local_cluster,
    node_port_args,
    stop_nodes,
)
from tests.helpers import REPO, SMALL_MODEL, data_overrides

HEALTHCHECK = REPO / "docker" / "healthcheck.py"

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("token_source", ["none", "missing file"])
def test_a_node_without_its_token_refuses_to_start(tmp_path, token_source):
    """What the image's RAY_AUTH_MODE=token buys: no token, no node (Ray would otherwise
    start an unauthenticated cluster when it finds no token)."""
    env = client_env(tmp_path / "home")  # an empty HOME: no ~/.ray/auth_token
    if token_source == "missing file":
        env["RAY_AUTH_TOKEN_PATH"] = str(tmp_path / "no-such-token")
    gcs, dash, client = free_ports(3)
    log = tmp_path / "head.log"
    temp_dir = tempfile.mkdtemp(prefix="hpray-", dir="/tmp")  # short: Unix socket paths
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [
                RAY,
                "start",
                "--head",
                "--block",
                f"--port={gcs}",
                f"--dashboard-port={dash}",
                f"--ray-client-server-port={client}",
                "--num-cpus=1",
                "--include-dashboard=false",
                f"--temp-dir={temp_dir}",
                *node_port_args()[1],
            ],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        end = time.monotonic() + 90
        while proc.poll() is None and time.monotonic() < end:
            if "Ray runtime started" in log.read_text(errors="replace"):
                break  # it came up: fail (below) without waiting
            time.sleep(0.5)
        code = proc.poll()
    finally:
        stop_nodes([Node("head", proc, log, 0)])
        shutil.rmtree(temp_dir, ignore_errors=True)
    text = log.read_text(errors="replace")
    assert code not in (0, None), f"the node started without a token:\n{text[-2000:]}"
    assert "AuthenticationError" in text, text[-2000:]


def test_smoke_sweep_as_a_ray_job_on_two_nodes(data_dir, tmp_path):
    shared, name = tmp_path / "shared", "multinode"
    # the smoke preset, two trials at a time: one on each 1-CPU node
    raw = yaml.safe_load(SPEC_PATH.read_text())
    raw["presets"]["smoke"]["max_concurrent"] = 2
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(raw))
    job_id = f"handpose-multinode-{uuid.uuid4().hex[:8]}"
    runtime_env = {"excludes": ["/data", "/outputs", "/results", ".git", "**/__pycache__"]}
    with local_cluster(tmp_path, workers=1, cpus_per_node=1) as cluster:
        node_ids = cluster.alive_node_ids()
        assert len(node_ids) == 2
        # the job API and the CLI refuse a client without the token
        assert cluster.http("/api/jobs/", token=None)[0] == 401
        assert cluster.http("/api/jobs/", token="not-the-token")[0] == 403
        anonymous = {**cluster.env, "HOME": str(tmp_path / "anonymous")}
        refused = subprocess.run(
            [RAY, "job", "list", f"--address={cluster.dashboard}"],
            env=anonymous,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert refused.returncode != 0 and "auth" in refused.stderr.lower()
        # the image's health check passes on both nodes
        for node in cluster.nodes:
            hc = subprocess.run(
                [sys.executable, str(HEALTHCHECK), "--port", str(node.agent_port)],
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert hc.returncode == 0, f"{node.name}: {hc.stdout}"

        started = time.monotonic()
        proc = cluster.ray(
            "job",
            "submit",
            f"--address={cluster.dashboard}",
            f"--submission-id={job_id}",
            f"--working-dir={REPO}",
            f"--runtime-env-json={json.dumps(runtime_env)}",
            "--",
            "python",
            "sweeps/dropout_warmup.py",
            "--smoke",
            "--spec",
            str(spec),
            "--storage",
            str(shared),
            "--name",
            name,
            *data_overrides(data_dir),
            *SMALL_MODEL,  # the job path is tested, not the model: cheap steps
            timeout=200,
            cwd=REPO,
        )
        took = time.monotonic() - started
        logs = proc.stdout[-6000:] + proc.stderr[-3000:]
        assert proc.returncode == 0, f"ray job submit failed after {took:.0f} s:\n{logs}"
        status, body = cluster.http(f"/api/jobs/{job_id}")
        assert status == 200 and json.loads(body)["status"] == "SUCCEEDED", body

    sweep = shared / name  # everything on the shared storage path
    summary = json.loads((sweep / "summary.json").read_text())
    assert (sweep / "best_config.yaml").is_file() and (sweep / "leaderboard.csv").is_file()
    trials = summary["trials"]
    assert len(trials) == 4 and summary["comparable"], summary
    assert not [t for t in trials if t["status"] == "ERROR"], trials
    ran_on = {t["node_id"] for t in trials}
    assert ran_on == node_ids, f"trials ran on {ran_on}, the cluster's nodes are {node_ids}"
    # each trial's run folder (metrics, checkpoints) is in the sweep folder too, whichever
    # node ran it
    runs = {p.parent.name for p in sweep.glob("runs/*/metrics.jsonl")}
    assert len(runs) == len(trials), sorted(p.name for p in (sweep / "runs").iterdir())
    assert all(Path(t["run_dir"]).is_relative_to(sweep) for t in trials if t.get("run_dir"))


@pytest.mark.skipif(
    os.environ.get("HANDPOSE_TEST_DDP_NODES") != "1",
    reason="2.5 min (the suite would pass 15 min on 2 cores): HANDPOSE_TEST_DDP_NODES=1 runs it",
)
def test_two_worker_trials_span_two_nodes(data_dir, tmp_path):
    """Data-parallel trials whose 2 Ray Train workers (0.9 CPU each) cannot share a 1-CPU
    node, so every trial's process group spans both nodes."""
    import yaml

    from sweeps.run.spec import SPEC_PATH

    raw = yaml.safe_load(SPEC_PATH.read_text())
    raw["presets"]["smoke"].update(
        num_samples=2,
        max_concurrent=1,
        resources={"cpu": 0.9, "gpu": 0, "workers": 2},
        space={"MODEL.handec.dropout": {"type": "choice", "values": [0.1, 0.2]}},
    )
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(raw))
    shared, name = tmp_path / "shared", "ddp2nodes"
    runtime_env = {"excludes": ["/data", "/outputs", "/results", ".git", "**/__pycache__"]}
    with local_cluster(tmp_path, workers=1, cpus_per_node=1) as cluster:
        assert len(cluster.alive_node_ids()) == 2
        proc = cluster.ray(
            "job",
            "submit",
            f"--address={cluster.dashboard}",
            f"--working-dir={REPO}",
            f"--runtime-env-json={json.dumps(runtime_env)}",
            "--",
            "python",
            "sweeps/dropout_warmup.py",
            "--smoke",
            "--spec",
            str(spec),
            "--storage",
            str(shared),
            "--name",
            name,
            "GENERAL.total_step=40",
            *data_overrides(data_dir),
            timeout=400,
            cwd=REPO,
        )
        assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    summary = json.loads((shared / name / "summary.json").read_text())
    assert [t["status"] for t in summary["trials"]] == ["COMPLETED", "COMPLETED"]
    assert summary["comparable"]
    for t in summary["trials"]:
        log = (Path(t["run_dir"]) / "log.txt").read_text()
        assert "| 2 process(es) |" in log, log[:2000]
