"""The sweeps of the containerized end-to-end check: the smoke sweep as a Ray job, a worker
node lost mid-sweep, the head lost mid-sweep and ``--resume``, and the same smoke sweep on
the host for comparison. Each function records its checks and numbers in the ``Tally``."""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import yaml
from harness import (
    REPO,
    Cluster,
    Tally,
    job_logs,
    log,
    ray_cli,
    sh,
    wait_for,
    wait_job,
)

RESULTS = "/mnt/shared/results"
SPEC = "/mnt/shared/e2e-spec.yaml"
# Everything a trial reads or writes is on the shared volume; its Aim run goes to the server.
DATA_ARGS = [
    "AIM.server_url=aim://aim:53800",
    "DATA.synthetic.dir=/mnt/shared/data/synthetic",
    "DATA.train.source=[/mnt/shared/data/synthetic/train-*.tar]",
    "DATA.val.source=[/mnt/shared/data/synthetic/val-*.tar]",
]
E2E_STEPS = 120  # long enough that a node can be killed between two validations


def e2e_spec() -> str:
    """The sweep spec's smoke preset, two trials at a time of 2 CPUs each (one per worker
    node), every validation checkpointed, no early stopping (each trial's whole curve is
    checked), ``E2E_STEPS`` steps; written to the shared volume for the driver to read."""
    spec = yaml.safe_load((REPO / "configs" / "sweep" / "dropout_warmup.yaml").read_text())
    e2e = dict(spec["presets"]["smoke"])
    e2e.update(
        max_concurrent=2,
        resources={"cpu": 2, "gpu": 0},
        checkpoint_interval_s=0,
        scheduler={
            "grace_period": E2E_STEPS,
            "reduction_factor": 2,
            "sentinel_fraction": 0.0,
            "min_sentinels": 0,
        },
        base_overrides=[*e2e["base_overrides"], f"GENERAL.total_step={E2E_STEPS}"],
    )
    return yaml.safe_dump(
        {"metric": spec["metric"], "mode": spec["mode"], "presets": {"e2e": e2e}}, sort_keys=False
    )


def submit(cl: Cluster, home: Path, job_id: str, args: list[str]) -> bool:
    """``ray job submit`` from this machine with the token; the driver runs on the head."""
    entry = ["python", "sweeps/dropout_warmup.py", *args]  # the CLI quotes each word
    r = ray_cli(
        ["job", "submit", "--submission-id", job_id, "--no-wait", "--", *entry], cl.token, home
    )
    if r.returncode:
        log(f"submit {job_id} failed: {(r.stdout + r.stderr).strip()[-800:]}")
    return r.returncode == 0


TRIALS_PY = """
import glob, hashlib, json, os
sweep = {sweep!r}
out = []
for d in sorted(glob.glob(sweep + "/runs/*/")):
    vals, times = [], []
    p = d + "metrics.jsonl"
    text = open(p).read() if os.path.exists(p) else ""
    for line in text.splitlines():
        m = json.loads(line)
        if m.get("split") == "val":
            vals.append(m["step"])
    out.append({{"trial": os.path.basename(d.rstrip("/")), "vals": vals,
                "sha": hashlib.sha256(text.encode()).hexdigest()}})
tune = {{}}
for d in glob.glob(sweep + "/*/"):
    rj = d + "result.json"
    if not os.path.exists(rj):
        continue
    lines = [json.loads(x) for x in open(rj) if x.strip()]
    ck = sorted(glob.glob(d + "checkpoint_*"))
    if lines:
        tune[lines[-1]["trial_id"]] = {{"node_ip": lines[-1].get("node_ip"),
            "ips": sorted({{x.get("node_ip") for x in lines}}), "checkpoints": len(ck),
            "steps": [x.get("step") for x in lines]}}
print(json.dumps({{"runs": out, "tune": tune}}))
"""

AIM_PY = """
import json
from aim import Repo
repo = Repo.from_path("/mnt/shared/aim")  # the server's repo, read beside it
runs = []
for r in repo.structured_db.runs():
    # the run's own record, not Aim's index: the server closes runs but indexes none
    meta = repo.request_tree("meta", r.hash, read_only=True).subtree("meta")
    end = meta.subtree("chunks").subtree(r.hash).get("end_time")
    runs.append({"name": r.name or "", "active": end is None, "experiment": r.experiment})
print(json.dumps(runs))
"""


def trials(cl: Cluster, sweep: str) -> dict:
    return cl.shared_json(TRIALS_PY.format(sweep=f"{RESULTS}/{sweep}")) or {"runs": [], "tune": {}}


def summary(cl: Cluster, sweep: str) -> dict:
    return cl.shared_json(f"print(open('{RESULTS}/{sweep}/summary.json').read())") or {}


def curve_ok(vals: list[int], every: int, last: int, completed: bool) -> bool:
    """Every validation once, in order, none missing: ``every, 2 every, ...``, up to ``last``
    for a trial that ran the full budget (ASHA may have stopped the others earlier)."""
    end = vals[-1] if vals else 0
    return (
        vals == list(range(every, end + 1, every))
        and end <= last
        and (end == last or not completed)
    )


def check_sweep_records(t: Tally, cl: Cluster, sweep: str, n: int, every: int, last: int):
    """The sweep's files on the shared volume, its trials each once with a whole curve, and
    one closed Aim run per trial on the server."""
    listing = cl.shared_python(f"import os; print(sorted(os.listdir('{RESULTS}/{sweep}')))")
    files = ("summary.json", "optuna.journal", "scheduler_state.jsonl", "leaderboard.csv")
    t.check(
        f"{sweep}: summary, study, scheduler journal on the shared volume",
        all(f in listing for f in files),
        listing.strip()[:300],
    )
    s = summary(cl, sweep)
    rows = s.get("trials", [])
    statuses = sorted(r.get("status", "") for r in rows)
    t.check(
        f"{sweep}: {n} trials, none errored",
        len(rows) == n and "ERROR" not in statuses,
        f"{len(rows)} trials {statuses}",
    )
    runs = trials(cl, sweep)["runs"]
    done = {r["trial_id"] for r in rows if r.get("status") == "COMPLETED"}
    bad = {
        r["trial"]: r["vals"]
        for r in runs
        if not curve_ok(r["vals"], every, last, r["trial"].rsplit("_", 1)[-1] in done)
    }
    t.check(
        f"{sweep}: every trial's curve once, in order, whole ({every}..{last})",
        len(runs) == n and not bad,
        f"{len(runs)} run folders, bad: {bad}",
    )
    ids = [r["trial_id"] for r in rows]
    aim = cl.shared_json(AIM_PY) or []
    mine = {i: [a for a in aim if a["name"].rsplit("_", 1)[-1] == i] for i in ids}
    t.check(
        f"{sweep}: one Aim run per trial on the server, closed",
        bool(ids) and all(len(v) == 1 and v[0]["active"] is False for v in mine.values()),
        json.dumps({i: [a["active"] for a in v] for i, v in mine.items()}),
    )
    return s


def smoke(t: Tally, cl: Cluster, home: Path) -> float | None:
    """The smoke sweep as a Ray job from outside the containers; returns its wall time."""
    t0 = time.monotonic()
    ok = submit(
        cl, home, "e2e-smoke", ["--smoke", "--name", "smoke", "--storage", RESULTS, *DATA_ARGS]
    )
    t.check("smoke: ray job submit with the token accepted", ok)
    if not ok:
        return None
    status = wait_job("e2e-smoke", cl.token, 1200)
    wall = time.monotonic() - t0
    t.check(
        "smoke: the job succeeded",
        status == "SUCCEEDED",
        f"{status} in {wall:.0f} s; log tail: {job_logs('e2e-smoke', cl.token)[-300:]!r}"
        if status != "SUCCEEDED"
        else f"{wall:.0f} s",
    )
    check_sweep_records(t, cl, "smoke", 4, 20, 60)
    return wall if status == "SUCCEEDED" else None


def host_smoke(t: Tally) -> float | None:
    """The same smoke sweep on this machine's Python (local Ray, 2 CPUs), for comparison."""
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.monotonic()
        r = sh(
            [
                "python3",
                str(REPO / "sweeps" / "dropout_warmup.py"),
                "--smoke",
                "--num-cpus",
                "2",
                "--storage",
                f"{tmp}/results",
                "--name",
                "host-smoke",
                f"DATA.synthetic.dir={tmp}/data",
                f"DATA.train.source=[{tmp}/data/train-*.tar]",
                f"DATA.val.source=[{tmp}/data/val-*.tar]",
            ],
            timeout=1200,
        )
        wall = time.monotonic() - t0
    t.check(
        "host smoke sweep (comparison) succeeded",
        r.returncode == 0,
        f"rc {r.returncode} in {wall:.0f} s {r.stderr.strip()[-300:]}",
    )
    return wall if r.returncode == 0 else None


def _kill_target(cl: Cluster, sweep: str, ips: dict[str, str]):
    """``(trial id, worker service)`` of a running trial that has handed Tune a checkpoint
    and has validations left, on one of the workers; None while there is none."""
    info = trials(cl, sweep)["tune"]
    for tid, x in sorted(info.items()):
        steps = [s for s in x["steps"] if s is not None]
        if x["checkpoints"] and steps and max(steps) <= E2E_STEPS - 40:
            for svc, ip in ips.items():
                if x["node_ip"] == ip:
                    return tid, svc
    return None


def _validated_after(cl: Cluster, sweep: str, tid: str, step: int) -> bool:
    """Whether trial ``tid``'s run folder (written by the trial itself on the shared volume,
    unlike Tune's result.json, which the driver syncs later) has a validation past ``step``."""
    runs = {r["trial"].rsplit("_", 1)[-1]: r["vals"] for r in trials(cl, sweep)["runs"]}
    return bool(runs.get(tid)) and max(runs[tid]) > step


def node_loss(t: Tally, cl: Cluster, home: Path) -> None:
    """Kill a worker's container once a trial on it has handed Tune a checkpoint; the trial
    goes on from it on the other worker; the worker, started again, rejoins and runs trials."""
    ips = {w: cl.ip(w) for w in ("worker-1", "worker-2")}
    ok = submit(
        cl,
        home,
        "e2e-node-loss",
        [
            "--spec",
            SPEC,
            "--preset",
            "e2e",
            "--name",
            "node-loss",
            "--storage",
            RESULTS,
            *DATA_ARGS,
        ],
    )
    t.check("node loss: sweep submitted", ok)
    if not ok:
        return
    target = wait_for(
        "a checkpointed trial on a worker", lambda: _kill_target(cl, "node-loss", ips), 900, 2
    )
    if not t.check("node loss: a trial on a worker handed Tune a checkpoint", bool(target)):
        return
    tid, victim = target
    survivor = "worker-2" if victim == "worker-1" else "worker-1"
    runs = {r["trial"].rsplit("_", 1)[-1]: r["vals"] for r in trials(cl, "node-loss")["runs"]}
    step = max(runs.get(tid) or [0])
    t_kill = time.monotonic()
    cl.docker("kill", cl.container(victim))
    log(f"killed {victim} ({ips[victim]}) while trial {tid} was at step {step}")
    # the victim is down and the head has no CPUs: a new validation comes from the survivor
    moved = wait_for(
        f"trial {tid} validating again",
        lambda: _validated_after(cl, "node-loss", tid, step),
        900,
        3,
    )
    t.check(f"node loss: trial {tid} went on from its checkpoint with {victim} down", bool(moved))
    if moved:
        t.measure(
            "node loss: kill to the trial's next validation on the survivor (s)",
            round(time.monotonic() - t_kill),
        )
    cl.docker("start", cl.container(victim))
    rejoined = wait_for(f"{victim} healthy", lambda: cl.health(victim) == "healthy", 300)
    t.check(f"node loss: {victim} started again and is healthy (rejoined)", bool(rejoined))
    t_rejoin = time.monotonic()
    ips[victim] = cl.ip(victim)
    status = wait_job("e2e-node-loss", cl.token, 1500)
    t.check("node loss: the sweep completed", status == "SUCCEEDED", status)
    s = check_sweep_records(t, cl, "node-loss", 4, 20, E2E_STEPS)
    nodes = {r.get("node_id") for r in s.get("trials", [])}
    t.check(
        "node loss: trials ran on both workers (node_id in summary.json)",
        len(nodes - {None}) >= 2,
        f"{len(nodes)} node ids",
    )
    info = trials(cl, "node-loss")["tune"]
    t.check(
        f"node loss: trial {tid}'s results came from {survivor} after the kill",
        ips[survivor] in info.get(tid, {}).get("ips", []),
        str(info.get(tid, {}).get("ips")),
    )
    used = [i for i, x in info.items() if ips[victim] in x["ips"] and i != tid]
    t.check(
        f"node loss: trials after the rejoin used {victim}",
        bool(used),
        f"{used} (rejoined {time.monotonic() - t_rejoin:.0f} s before the end)",
    )


ALIVE_PY = (
    "import ray; ray.init(address='auto', logging_level='ERROR'); "
    "print(sum(n['Alive'] for n in ray.nodes()))"
)


def alive_nodes(cl: Cluster) -> int:
    r = cl.docker("exec", cl.container("head"), "python", "-c", ALIVE_PY, timeout=120)
    out = r.stdout.strip().splitlines()
    return int(out[-1]) if r.returncode == 0 and out and out[-1].isdigit() else 0


def head_loss(t: Tally, cl: Cluster, home: Path) -> None:
    """Kill the head (the driver dies with it) once a trial has finished and another has a
    checkpoint; start it again; the workers rejoin by themselves; ``--resume`` submitted as a
    new job completes the sweep, and what had finished is not run again."""
    ok = submit(
        cl,
        home,
        "e2e-head-loss",
        [
            "--spec",
            SPEC,
            "--preset",
            "e2e",
            "--name",
            "head-loss",
            "--storage",
            RESULTS,
            *DATA_ARGS,
        ],
    )
    t.check("head loss: sweep submitted", ok)
    if not ok:
        return

    def finished_and_running():
        info = trials(cl, "head-loss")
        done = [r for r in info["runs"] if r["vals"] and r["vals"][-1] == E2E_STEPS]
        running = [r for r in info["runs"] if r["vals"] and r["vals"][-1] < E2E_STEPS]
        return info if done and running else None

    before = wait_for("a finished and a running trial", finished_and_running, 1200, 3)
    if not t.check("head loss: one trial finished, another running", bool(before)):
        return
    done = {r["trial"]: r["sha"] for r in before["runs"] if r["vals"][-1:] == [E2E_STEPS]}
    t_kill = time.monotonic()
    cl.docker("kill", cl.container("head"))
    log(f"killed the head; finished before: {sorted(done)}")
    t.check(
        "head loss: the job API is gone with the head", job_logs("e2e-head-loss", cl.token) == ""
    )
    cl.docker("start", cl.container("head"))
    whole = wait_for("head + 2 workers alive", lambda: alive_nodes(cl) == 3, 600, 5)
    t.check("head loss: head started again, both workers rejoined by themselves", bool(whole))
    if not whole:
        return
    t.measure("head loss: kill to a whole cluster again (s)", round(time.monotonic() - t_kill))
    ok = submit(
        cl, home, "e2e-head-resume", ["--resume", "--name", "head-loss", "--storage", RESULTS]
    )
    status = wait_job("e2e-head-resume", cl.token, 1500) if ok else "not submitted"
    t.check(
        "head loss: --resume as a new job completed the sweep",
        status == "SUCCEEDED",
        status if status == "SUCCEEDED" else job_logs("e2e-head-resume", cl.token)[-500:],
    )
    t.measure("head loss: kill to the resumed sweep's end (s)", round(time.monotonic() - t_kill))
    check_sweep_records(t, cl, "head-loss", 4, 20, E2E_STEPS)
    after = {r["trial"]: r["sha"] for r in trials(cl, "head-loss")["runs"]}
    rerun = [i for i, sha in done.items() if after.get(i) != sha]
    t.check(
        "head loss: trials finished before the kill were not run again",
        not rerun,
        f"changed: {rerun}",
    )
