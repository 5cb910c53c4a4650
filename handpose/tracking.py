"""Metric sinks of one run: console + ``log.txt``, ``metrics.jsonl`` and Aim, and the
windows of train losses they average over."""

from __future__ import annotations

import json
import logging
import math
import sys
import threading
import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

# ``handpose.data`` (``is_url``) loads torch: it is imported in the functions that need it, so
# the ``metrics.jsonl`` readers (``load_metrics``) serve the sweep report without torch.
LOG = logging.getLogger("handpose")
# Aim's Run.close waits for its status reporter's flush without a timeout, and has been seen
# to wait for ever (a lost wake-up; a sweep then waits on that trial): Tracker.close gives it
# this long, then leaves the run open (a sweep's close_and_index closes it at the end)
AIM_CLOSE_TIMEOUT_S = 30.0
# the run folder's Aim run hash, written when the run opens it: a run started afresh in the
# same folder (a sweep trial retried before its first checkpoint) replaces that Aim run
AIM_HASH_FILE = "aim_hash.txt"
# Aim's run table is one SQLite file every run writes as it opens: with tens of sweep trials
# opening their runs at once, SQLite's default 5 s wait for its lock ran out ("database is
# locked": 3 of 1000 trials of a resumed sweep, docs/benchmarks.md section 7); runs wait this
# long instead
AIM_DB_WAIT_S = 120.0
_AIM_DBS: dict[str, Any] = {}  # Aim keeps its DB objects weakly: these are the ones we set up
# keys of a metrics dict that are not metrics, so Aim never gets them: the step (Aim's own
# step axis) and the validation's sample count (both kept in metrics.jsonl)
NOT_METRICS = frozenset({"step", "num_samples"})


def setup_logging(run_dir: Path | None) -> None:
    """Console (stdout) + ``run_dir/log.txt``, plain lines. ``run_dir`` None (the ranks
    other than 0 of a data-parallel run): warnings only, on stderr."""
    LOG.setLevel(logging.INFO if run_dir is not None else logging.WARNING)
    LOG.propagate = False
    for h in list(LOG.handlers):
        LOG.removeHandler(h)
        h.close()
    fmt = logging.Formatter("%(message)s")
    handlers = (
        [logging.StreamHandler(sys.stdout), logging.FileHandler(run_dir / "log.txt")]
        if run_dir is not None
        else [logging.StreamHandler(sys.stderr)]
    )
    for h in handlers:
        h.setFormatter(fmt)
        LOG.addHandler(h)


def format_train_line(
    step: int, total: int, lr: float, dropout: float, losses: dict[str, float]
) -> str:
    """``3000/100000 lr=1.0000e-04 dropout=0.000 total=1.230 loss_theta=0.083 ...``"""
    parts = [
        f"{step}/{total}",
        f"lr={lr:.4e}",
        f"dropout={dropout:.3f}",
        f"total={losses['total']:.3f}",
    ]
    parts += [f"{k}={v:.3f}" for k, v in losses.items() if k != "total"]
    return " ".join(parts)


def resolve_aim_repo(server_url: str | None, output_dir: str) -> str:
    """The Aim repo: ``server_url`` (``AIM.server_url``: a path, made absolute, or
    ``aim://host:port``), else ``output_dir`` (``GENERAL.output_dir``)."""
    from handpose.data.shards import is_url

    if server_url:
        return server_url if is_url(server_url) else str(Path(server_url).expanduser().resolve())
    return str(Path(output_dir).resolve())


class Tracker:
    """Writes ``metrics.jsonl`` and, if enabled, one Aim run (resumed by hash on resume).

    ``resume_step`` None (no checkpoint): the run starts afresh, in a run folder an earlier
    attempt may have written to: ``metrics.jsonl`` is rewritten and the earlier attempt's Aim
    run (its hash in ``aim_hash.txt``) is deleted before a new one is created, so the folder
    and the Aim repo hold one run. ``run_dir`` None: a tracker that records nothing (ranks
    other than 0)."""

    def __init__(
        self,
        cfg: DictConfig,
        run_dir: Path | None,
        aim_hash: str | None = None,
        extra: dict[str, Any] | None = None,
        resume_step: int | None = None,
    ) -> None:
        self.jsonl, self.aim_run = None, None
        if run_dir is None:
            return
        path = run_dir / "metrics.jsonl"
        keep = []  # a run started from step 0 (again, e.g. a retried sweep trial) starts afresh
        if resume_step is not None and path.is_file():  # drop what came after the checkpoint
            keep = [
                line
                for line in path.read_text().splitlines()
                if line and json.loads(line)["step"] <= resume_step
            ]
        path.write_text("".join(line + "\n" for line in keep))
        self.jsonl = open(path, "a")  # noqa: SIM115 (closed in close())
        if cfg.AIM.enabled:
            earlier = _read_hash(run_dir) if resume_step is None else None
            self.aim_run, aim_hash = _open_aim_run(cfg, run_dir, aim_hash, earlier)
            (run_dir / AIM_HASH_FILE).write_text(self.aim_run.hash + "\n")
            if aim_hash is None:
                self.aim_run["hparams"] = OmegaConf.to_container(cfg, resolve=True)
                self.aim_run["run_dir"] = str(run_dir)
                for key, value in (extra or {}).items():
                    self.aim_run[key] = value

    @property
    def aim_hash(self) -> str | None:
        return self.aim_run.hash if self.aim_run is not None else None

    def track(
        self,
        step: int,
        split: str,
        metrics: dict[str, Any],
        to_jsonl: bool,
        to_aim: bool = True,
    ) -> None:
        """``metrics`` of ``split`` (``train``/``val``) at ``step``: one ``metrics.jsonl`` line
        (``to_jsonl``) and, ``to_aim``, each finite number but :data:`NOT_METRICS` to Aim
        under the context ``subset=split``."""
        if to_jsonl and self.jsonl is not None:
            self.jsonl.write(json.dumps({"step": step, "split": split, **metrics}) + "\n")
            self.jsonl.flush()
        if to_aim and self.aim_run is not None:
            for name, value in metrics.items():
                if (
                    name not in NOT_METRICS
                    and isinstance(value, (int, float))
                    and math.isfinite(value)
                ):
                    self.aim_run.track(value, name=name, step=step, context={"subset": split})

    def close(self, timeout_s: float | None = None) -> None:
        """Close ``metrics.jsonl`` and the Aim run, the latter in a daemon thread given
        ``timeout_s`` (default :data:`AIM_CLOSE_TIMEOUT_S`): past it, a one-line warning and
        the run stays open (Aim's ``Run.close`` can wait for ever on its reporter's flush)."""
        timeout_s = AIM_CLOSE_TIMEOUT_S if timeout_s is None else timeout_s
        if self.jsonl is not None:
            self.jsonl.close()
        if self.aim_run is None:
            return
        run = self.aim_run
        failed: list[BaseException] = []

        def close_run() -> None:
            try:
                run.close()
            except BaseException as e:  # raised in the caller's thread below
                failed.append(e)

        closer = threading.Thread(target=close_run, name="aim-run-close", daemon=True)
        closer.start()
        closer.join(timeout_s)
        if closer.is_alive():
            LOG.warning(
                f"warning: Aim run {run.hash} did not close within {timeout_s:g} s (Aim's "
                "Run.close waiting on its flush); left open: a sweep closes it at its end, "
                f"else `aim runs --repo REPO close {run.hash}`"
            )
        elif failed:
            raise failed[0]


class LossWindow:
    """The train losses of the steps since the last :meth:`take`, summed where they are
    (device tensors: no sync per step). Each sink averages over its own interval: Aim over
    ``GENERAL.aim_log_step`` steps, ``metrics.jsonl`` and the console over
    ``GENERAL.log_step`` (``handpose.train``)."""

    def __init__(self) -> None:
        self.sums: dict[str, Any] = {}
        self.count = 0

    def add(self, losses: dict[str, Any]) -> None:
        self.sums = {k: self.sums.get(k, 0) + v.detach().float() for k, v in losses.items()}
        self.count += 1

    def take(self) -> dict[str, Any]:
        """Each loss's mean over the window's steps (tensors); the window starts afresh."""
        means = {k: v / self.count for k, v in self.sums.items()}
        self.sums, self.count = {}, 0
        return means


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """JSON objects, one a line; blank lines and a torn last line (a live run) are skipped."""
    rows = []
    for line in path.read_text().splitlines():
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(obj, dict):
            rows.append(obj)
    return rows


def load_metrics(run_dir: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The train and val lines of ``run_dir/metrics.jsonl`` (what :class:`Tracker` writes),
    sorted by step (the last line of a step wins)."""
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return [], []
    by_split: dict[str, dict[int, dict[str, Any]]] = {"train": {}, "val": {}}
    for row in read_jsonl(path):
        if row.get("split") in by_split and isinstance(row.get("step"), int):
            by_split[row["split"]][row["step"]] = row
    return tuple(sorted(d.values(), key=lambda r: r["step"]) for d in by_split.values())


def init_aim_repo(url: str) -> None:
    """Create the local Aim repo at ``url`` unless it exists (``aim://`` servers: nothing).

    Aim's init opens the repo index read-write, so two processes initialising the same repo
    at once fail on its lock (seen when two sweep trials started together): sweep drivers
    call this once before any trial starts, and runs only init a repo that is missing."""
    from handpose.data.shards import is_url

    if is_url(url):
        return
    from aim import Repo  # heavy import, only when tracking

    path = Path(url).expanduser().resolve()
    path.mkdir(parents=True, exist_ok=True)
    if not Repo.exists(str(path)):
        Repo.from_path(str(path), init=True)


def _read_hash(run_dir: Path) -> str | None:
    path = run_dir / AIM_HASH_FILE
    return (path.read_text().strip() or None) if path.is_file() else None


def _delete_run(repo: str, run_hash: str, tries: int = 3) -> None:
    """Delete the Aim run ``run_hash`` (an earlier attempt of a run started afresh) if the
    repo has it. Aim's delete takes the repo index's lock without waiting (held a moment by
    whatever indexes runs): a few tries, then a one-line warning and the run stays."""
    from aim import Repo  # heavy import, only when tracking

    for attempt in range(tries):
        aim_repo = Repo.from_path(repo)
        if not aim_repo.run_exists(run_hash):
            return
        if aim_repo.delete_run(run_hash):  # False (Aim logs why) when it could not
            LOG.info(f"deleted Aim run {run_hash}, an earlier attempt of this run")
            return
        if attempt + 1 < tries:
            time.sleep(1.0)
    LOG.warning(
        f"warning: could not delete Aim run {run_hash}, an earlier attempt of this run "
        f"started afresh: the Aim repo {repo} keeps it next to the new one"
    )


def _open_aim_run(cfg: DictConfig, run_dir: Path, aim_hash: str | None, earlier: str | None = None):
    """The run's Aim run: the one with ``aim_hash`` when the repo has it (a resume), else a
    new one (a resume into another output folder or repo: a one-line warning says so).
    ``earlier``: the Aim run of an earlier attempt of a run started afresh, deleted first."""
    from aim import Run  # heavy import, only when tracking
    from aim.sdk.errors import MissingRunError

    repo = resolve_aim_repo(cfg.AIM.server_url, cfg.GENERAL.output_dir)
    init_aim_repo(repo)
    _wait_for_aim_db(repo)
    if earlier is not None and earlier != aim_hash:
        _delete_run(repo, earlier)

    def open_run(run_hash: str | None):
        return Run(
            run_hash=run_hash,
            repo=repo,
            experiment=cfg.AIM.experiment,
            force_resume=run_hash is not None,
            system_tracking_interval=None,
            capture_terminal_logs=False,
        )

    try:
        run = open_run(aim_hash)
    except MissingRunError:
        LOG.warning(
            f"warning: Aim run {aim_hash} is not in the Aim repo {repo}: "
            "continuing in a new Aim run"
        )
        run, aim_hash = open_run(None), None
    run.name = cfg.GENERAL.run_name or run_dir.name
    return run, aim_hash


def _wait_for_aim_db(url: str) -> None:
    """Make this process's connections to the local Aim repo's run table wait up to
    ``AIM_DB_WAIT_S`` for its lock (SQLite's busy timeout; Aim's default is 5 s)."""
    from handpose.data.shards import is_url

    if is_url(url) or url in _AIM_DBS:
        return
    from aim.storage.structured.db import DB
    from sqlalchemy import event

    def busy_timeout(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.execute(f"PRAGMA busy_timeout = {int(AIM_DB_WAIT_S * 1000)}")

    db = DB.from_path(str(Path(url) / ".aim"))  # the object Aim's Repo of ``url`` uses
    event.listen(db.engine, "connect", busy_timeout)
    db.engine.dispose()  # connections made before (e.g. by the repo's init) are replaced
    _AIM_DBS[url] = db
