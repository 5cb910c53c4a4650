"""The containerized end-to-end check (run it with ``bash docker/e2e.sh``, which installs
and starts the engine first): builds the stand-in Ray base and the project's image, brings
up docker/compose.yaml (head, two workers, Aim server) with token auth, and checks the
cluster, the bad inputs, a smoke sweep as a Ray job with Prometheus (compose's ``monitoring``
profile, docker/e2e/monitoring.py) scraping it, a worker lost mid-sweep, the head lost
mid-sweep with ``--resume``, and the same smoke sweep on the host. Tears down what it made
(containers, networks, volumes), keeps the images unless ``--rmi``; the last line is
``N passed, M failed`` and the exit code is 1 when a check failed."""

from __future__ import annotations

import argparse
import functools
import http.server
import os
import re
import secrets
import shutil
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

import harness
import monitoring
import scenarios
from harness import DOCKER, REPO, Cluster, Tally, api, log, ray_cli, sh, wait_for

STANDIN = "handpose-sweep:standin-ray2.60.0-py311-cpu"
IMAGE = "handpose-sweep:2.60.0-cpu"  # the tag docker/compose.yaml runs
PROJECT = "hpe2e"
SERVICES = ("aim", "head", "worker-1", "worker-2")


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # pip's 404s for other packages are expected
        pass


def torch_index(tmp: Path) -> tuple[str, http.server.ThreadingHTTPServer | None]:
    """``TORCH_INDEX_URL`` for the build: the environment's, else a simple index served on
    127.0.0.1 holding the CPU torch wheel that pip finds here (pinned in constraints.txt)."""
    if os.environ.get("TORCH_INDEX_URL"):
        return os.environ["TORCH_INDEX_URL"], None
    pin = re.search(r"^torch==(\S+)$", (REPO / "docker/constraints.txt").read_text(), re.M)
    folder = tmp / "simple" / "torch"
    folder.mkdir(parents=True)
    r = sh(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "-q",
            "--no-deps",
            "--only-binary=:all:",
            "--python-version",
            "3.11",
            "--platform",
            "manylinux_2_28_x86_64",
            "-d",
            str(folder),
            f"torch=={pin[1]}+cpu",
        ],
        timeout=900,
    )
    if r.returncode:
        sys.exit(f"error: no CPU torch {pin[1]} wheel for the image: {r.stderr.strip()[-300:]}")
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(tmp))
    )
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}/simple", server


def build_image(context: Path, tag: str, index: str):
    args = [
        DOCKER,
        "build",
        "--progress",
        "plain",
        "--network",
        "host",
        "-f",
        str(context / "docker/Dockerfile"),
        "-t",
        tag,
        "--build-arg",
        f"BASE_IMAGE={STANDIN}",
        "--build-arg",
        "RAY_IMAGE_VARIANT=py311-cpu",
        "--build-arg",
        f"TORCH_INDEX_URL={index}",
        "--build-arg",
        "TORCH_CUDA=cpu",
    ]
    cert = os.environ.get("PIP_CERT_SECRET")  # set by docker/e2e.sh from docker/lib.sh
    args += ["--secret", f"id=pip_cert,src={cert}"] if cert else []
    t0 = time.monotonic()
    r = sh(args + [str(context)], timeout=3000)
    return r, time.monotonic() - t0


def build(t: Tally, tmp: Path, cold: bool) -> None:
    if cold:  # no layer and no pip cache left from earlier builds; the stand-in made anew
        sh([DOCKER, "builder", "prune", "-af"])
        sh([DOCKER, "rmi", IMAGE, STANDIN, monitoring.STANDIN, "handpose-sweep:bookworm-rootfs"])
    t0 = time.monotonic()
    r = sh(["bash", "docker/standin/build.sh", STANDIN], timeout=1800)
    t.check(
        "stand-in Ray base built from Debian packages",
        r.returncode == 0,
        r.stderr.strip()[-300:] if r.returncode else "",
    )
    t.measure("stand-in base build (s)", round(time.monotonic() - t0))
    index, server = torch_index(tmp)
    r, secs = build_image(REPO, IMAGE, index)
    ok = t.check(
        "image built from docker/Dockerfile (its asserts pass)",
        r.returncode == 0,
        (r.stdout + r.stderr).strip()[-600:] if r.returncode else "",
    )
    if ok:
        size = sh([DOCKER, "image", "inspect", "-f", "{{.Size}}", IMAGE]).stdout.strip()
        t.measure("image build (s)" + (" cold" if cold else ""), round(secs))
        t.measure("image size (GB)", round(int(size or 0) / 1e9, 2))
        rebuild(t, tmp, index)
    if server:
        server.shutdown()


def rebuild(t: Tally, tmp: Path, index: str) -> None:
    """A one-line change to sweeps/ rebuilds the code layers only (the build context is a
    copy of the tree, so the working tree is not touched)."""
    ctx = tmp / "ctx"
    shutil.copytree(
        REPO,
        ctx,
        ignore=shutil.ignore_patterns(".git", "data", "results", "outputs", "__pycache__"),
    )
    with (ctx / "sweeps" / "dropout_warmup.py").open("a") as f:
        f.write("# a one-line change\n")
    r, secs = build_image(ctx, IMAGE + "-rebuild", index)
    log_text = r.stdout + r.stderr
    deps = re.search(r"#(\d+) \[[^\]]*\] RUN .*pip install --index-url", log_text)
    cached = bool(deps) and f"#{deps[1]} CACHED" in log_text
    t.check(
        "rebuild after a one-line change to sweeps/: the dependency layer is cached",
        r.returncode == 0 and cached,
        f"{secs:.0f} s",
    )
    t.measure("rebuild after a one-line change to sweeps/ (s)", round(secs))
    sh([DOCKER, "rmi", IMAGE + "-rebuild"])


def bad_inputs(t: Tally, cl: Cluster, tmp: Path) -> None:
    r = sh(["bash", "docker/standin/build.sh"], env={"DOCKER_HOST": "unix:///nonexistent.sock"})
    lines = r.stderr.strip().splitlines()
    t.check(
        "build without an engine: one-line error, exit 2",
        r.returncode == 2 and len(lines) == 1,
        r.stderr.strip(),
    )
    r = cl.compose("up", "-d", token="")
    lines = (r.stdout + r.stderr).strip().splitlines()
    t.check(
        "cluster started without RAY_AUTH_TOKEN: one-line error",
        r.returncode != 0 and len(lines) == 1 and "RAY_AUTH_TOKEN" in lines[0],
        str(lines[-1:]),
    )
    locked = tmp / "root-owned"
    locked.mkdir(mode=0o755)
    r = sh(
        [
            DOCKER,
            "run",
            "--rm",
            "-v",
            f"{locked}:/mnt/shared",
            IMAGE,
            "python",
            "sweeps/dropout_warmup.py",
            "--smoke",
        ],
        timeout=300,
    )
    lines = r.stderr.strip().splitlines()
    t.check(
        "shared volume the runtime user cannot write: one-line error, exit 2",
        r.returncode == 2 and len(lines) == 1 and "cannot write" in r.stderr,
        str(lines[-1:]),
    )


def _busy(ports: tuple[int, ...]) -> list[int]:
    """The loopback ports among ``ports`` that something on this machine holds."""
    busy = []
    for port in ports:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                busy.append(port)
    return busy


def cluster_up(t: Tally, cl: Cluster) -> bool:
    # A local Ray of another test run on this machine takes 8265 whenever it is free (its
    # dashboard moves on when 8265 is taken; a published port cannot): unless
    # HANDPOSE_DASHBOARD_PORT is given, the head's dashboard is published on a free port.
    if "HANDPOSE_DASHBOARD_PORT" not in os.environ:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        os.environ["HANDPOSE_DASHBOARD_PORT"] = str(port)  # compose reads it
        harness.DASHBOARD = f"http://127.0.0.1:{port}"
        log(f"the head's dashboard: {harness.DASHBOARD}")
    busy = _busy((10001, 9090))
    if busy:
        log(f"waiting for 127.0.0.1 ports {busy} to be free (held on this machine)")
        wait_for("the published ports free", lambda: not _busy((10001, 9090)), 900, 5)
    t0 = time.monotonic()
    r = cl.compose("up", "-d")
    failed = r.returncode != 0
    if not t.check("compose up (docker/compose.yaml)", not failed, r.stderr[-500:] * failed):
        return False
    healthy = wait_for(
        "every container healthy", lambda: all(cl.health(s) == "healthy" for s in SERVICES), 600, 5
    )
    t.check(
        "every container healthy by its own HEALTHCHECK",
        bool(healthy),
        {s: cl.health(s) for s in SERVICES}.__repr__(),
    )
    t.measure("cluster up to all healthy (s)", round(time.monotonic() - t0))
    return bool(healthy)


def security(t: Tally, cl: Cluster, home: Path) -> None:
    status, _ = api("/api/jobs/", None)
    t.check("dashboard refuses a request without the token", status in (401, 403), str(status))
    status, _ = api("/api/jobs/", "0" * 64)
    t.check("dashboard refuses a wrong token", status in (401, 403), str(status))
    status, _ = api("/api/jobs/", cl.token)
    t.check("dashboard answers with the token", status == 200, str(status))
    for name, tok in (("no", None), ("a wrong", "0" * 64)):
        r = ray_cli(["job", "submit", "--", "echo", "hi"], tok, home, timeout=120)
        last = (r.stdout + r.stderr).strip().splitlines()[-1:]
        t.check(
            f"job submitted with {name} token is refused",
            r.returncode not in (0, 124),
            f"rc {r.returncode} {last}",
        )
    for name, tok in (("no", ""), ("a wrong", "0" * 64)):
        r = sh(
            [
                DOCKER,
                "run",
                "--rm",
                "--network",
                cl.network(),
                "-e",
                f"RAY_AUTH_TOKEN={tok}",
                IMAGE,
                "ray",
                "start",
                "--block",
                "--address=head:6379",
                "--num-cpus=1",
            ],
            timeout=180,
        )
        last = (r.stdout + r.stderr).strip().splitlines()[-1:]
        t.check(
            f"worker started with {name} token is refused",
            r.returncode not in (0, 124),
            f"rc {r.returncode} {last}",
        )


def teardown(t: Tally, cl: Cluster, rmi: bool) -> None:
    # with the profile: its services count as the project's whichever compose runs it
    r = cl.compose(*monitoring.PROFILE, "down", "-v", "--remove-orphans", "-t", "10")
    log(f"teardown: compose down rc {r.returncode}")
    left = monitoring.left(cl)
    t.check("teardown: no container of the project left (prometheus included)", not left, str(left))
    if rmi:
        sh([DOCKER, "rmi", IMAGE, STANDIN, monitoring.STANDIN, "handpose-sweep:bookworm-rootfs"])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rmi", action="store_true", help="also remove the images it built")
    p.add_argument(
        "--cold",
        action="store_true",
        help="build from nothing: prune the build cache, remake the stand-in base",
    )
    p.add_argument("--skip-build", action="store_true", help=f"reuse {IMAGE}")
    p.add_argument(
        "--quick",
        action="store_true",
        help="up to the smoke sweep and its Prometheus checks only (no host sweep, no node losses)",
    )
    args = p.parse_args(argv)
    os.environ.setdefault("PROMETHEUS_IMAGE", monitoring.STANDIN)  # compose reads it
    t = Tally()
    compose = ["docker-compose"] if shutil.which("docker-compose") else [DOCKER, "compose"]
    cl = Cluster(PROJECT, secrets.token_hex(32), compose)
    with tempfile.TemporaryDirectory(prefix="handpose-e2e-") as tmp:
        try:
            if not args.skip_build:
                build(t, Path(tmp), args.cold)
            bad_inputs(t, cl, Path(tmp))
            # a previous run's
            cl.compose(*monitoring.PROFILE, "down", "-v", "--remove-orphans", "-t", "5")
            if cluster_up(t, cl):
                sweeps(t, cl, Path(tmp), args.quick)
        finally:
            teardown(t, cl, args.rmi)
    for k, v in t.numbers.items():
        print(f"  {k}: {v}")
    print(t.closing_line())
    return 1 if t.failed else 0


def sweeps(t: Tally, cl: Cluster, tmp: Path, quick: bool) -> None:
    """Token checks, then the sweeps on the running cluster (``quick``: the smoke sweep and
    its Prometheus checks only)."""
    home = tmp / "home"
    home.mkdir()
    cl.shared_python(f"open('{scenarios.SPEC}', 'w').write({scenarios.e2e_spec()!r})")
    security(t, cl, home)
    prometheus = monitoring.start(t, cl)  # scrapes the smoke sweep as it runs
    container_s = scenarios.smoke(t, cl, home)
    if prometheus:
        monitoring.check(t, cl, "smoke", scenarios.RESULTS)
    if quick:
        return
    host_s = scenarios.host_smoke(t)
    if container_s and host_s:
        t.measure("smoke sweep: containers / host wall (s)", f"{container_s:.0f} / {host_s:.0f}")
    scenarios.node_loss(t, cl, home)
    scenarios.head_loss(t, cl, home)


if __name__ == "__main__":
    sys.exit(main())
