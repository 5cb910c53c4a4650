"""A real multi-node Ray cluster on localhost (head + worker processes via `ray start`),
with token authentication in a throwaway HOME. Used by the multi-node tests."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

RAY = str(Path(sys.executable).with_name("ray"))


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _node_ports() -> list[str]:
    agent, grpc, metrics, runtime_env, nm, om = free_ports(6)
    return [f"--dashboard-agent-listen-port={agent}", f"--dashboard-agent-grpc-port={grpc}",
            f"--metrics-export-port={metrics}", f"--runtime-env-agent-port={runtime_env}",
            f"--node-manager-port={nm}", f"--object-manager-port={om}"]


@contextlib.contextmanager
def local_cluster(tmp: Path, cpus_per_node: int = 1, workers: int = 1) -> Iterator[dict]:
    """Start a head and ``workers`` worker nodes; yields ``{"address", "dashboard", "env"}``."""
    home = tmp / "home"
    home.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "HOME": str(home), "RAY_AUTH_MODE": "token",
           "RAY_USAGE_STATS_ENABLED": "0"}
    env.pop("RAY_ADDRESS", None)
    subprocess.run([RAY, "get-auth-token", "--generate"], env=env, check=True,
                   capture_output=True, timeout=60)
    gcs, dash, client = free_ports(3)
    address = f"127.0.0.1:{gcs}"
    try:
        subprocess.run([RAY, "start", "--head", f"--port={gcs}", "--node-ip-address=127.0.0.1",
                        f"--dashboard-port={dash}", "--dashboard-host=127.0.0.1",
                        f"--ray-client-server-port={client}", f"--num-cpus={cpus_per_node}",
                        "--disable-usage-stats", *_node_ports()], env=env, check=True,
                       capture_output=True, timeout=120)
        for _ in range(workers):
            subprocess.run([RAY, "start", f"--address={address}",
                            "--node-ip-address=127.0.0.1", f"--num-cpus={cpus_per_node}",
                            *_node_ports()], env=env, check=True, capture_output=True,
                           timeout=120)
        _wait_nodes(address, 1 + workers, env)
        yield {"address": address, "dashboard": f"http://127.0.0.1:{dash}", "env": env}
    finally:
        subprocess.run([RAY, "stop", "--force"], env=env, capture_output=True, timeout=120)


def _wait_nodes(address: str, n: int, env: dict, timeout: float = 60) -> None:
    code = ("import ray, sys; ray.init(address=sys.argv[1], log_to_driver=False);"
            "print(sum(1 for x in ray.nodes() if x['Alive']))")
    end = time.time() + timeout
    while time.time() < end:
        out = subprocess.run([sys.executable, "-c", code, address], env=env,
                             capture_output=True, text=True, timeout=60)
        if out.returncode == 0 and out.stdout.strip().splitlines()[-1] == str(n):
            return
        time.sleep(1)
    raise AssertionError(f"the cluster at {address} did not reach {n} nodes")
