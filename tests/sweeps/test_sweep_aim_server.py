"""On an Aim server (``AIM.server_url=aim://...``), the end of a sweep closes its killed
trials' runs and indexes its trials' runs (the server does neither in time: it closes a dead
client's runs after 5 minutes and indexes none), and deletes its superseded trials' runs;
other sweeps' runs are untouched. A real ``aim server`` on a free port, in a temporary repo."""

from __future__ import annotations

import gc
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from sweeps.results.aim_runs import close_and_index, delete_superseded_runs
from tests.deploy.ray_cluster import free_ports
from tests.helpers import wait_for

AIM = str(Path(sys.executable).with_name("aim"))
# A trial process of sweep "sw" whose run of trial aaaaaaaa closes, while those of bbbbbbbb
# (a killed trial) and cccccccc (superseded: unknown to the resumed Tune) stay open, as does
# a run of another sweep; the data reaches the server before the process dies.
WRITER = """
import os, sys
from aim import Run
runs = []
for exp, trial in (("sw", "aaaaaaaa"), ("sw", "bbbbbbbb"), ("sw", "cccccccc"), ("x", "zzzzzzzz")):
    run = Run(repo=sys.argv[1], experiment=exp, system_tracking_interval=None,
              capture_terminal_logs=False)
    run.name = f"handpose_trial_{trial}"
    run["sweep"] = {"name": exp, "trial_id": trial}
    run.track(50.0, name="mpjpe", step=10, context={"subset": "val"})
    if trial == "aaaaaaaa":
        run.close()
    runs.append(run)
runs[-1].repo._client.get_queue().wait_for_finish()
os._exit(0)
"""


def _accepts(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
def aim_server(tmp_path: Path) -> Iterator[str]:
    """``aim://127.0.0.1:<port>`` of an Aim server on a new repo (``-y``: it makes the repo),
    stopped afterwards."""
    repo = tmp_path / "server-repo"
    repo.mkdir()
    (port,) = free_ports(1)
    log = open(tmp_path / "aim-server.log", "w")  # noqa: SIM115 (closed below)
    server = subprocess.Popen(
        [AIM, "server", "--repo", str(repo), "--host", "127.0.0.1", "--port", str(port), "-y"],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its uvicorn child goes with it
    )
    try:
        wait_for(lambda: _accepts(port), 60, f"the Aim server on port {port}")
        yield f"aim://127.0.0.1:{port}"
    finally:
        gc.collect()  # the test's remote Aim objects are released while the server answers
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(30)
        log.close()


def test_killed_and_superseded_trials_runs_on_an_aim_server(aim_server):
    from aim import Repo

    subprocess.run([sys.executable, "-c", WRITER, aim_server], check=True, timeout=120)
    sweep_trials = {"aaaaaaaa", "bbbbbbbb"}

    assert close_and_index(aim_server, sweep_trials) == 2
    assert delete_superseded_runs(aim_server, Path("sw"), sweep_trials) == 1

    repo = Repo.from_path(aim_server)
    # cccccccc's deleted, the other sweep's kept (Aim caches the list for 0.5 s)
    wait_for(lambda: len(repo.list_all_runs()) == 3, 10, "the deletion")
    runs = {r.name: (r.active, r.end_time) for r in repo.iter_runs()}
    assert sorted(runs) == ["handpose_trial_aaaaaaaa", "handpose_trial_bbbbbbbb"]
    assert all(not active and end is not None for active, end in runs.values()), runs
