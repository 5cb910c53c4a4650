"""docker/kuberay-rayjob.yaml, parsed and checked without a Kubernetes cluster: the RayJob's
entrypoint run through bash and Ray's `sh -c`, one sweep name per job, the Aim server as the
sweep's Aim target, the GPU group sized for the `gpu` preset of the sweep spec, the shared
volume's init check run here, and its security."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from pathlib import Path

import ray
import yaml

from tests.deploy.docker_helpers import DOCKER, check_pool, no_literal_token

SUBMISSION_ID = "handpose-sweep-x7k2p"  # what the operator makes: <RayJob name>-<5 random>


def _k8s(kind: str) -> dict:
    """The one document of ``kind`` in docker/kuberay-rayjob.yaml."""
    docs = [
        d
        for d in yaml.safe_load_all((DOCKER / "kuberay-rayjob.yaml").read_text())
        if d["kind"] == kind
    ]
    assert len(docs) == 1, f"{len(docs)} {kind} documents"
    return docs[0]


def _pods(job: dict) -> list[dict]:
    spec = job["spec"]["rayClusterSpec"]
    return (
        [spec["headGroupSpec"]["template"]]
        + [g["template"] for g in spec["workerGroupSpecs"]]
        + [job["spec"]["submitterPodTemplate"]]
    )


def _printed_argv(shell: list[str], line: str, cwd: Path, env: dict) -> list[str]:
    proc = subprocess.run(
        [*shell, 'printf "%s\\0" ' + line],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 0, f"{shell}: {proc.stderr}"
    return proc.stdout.split("\0")[:-1]


def _entrypoint_argv(entrypoint: str, tmp: Path, job_id: str = SUBMISSION_ID) -> list[str]:
    """The sweep's argv on the head: KubeRay's submitter runs ``ray job submit ... --
    <entrypoint>`` in bash (here strict: an unquoted glob that matches nothing and an unset
    variable are errors), `ray job submit` re-quotes the words (shlex.join) and the job
    supervisor runs that with ``sh -c`` on the head. ``job_id``: the submission id, which
    the operator sets in the submitter's RAY_JOB_SUBMISSION_ID."""
    env = {"PATH": os.environ["PATH"], "RAY_JOB_SUBMISSION_ID": job_id}
    words = _printed_argv(["bash", "-O", "failglob", "-u", "-c"], entrypoint, tmp, env)
    on_head = _printed_argv(["sh", "-c"], shlex.join(words), tmp, {"PATH": env["PATH"]})
    assert on_head == words, "Ray's sh -c changes the words"
    return words


def test_kuberay_rayjob_runs_the_sweep_on_a_raycluster(tmp_path):
    job = _k8s("RayJob")
    assert job["apiVersion"] == "ray.io/v1"
    entry = _entrypoint_argv(job["spec"]["entrypoint"], tmp_path)
    assert entry[:2] == ["python", "sweeps/dropout_warmup.py"]
    assert entry[entry.index("--storage") + 1].startswith("/mnt/shared/")
    over = dict(a.split("=", 1) for a in entry if "=" in a and not a.startswith("-"))
    assert over["DATA.synthetic.dir"].startswith("/mnt/shared/")
    for split in ("train", "val"):  # brackets and globs reach the sweep untouched
        assert re.fullmatch(rf"\[/mnt/shared/\S+/{split}-\*\.tar\]", over[f"DATA.{split}.source"])
    cluster = job["spec"]["rayClusterSpec"]
    assert cluster["rayVersion"] == ray.__version__
    head = cluster["headGroupSpec"]["template"]["spec"]["containers"][0]
    assert head["workingDir"] == "/home/ray/handpose-sweep"  # the entrypoint's cwd
    assert head["image"].endswith(f"handpose-sweep:{ray.__version__}-cpu")
    gpu = cluster["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]
    assert gpu["image"].endswith(f"handpose-sweep:{ray.__version__}-gpu")
    assert "nvidia.com/gpu" in gpu["resources"]["limits"]
    for pod in _pods(job)[:-1]:  # Ray pods mount the shared volume where the sweep writes
        mounts = {
            m["mountPath"] for c in pod["spec"]["containers"] for m in c.get("volumeMounts", [])
        }
        assert "/mnt/shared" in mounts


def test_kuberay_rayjob_names_each_sweep_by_its_job_id(tmp_path):
    """Applying the file again (a new RayJob object, a new generated job id) never merges
    into an old sweep: the name is the submission id, or the explicit `spec.jobId`. The
    operator sets RAY_JOB_SUBMISSION_ID only in its own submitter command (no `command`
    in the template) and only in K8sJobMode."""
    job = _k8s("RayJob")
    job_id = job["spec"].get("jobId", SUBMISSION_ID)
    entry = _entrypoint_argv(job["spec"]["entrypoint"], tmp_path, job_id)
    assert "--resume" not in entry
    assert entry[entry.index("--name") + 1] == job_id
    assert job["spec"]["submissionMode"] == "K8sJobMode"
    submitter = job["spec"]["submitterPodTemplate"]["spec"]["containers"][0]
    assert "command" not in submitter and "args" not in submitter
    assert job["spec"]["backoffLimit"] == 0  # no blind re-runs of a failed sweep


def test_kuberay_aim_server_is_the_sweeps_aim_target(tmp_path):
    entry = _entrypoint_argv(_k8s("RayJob")["spec"]["entrypoint"], tmp_path)
    url = next(a.split("=", 1)[1] for a in entry if a.startswith("AIM.server_url="))
    host, port = re.fullmatch(r"aim://([\w.-]+):(\d+)", url).groups()
    svc, dep = _k8s("Service"), _k8s("Deployment")
    assert svc["metadata"]["name"] == host and svc["spec"]["type"] == "ClusterIP"
    assert [p["port"] for p in svc["spec"]["ports"]] == [int(port)]
    assert svc["spec"]["selector"].items() <= dep["spec"]["template"]["metadata"]["labels"].items()
    assert dep["spec"]["replicas"] == 1 and dep["spec"]["strategy"]["type"] == "Recreate"
    server = dep["spec"]["template"]["spec"]["containers"][0]
    cmd = server["command"]
    assert cmd[:2] == ["aim", "server"] and cmd[cmd.index("--port") + 1] == port
    assert cmd[cmd.index("--repo") + 1].startswith("/mnt/shared/")
    assert {m["mountPath"] for m in server["volumeMounts"]} == {"/mnt/shared"}
    # only Ray pods may connect (the server has no authentication)
    policy = _k8s("NetworkPolicy")
    assert policy["spec"]["podSelector"]["matchLabels"] == svc["spec"]["selector"]
    assert policy["spec"]["ingress"][0]["ports"] == [{"port": int(port), "protocol": "TCP"}]


def test_kuberay_gpu_group_runs_the_gpu_preset_at_full_concurrency():
    groups = _k8s("RayJob")["spec"]["rayClusterSpec"]["workerGroupSpecs"]
    assert len(groups) == 1
    g = groups[0]
    assert g["minReplicas"] <= g["replicas"] <= g["maxReplicas"]
    limits = g["template"]["spec"]["containers"][0]["resources"]["limits"]
    check_pool(g["maxReplicas"], float(limits["cpu"]), float(limits["nvidia.com/gpu"]))


def test_kuberay_storage_check_fails_with_the_reason(tmp_path):
    """The init containers that check the shared volume is writable by the image's user:
    their script, run here on a folder standing in for /mnt/shared."""
    head = _k8s("RayJob")["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]
    aim = _k8s("Deployment")["spec"]["template"]["spec"]
    checks = [c for pod in (head, aim) for c in pod["initContainers"]]
    assert len(checks) == 2 and checks[0]["args"] == checks[1]["args"]
    assert all({m["mountPath"] for m in c["volumeMounts"]} == {"/mnt/shared"} for c in checks)
    script = checks[0]["args"][0].replace("/mnt/shared", str(tmp_path))
    ok = subprocess.run(checks[0]["command"] + [script], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert {p.name for p in tmp_path.iterdir()} == {"results", "data", "aim"}
    (tmp_path / "aim").rmdir()
    (tmp_path / "aim").write_text("a file where the folder should be")
    bad = subprocess.run(checks[0]["command"] + [script], capture_output=True, text=True)
    assert bad.returncode == 1 and f"error: {tmp_path}/aim is not writable" in bad.stderr


def test_kuberay_rayjob_is_secure():
    job = _k8s("RayJob")
    cluster = job["spec"]["rayClusterSpec"]
    assert cluster["authOptions"]["mode"] == "token"  # operator-made secret, env everywhere
    assert cluster["headGroupSpec"].get("serviceType", "ClusterIP") == "ClusterIP"
    for pod in [*_pods(job), _k8s("Deployment")["spec"]["template"]]:
        assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
        for c in pod["spec"]["containers"] + pod["spec"].get("initContainers", []):
            assert c["securityContext"]["allowPrivilegeEscalation"] is False
            for e in c.get("env", []):  # nothing may switch authentication off
                assert e["name"] != "RAY_AUTH_MODE" or e.get("value") == "token"
    for doc in yaml.safe_load_all((DOCKER / "kuberay-rayjob.yaml").read_text()):
        no_literal_token(doc)
