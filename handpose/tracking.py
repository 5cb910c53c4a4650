"""Metric sinks of one run: console + ``log.txt``, ``metrics.jsonl`` and Aim."""

from __future__ import annotations

import json
import logging
import math
import sys
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from handpose.data.shards import is_url

LOG = logging.getLogger("handpose")


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


def resolve_aim_repo(cfg: DictConfig, run_dir: Path) -> str:
    """``AIM.server_url`` (path or ``aim://host:port``), else ``GENERAL.output_dir``."""
    url = cfg.AIM.server_url
    if url:
        return url if is_url(url) else str(Path(url).expanduser().resolve())
    return str(Path(cfg.GENERAL.output_dir).resolve())


class Tracker:
    """Writes ``metrics.jsonl`` and, if enabled, one Aim run (resumed by hash on resume).

    ``run_dir`` None: a tracker that records nothing (ranks other than 0)."""

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
            self.aim_run, aim_hash = _open_aim_run(cfg, run_dir, aim_hash)
            if aim_hash is None:
                self.aim_run["hparams"] = OmegaConf.to_container(cfg, resolve=True)
                self.aim_run["run_dir"] = str(run_dir)
                for key, value in (extra or {}).items():
                    self.aim_run[key] = value

    @property
    def aim_hash(self) -> str | None:
        return self.aim_run.hash if self.aim_run is not None else None

    def track(self, step: int, split: str, metrics: dict[str, Any], to_jsonl: bool) -> None:
        if to_jsonl and self.jsonl is not None:
            self.jsonl.write(json.dumps({"step": step, "split": split, **metrics}) + "\n")
            self.jsonl.flush()
        if self.aim_run is not None:
            for name, value in metrics.items():
                if isinstance(value, (int, float)) and math.isfinite(value):
                    self.aim_run.track(value, name=name, step=step, context={"subset": split})

    def close(self) -> None:
        if self.jsonl is not None:
            self.jsonl.close()
        if self.aim_run is not None:
            self.aim_run.close()


def init_aim_repo(url: str) -> None:
    """Create the local Aim repo at ``url`` unless it exists (``aim://`` servers: nothing).

    Aim's init opens the repo index read-write, so two processes initialising the same repo
    at once fail on its lock (seen when two sweep trials started together): sweep drivers
    call this once before any trial starts, and runs only init a repo that is missing."""
    if is_url(url):
        return
    from aim import Repo  # heavy import, only when tracking

    path = Path(url).expanduser().resolve()
    path.mkdir(parents=True, exist_ok=True)
    if not Repo.exists(str(path)):
        Repo.from_path(str(path), init=True)


def _open_aim_run(cfg: DictConfig, run_dir: Path, aim_hash: str | None):
    """The run's Aim run: the one with ``aim_hash`` when the repo has it (a resume), else a
    new one (a resume into another output folder or repo: a one-line warning says so)."""
    from aim import Run  # heavy import, only when tracking
    from aim.sdk.errors import MissingRunError

    repo = resolve_aim_repo(cfg, run_dir)
    init_aim_repo(repo)

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
