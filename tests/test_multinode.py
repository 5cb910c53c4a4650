"""The cluster path for real: a head and a worker node on localhost (`ray start`, token
authentication on), the smoke sweep submitted with `ray job submit`, trials on both nodes,
results in the shared storage path."""

from __future__ import annotations

import json
import subprocess
import urllib.request

import pytest

from .conftest import REPO, data_overrides
from .ray_cluster import RAY, local_cluster

pytestmark = pytest.mark.slow


def test_smoke_sweep_as_a_ray_job_on_two_nodes(data_dir, tmp_path):
    shared = tmp_path / "shared"
    with local_cluster(tmp_path, cpus_per_node=1, workers=1) as cluster:
        # the job API refuses requests without the token
        with pytest.raises(urllib.request.HTTPError) as denied:
            urllib.request.urlopen(f"{cluster['dashboard']}/api/jobs/", timeout=10)
        assert denied.value.code in (401, 403)
        runtime_env = json.dumps({"excludes": ["data", "outputs", "results", ".git"]})
        proc = subprocess.run(
            [RAY, "job", "submit", f"--address={cluster['dashboard']}",
             f"--working-dir={REPO}", f"--runtime-env-json={runtime_env}", "--",
             "python", "sweeps/dropout_warmup.py", "--smoke", "--storage", str(shared),
             "--name", "multinode", *data_overrides(data_dir)],
            env=cluster["env"], capture_output=True, text=True, timeout=400)
        assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
        assert "SUCCEEDED" in proc.stdout
    summary = json.loads((shared / "multinode" / "summary.json").read_text())
    assert len(summary["trials"]) == 4 and summary["comparable"]
    nodes = {t["node_id"] for t in summary["trials"]}
    assert len(nodes) == 2, f"trials ran on {nodes}"
    assert (shared / "multinode" / "best_config.yaml").is_file()
