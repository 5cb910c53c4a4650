"""Plumbing of the containerized end-to-end check (docker/e2e.sh): shell calls, the check
tally, the compose project, files on the shared volume, and the Ray job API with the token.

Nothing here knows what the checks are; docker/e2e/main.py and scenarios.py do.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DOCKER = os.environ.get("DOCKER", "docker")  # set by docker/lib.sh
# the head's published dashboard port (docker/compose.yaml); main.py may move it
DASHBOARD = f"http://127.0.0.1:{os.environ.get('HANDPOSE_DASHBOARD_PORT', '8265')}"


def log(msg: str) -> None:
    print(f"[e2e {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def sh(
    cmd: Sequence[str],
    timeout: float = 600,
    env: dict[str, str] | None = None,
    stdin: str | None = None,
) -> subprocess.CompletedProcess:
    """Run ``cmd``; never raises on a non-zero exit (the caller checks ``returncode``)."""
    try:
        return subprocess.run(
            list(cmd),
            capture_output=True,
            text=True,
            timeout=timeout,
            input=stdin,
            env={**os.environ, **(env or {})},
            cwd=REPO,
        )
    except subprocess.TimeoutExpired as e:
        out = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
        return subprocess.CompletedProcess(list(cmd), 124, out, f"timed out after {timeout} s")


def wait_for(what: str, probe: Callable[[], object], timeout: float, every: float = 3.0):
    """Poll ``probe`` until it returns something truthy; returns it, or None at ``timeout``."""
    end = time.monotonic() + timeout
    while True:
        got = probe()
        if got:
            return got
        if time.monotonic() > end:
            log(f"gave up waiting for {what} after {timeout:.0f} s")
            return None
        time.sleep(every)


@dataclass
class Tally:
    """PASS/FAIL (and SKIP) lines as checks are made, and the closing ``N passed, M failed``
    (`` (K skipped)`` after it when some were)."""

    passed: int = 0
    failed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    numbers: dict[str, object] = field(default_factory=dict)

    def check(self, name: str, ok: bool, detail: str = "") -> bool:
        print(f"{'PASS' if ok else 'FAIL'} {name}{': ' + detail if detail else ''}", flush=True)
        if ok:
            self.passed += 1
        else:
            self.failed.append(name)
        return ok

    def skip(self, name: str, reason: str) -> None:
        """A check that could not be made here, with why; neither passed nor failed."""
        print(f"SKIP {name}: {reason}", flush=True)
        self.skipped.append(name)

    def measure(self, name: str, value: object) -> None:
        self.numbers[name] = value
        print(f"MEASURED {name} = {value}", flush=True)

    def closing_line(self) -> str:
        skipped = f" ({len(self.skipped)} skipped)" if self.skipped else ""
        return f"{self.passed} passed, {len(self.failed)} failed{skipped}"


@dataclass
class Cluster:
    """The compose project of docker/compose.yaml: head, worker-1, worker-2, aim."""

    project: str
    token: str
    compose_cmd: list[str]

    def compose(self, *args: str, token: str | None = None, timeout: float = 600):
        """``compose ARGS`` with the cluster's token (``token=""``: with none; compose's
        ``${RAY_AUTH_TOKEN:?}`` treats empty as unset)."""
        env = {"RAY_AUTH_TOKEN": self.token if token is None else token}
        base = [*self.compose_cmd, "-p", self.project, "-f", "docker/compose.yaml"]
        return sh(base + list(args), timeout, env=env)

    def container(self, service: str) -> str:
        """The container id of ``service`` (also when it is stopped)."""
        out = self.compose("ps", "-a", "-q", service).stdout.split()
        return out[0] if out else ""

    def docker(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
        return sh([DOCKER, *args], timeout)

    def health(self, service: str) -> str:
        fmt = "{{if .State.Health}}{{.State.Health.Status}}{{else}}{{.State.Status}}{{end}}"
        return self.docker("inspect", "-f", fmt, self.container(service)).stdout.strip()

    def ip(self, service: str) -> str:
        fmt = "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}"
        return self.docker("inspect", "-f", fmt, self.container(service)).stdout.strip()

    def network(self) -> str:
        fmt = "{{range $k, $v := .NetworkSettings.Networks}}{{$k}}{{end}}"
        return self.docker("inspect", "-f", fmt, self.container("aim")).stdout.strip()

    def shared_python(self, code: str, timeout: float = 120) -> str:
        """Run ``code`` with the image's Python in the Aim server's container (always up,
        the shared volume mounted at /mnt/shared); returns its stdout."""
        r = sh([DOCKER, "exec", "-i", self.container("aim"), "python", "-"], timeout, stdin=code)
        if r.returncode:
            log(f"shared_python failed: {r.stderr.strip()[-500:]}")
        return r.stdout

    def shared_json(self, code: str, timeout: float = 120):
        """``code`` prints one JSON document (and nothing else): it, parsed (None if it did
        not run)."""
        out = self.shared_python(code, timeout).strip()
        try:
            return json.loads(out) if out else None
        except json.JSONDecodeError:
            log(f"not JSON: {out[-300:]}")
            return None


def api(path: str, token: str | None):
    """``(HTTP status, parsed JSON or text)`` of a GET of the dashboard's ``path`` with
    ``token`` (None: without one)."""
    req = urllib.request.Request(DASHBOARD + path)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            text = r.read().decode()
            status = r.status
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")
    except OSError as e:
        return 0, str(e)
    try:
        return status, json.loads(text)
    except json.JSONDecodeError:
        return status, text


def ray_cli(args: Sequence[str], token: str | None, home: Path, timeout: float = 300):
    """The host's ``ray`` CLI against the cluster's dashboard, with ``token`` (None: none),
    in a HOME of its own so no token file of this machine is read or written."""
    env = {"HOME": str(home), "RAY_AUTH_MODE": "token", "RAY_ADDRESS": DASHBOARD}
    env["RAY_AUTH_TOKEN"] = token or ""
    exe = str(Path(sys.executable).with_name("ray"))
    return sh([exe if Path(exe).exists() else "ray", *args], timeout, env=env)


def job_status(job_id: str, token: str) -> str:
    status, body = api(f"/api/jobs/{job_id}", token)
    return body.get("status", "") if status == 200 and isinstance(body, dict) else ""


def job_logs(job_id: str, token: str) -> str:
    status, body = api(f"/api/jobs/{job_id}/logs", token)
    return body.get("logs", "") if status == 200 and isinstance(body, dict) else ""


def wait_job(job_id: str, token: str, timeout: float) -> str:
    """The job's final status (SUCCEEDED, FAILED, STOPPED) or its status at ``timeout``."""
    final = {"SUCCEEDED", "FAILED", "STOPPED"}
    got = wait_for(f"job {job_id}", lambda: job_status(job_id, token) in final, timeout, 5)
    return job_status(job_id, token) if got else f"not finished ({job_status(job_id, token)})"
