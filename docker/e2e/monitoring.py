"""Prometheus in the containerized end-to-end check: compose's ``prometheus`` service
(profile ``monitoring``) beside the cluster while the smoke sweep runs, then checked through
its HTTP API on 127.0.0.1:9090: its targets (Ray's service-discovery file) are up, one per
Ray node; the trials' MPJPE series match their ``metrics.jsonl``; the sweep's gauges are
there; every metric the sweep dashboard queries exists. The image is ``PROMETHEUS_IMAGE``
(by default a stand-in built here from Debian's package, docker/standin/prometheus.Dockerfile:
no registry is reachable on the machines this runs on). Grafana has no stand-in: its check is
reported as skipped."""

from __future__ import annotations

import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

from harness import REPO, Cluster, Tally, log, sh, wait_for

sys.path.insert(0, str(REPO))
# the dashboard's query parser of the test suite (tests/deploy/prometheus_helpers.py)
from tests.deploy.prometheus_helpers import SWEEP_DASHBOARD, unknown_metrics  # noqa: E402

STANDIN = "handpose-sweep:standin-prometheus"
PROMETHEUS = "http://127.0.0.1:9090"
PROFILE = ("--profile", "monitoring")
SD_FILE = "/tmp/ray/prom_metrics_service_discovery.json"

NODES_PY = (
    "import json, ray; ray.init(address='auto', logging_level='ERROR'); "
    "print(json.dumps([f\"{n['NodeManagerAddress']}:{n['MetricsExportPort']}\" "
    "for n in ray.nodes() if n['Alive']]))"
)

VALS_PY = """
import json
s = json.load(open({summary!r}))
out = {{}}
for t in s["trials"]:
    rows = [json.loads(x) for x in open(t["run_dir"] + "/metrics.jsonl") if x.strip()]
    out[t["trial_id"]] = {{str(r["step"]): r["mpjpe"] for r in rows if r["split"] == "val"}}
print(json.dumps(out))
"""


def image() -> str:
    return os.environ.get("PROMETHEUS_IMAGE") or STANDIN


def get(path: str, params: dict[str, str] | None = None):
    """The ``data`` of a GET of Prometheus's API (None when it does not answer success)."""
    url = PROMETHEUS + path + ("?" + urllib.parse.urlencode(params) if params else "")
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            body = json.loads(r.read())
    except (OSError, ValueError) as e:
        log(f"prometheus {path}: {e}")
        return None
    return body.get("data") if body.get("status") == "success" else None


def query(expr: str) -> list[dict]:
    """An instant query's result vector (empty when it fails)."""
    return (get("/api/v1/query", {"query": expr}) or {}).get("result", [])


def ready() -> bool:
    try:
        with urllib.request.urlopen(PROMETHEUS + "/-/ready", timeout=5) as r:
            return r.status == 200
    except (OSError, urllib.error.HTTPError):
        return False


def start(t: Tally, cl: Cluster) -> bool:
    """The stand-in image (when it is the one used), then ``prometheus`` alone beside the
    running cluster (``--no-deps``: the head is up and healthy already)."""
    if image() == STANDIN:
        t0 = time.monotonic()
        r = sh(["bash", "docker/standin/build.sh", "--prometheus", STANDIN], timeout=900)
        t.check(
            "monitoring: stand-in Prometheus built from Debian's package",
            r.returncode == 0,
            r.stderr.strip()[-300:] if r.returncode else "",
        )
        t.measure("stand-in Prometheus build (s)", round(time.monotonic() - t0))
    r = cl.compose(*PROFILE, "up", "-d", "--no-deps", "prometheus")
    up = r.returncode == 0 and bool(wait_for("Prometheus ready", ready, 120, 2))
    version = (get("/api/v1/status/buildinfo") or {}).get("version", "?")
    return t.check(
        f"monitoring: prometheus service up (--profile monitoring, image {image()}), ready",
        up,
        f"Prometheus {version} on {PROMETHEUS}" if up else (r.stdout + r.stderr).strip()[-500:],
    )


def _targets(cl: Cluster):
    """``(nodes, discovered, up)``: each alive Ray node's metrics export address (as the head
    sees them), the targets in the head's service-discovery file, the targets Prometheus has
    up; None while some node is not up in Prometheus yet."""
    r = cl.docker("exec", cl.container("head"), "python", "-c", NODES_PY, timeout=120)
    nodes = set(json.loads(r.stdout.strip().splitlines()[-1])) if r.returncode == 0 else set()
    r = cl.docker("exec", cl.container("head"), "cat", SD_FILE)
    sd = json.loads(r.stdout) if r.returncode == 0 else []
    discovered = {x for group in sd for x in group["targets"]}
    active = (get("/api/v1/targets") or {}).get("activeTargets", [])
    up = {x["labels"]["instance"] for x in active if x["health"] == "up"}
    return (nodes, discovered, up) if nodes and nodes <= up and discovered <= up else None


def check(t: Tally, cl: Cluster, sweep: str, results: str) -> None:
    """After the sweep ``sweep`` (its folder in ``results`` on the shared volume) ended."""
    got = wait_for("every Ray node up in Prometheus", lambda: _targets(cl), 90, 5)
    if got:
        nodes, discovered, up = got
    else:
        r = cl.docker("exec", cl.container("head"), "cat", SD_FILE)
        active = (get("/api/v1/targets") or {}).get("activeTargets", [])
        nodes, discovered, up = set(), r.stdout.strip()[:300], active
    t.check(
        "monitoring: Prometheus's targets from Ray's service-discovery file are up, "
        "one per Ray node",
        bool(got) and len(nodes) == 3,
        f"{len(nodes)} nodes {sorted(nodes)} up; {len(discovered)} targets in the file "
        f"(the other {len(discovered) - len(nodes)}: the head's dashboard/autoscaler)"
        if got
        else f"file: {discovered}; Prometheus: {json.dumps(up)[:500]}",
    )

    want = cl.shared_json(VALS_PY.format(summary=f"{results}/{sweep}/summary.json")) or {}
    sel = f'{{sweep="{sweep}"}}'
    mpjpe = query(f"last_over_time(ray_handpose_trial_mpjpe_mm{sel}[1h])")
    steps = query(f"last_over_time(ray_handpose_trial_val_step{sel}[1h])")
    step_of = {s["metric"].get("trial_id"): s["value"][1] for s in steps}
    seen: dict[str, list[tuple[str, str]]] = {}
    for s in mpjpe:
        tid = s["metric"].get("trial_id", "?")
        seen.setdefault(tid, []).append((step_of.get(tid, "?"), s["value"][1]))
    bad = {}
    for tid in set(want) | set(seen):
        pts = seen.get(tid, [])
        if len(pts) != 1:
            bad[tid] = f"{len(pts)} series"
            continue
        step, value = pts[0]
        printed = want.get(tid, {}).get(step.split(".")[0])
        if printed is None or f"{float(value):.2f}" != f"{printed:.2f}":
            bad[tid] = f"step {step}: Prometheus {value}, metrics.jsonl {printed}"
    ok = bool(want) and not bad
    if ok:
        tid = min(seen)
        step, value = seen[tid][0]
        detail = f"{len(mpjpe)} series, {len(want)} trials; e.g. trial {tid} at step {step}: "
        detail += f"{float(value):.2f} mm in both"
    else:
        detail = f"{len(mpjpe)} series, {len(want)} trials; mismatches: {bad}"
    t.check(
        "monitoring: ray_handpose_trial_mpjpe_mm: one series per trial, the value its "
        "metrics.jsonl holds at that step (2 decimals)",
        ok,
        detail,
    )
    t.measure("monitoring: MPJPE series in Prometheus / trials", f"{len(mpjpe)} / {len(want)}")

    status = query(f"last_over_time(ray_handpose_sweep_trials{sel}[1h])")
    counts = {s["metric"].get("status", "?"): s["value"][1] for s in status}
    t.check(
        "monitoring: the sweep's trials-by-status gauge (ray_handpose_sweep_trials) is there",
        bool(counts),
        f"last values {json.dumps(counts, sort_keys=True)}",
    )

    names = set(get("/api/v1/label/__name__/values") or [])
    missing = unknown_metrics(SWEEP_DASHBOARD, names)
    t.check(
        "monitoring: every metric the sweep dashboard's panels query is in Prometheus",
        bool(names) and not missing,
        f"missing by panel: {missing}" if missing else f"{len(names)} metric names",
    )
    t.skip(
        "monitoring: Grafana (the sweep dashboard drawn, Ray's Metrics view)",
        "no Grafana image reaches this machine (Docker Hub unreachable) and none can be "
        "installed here to make a stand-in; its provisioning is checked by "
        "tests/deploy/test_prometheus_compose.py only",
    )


def left(cl: Cluster) -> list[str]:
    """Containers of the project still there (after the teardown: none)."""
    label = f"label=com.docker.compose.project={cl.project}"
    r = cl.docker("ps", "-a", "--filter", label, "--format", "{{.Names}}")
    return r.stdout.split()
