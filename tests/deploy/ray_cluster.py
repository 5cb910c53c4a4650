"""A real multi-node Ray cluster on localhost: a head and worker nodes as separate
`ray start --block` processes, with token authentication on, in a throwaway HOME.

    with local_cluster(tmp_path, workers=1, cpus_per_node=1) as cluster:
        subprocess.run([RAY, "job", "submit", f"--address={cluster.dashboard}", ...],
                       env=cluster.env)

Isolation from other Ray instances on the machine (another test, a colleague's
``ray.init()``):

- every port is a free random one (GCS, dashboard, client, agents, node/object managers),
  so nothing binds Ray's defaults (6379, 8265, 10001, 52365);
- ``--temp-dir`` is a fresh short folder under /tmp (each worker node: a subfolder of its
  own): the session, its sockets and the
  ``ray_current_cluster`` file live there, so a plain ``ray.init()`` elsewhere never finds
  and joins this cluster (it reads /tmp/ray/ray_current_cluster);
- teardown never runs ``ray stop``: that kills every Ray process of the user on the
  machine, whoever started it. Each node runs in its own session (``setsid``); teardown
  sends SIGTERM to those ``ray start --block`` processes (Ray drains and stops the node's
  own processes), then SIGKILLs whatever is left of their process trees and sessions.
  Job drivers run in a session of their own but are descendants of the head, so the
  snapshot of the trees taken before stopping catches them.

Token authentication, as Ray 2.60 does it (verified against this package): the token is a
string every process of the cluster and every client must share. ``ray get-auth-token
--generate`` writes one to ``$HOME/.ray/auth_token``; a process finds it (in this order) in
``RAY_AUTH_TOKEN``, in the file named by ``RAY_AUTH_TOKEN_PATH``, or in
``$HOME/.ray/auth_token``. Servers and clients only use it with ``RAY_AUTH_MODE=token``
(``ray start`` also turns it on by itself when it finds a token; a client with the env var
unset sends nothing and is refused). HTTP requests carry ``Authorization: Bearer <token>``:
without it the dashboard answers 401, with a wrong one 403.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

RAY = str(Path(sys.executable).with_name("ray"))
START_TIMEOUT = 90.0


def free_ports(n: int) -> list[int]:
    """``n`` distinct ports that are free right now (bound together, then released)."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


@dataclass
class Node:
    name: str
    proc: subprocess.Popen
    log: Path
    agent_port: int  # the dashboard agent's HTTP port: /api/healthz answers here

    def log_tail(self, n: int = 30) -> str:
        lines = self.log.read_text(errors="replace").splitlines() if self.log.exists() else []
        return "\n".join(lines[-n:])


@dataclass
class LocalCluster:
    address: str  # GCS, for `ray start --address` / ray.init(address=...)
    dashboard: str  # http://127.0.0.1:PORT: dashboard and job API
    client_port: int
    env: dict[str, str]  # for client processes: HOME with the token, RAY_AUTH_MODE=token
    token: str
    temp_dir: Path
    nodes: list[Node] = field(default_factory=list)

    def http(self, path: str, token: str | None = "default", timeout: float = 10) -> tuple:
        """GET ``path`` on the dashboard; ``(status, body)``. ``token=None`` sends none."""
        token = self.token if token == "default" else token
        req = urllib.request.Request(self.dashboard + path)
        if token is not None:
            req.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode(errors="replace")

    def alive_node_ids(self) -> set[str]:
        status, body = self.http("/api/v0/nodes?limit=100")
        if status != 200:
            raise RuntimeError(f"GET /api/v0/nodes: {status} {body[:200]}")
        rows = json.loads(body)["data"]["result"]["result"]
        return {r["node_id"] for r in rows if r["state"] == "ALIVE"}

    def ray(self, *args: str, timeout: float = 120, **kw) -> subprocess.CompletedProcess:
        """Run the ``ray`` CLI as an authenticated client of this cluster."""
        return subprocess.run(
            [RAY, *args], env=self.env, capture_output=True, text=True, timeout=timeout, **kw
        )


def client_env(home: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("RAY_ADDRESS", "RAY_AUTH", "RAY_API_SERVER"))
    }
    env.update(
        HOME=str(home), RAY_AUTH_MODE="token", RAY_USAGE_STATS_ENABLED="0", PYTHONUNBUFFERED="1"
    )
    return env


def node_port_args() -> tuple[int, list[str]]:
    """Free ports for a node's own services; ``(dashboard agent HTTP port, flags)``."""
    agent, grpc, metrics, runtime_env, nm, om = free_ports(6)
    return agent, [
        f"--dashboard-agent-listen-port={agent}",
        f"--dashboard-agent-grpc-port={grpc}",
        f"--metrics-export-port={metrics}",
        f"--runtime-env-agent-port={runtime_env}",
        f"--node-manager-port={nm}",
        f"--object-manager-port={om}",
    ]


def _start_node(name: str, args: list[str], env: dict, logs: Path) -> Node:
    agent, ports = node_port_args()
    log = logs / f"{name}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [RAY, "start", "--block", "--disable-usage-stats", *args, *ports],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    node = Node(name, proc, log, agent)
    end = time.monotonic() + START_TIMEOUT
    while "Ray runtime started" not in log.read_text(errors="replace"):
        if proc.poll() is not None or time.monotonic() > end:
            raise RuntimeError(
                f"`ray start` of the {name} did not come up "
                f"(exit {proc.poll()}):\n{node.log_tail()}"
            )
        time.sleep(0.5)
    return node


def _proc_table() -> dict[int, tuple[int, int, int]]:
    """``{pid: (parent pid, session id, start time)}`` of every process (Linux /proc)."""
    table = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                # the command name (field 2) may hold spaces: split after its ")"
                f = (d / "stat").read_text().rsplit(")", 1)[1].split()
                table[int(d.name)] = (int(f[1]), int(f[3]), int(f[19]))
    return table


def _process_family(nodes: list[Node]) -> dict[int, int]:
    """``{pid: start time}`` of every live process of these nodes: the process trees under
    them and their sessions (job drivers run in sessions of their own, under the head)."""
    roots = {n.proc.pid for n in nodes}
    table = _proc_table()
    family = {pid for pid, (_, sid, _) in table.items() if sid in roots} | (roots & set(table))
    while more := {pid for pid, (ppid, _, _) in table.items() if ppid in family} - family:
        family |= more
    return {pid: table[pid][2] for pid in family}


def stop_nodes(nodes: list[Node], grace: float = 30.0) -> None:
    """Stop exactly these nodes: workers first, then the head; never `ray stop`."""
    family = _process_family(nodes)
    for node in reversed(nodes):  # workers, then the head
        if node.proc.poll() is None:
            node.proc.send_signal(signal.SIGTERM)
            try:
                node.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                node.proc.kill()
                node.proc.wait(timeout=10)
    family.update(_process_family(nodes))
    now = _proc_table()
    for pid, started in family.items():
        if pid in now and now[pid][2] == started:  # the same process, not a reused pid
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)


@contextlib.contextmanager
def local_cluster(
    tmp: Path, workers: int = 1, cpus_per_node: int = 1, resources: dict[str, float] | None = None
) -> Iterator[LocalCluster]:
    """A head and ``workers`` worker nodes, ``cpus_per_node`` CPUs each; token auth on.

    ``tmp`` holds the throwaway HOME (with the token) and the node logs.
    """
    home, logs = tmp / "home", tmp / "ray-logs"
    home.mkdir(parents=True, exist_ok=True)
    logs.mkdir(parents=True, exist_ok=True)
    env = client_env(home)
    subprocess.run(
        [RAY, "get-auth-token", "--generate"], env=env, check=True, capture_output=True, timeout=60
    )
    token_file = home / ".ray" / "auth_token"
    token_file.chmod(0o600)
    # Short on purpose: Unix socket paths under the session folder must stay < 108 bytes.
    temp_dir = Path(tempfile.mkdtemp(prefix="hpray-", dir="/tmp"))
    gcs, dash, client = free_ports(3)
    address = f"127.0.0.1:{gcs}"
    res = [f"--resources={json.dumps(resources)}"] if resources else []
    cluster = LocalCluster(
        address=address,
        dashboard=f"http://127.0.0.1:{dash}",
        client_port=client,
        env=env,
        token=token_file.read_text().strip(),
        temp_dir=temp_dir,
    )
    try:
        cluster.nodes.append(
            _start_node(
                "head",
                [
                    "--head",
                    f"--port={gcs}",
                    "--node-ip-address=127.0.0.1",
                    f"--dashboard-port={dash}",
                    "--dashboard-host=127.0.0.1",
                    "--include-dashboard=true",
                    f"--ray-client-server-port={client}",
                    f"--num-cpus={cpus_per_node}",
                    f"--temp-dir={temp_dir}",
                    *res,
                ],
                env,
                logs,
            )
        )
        for i in range(workers):
            cluster.nodes.append(
                _start_node(
                    f"worker-{i + 1}",
                    [
                        f"--address={address}",
                        "--node-ip-address=127.0.0.1",
                        f"--num-cpus={cpus_per_node}",
                        # a temp dir of its own, as on a real machine: in the head's, the
                        # node unpacks a job's working_dir into the folder the job's driver
                        # runs from, and the driver's imports can miss files meanwhile
                        f"--temp-dir={temp_dir / f'w{i + 1}'}",
                        *res,
                    ],
                    env,
                    logs,
                )
            )
        _wait_for_nodes(cluster, 1 + workers)
        yield cluster
    finally:
        stop_nodes(cluster.nodes)
        shutil.rmtree(temp_dir, ignore_errors=True)


def _wait_for_nodes(cluster: LocalCluster, n: int, timeout: float = START_TIMEOUT) -> None:
    end, seen = time.monotonic() + timeout, "no answer"
    while time.monotonic() < end:
        with contextlib.suppress(OSError, RuntimeError, ValueError, KeyError):
            alive = cluster.alive_node_ids()
            if len(alive) == n:
                return
            seen = f"{len(alive)} alive"
        time.sleep(1)
    tails = "\n".join(f"--- {x.name}\n{x.log_tail()}" for x in cluster.nodes)
    raise RuntimeError(
        f"the cluster at {cluster.address} did not reach {n} nodes ({seen}):\n{tails}"
    )
