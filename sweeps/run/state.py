"""A sweep as the driver carries it (:class:`SweepRun`) and as its folder keeps it
(``sweep_state.yaml``: :func:`write_state`, :func:`read_state`, :func:`open_sweep`).

``sweep_state.yaml`` holds what ``--resume``, the confirmation and the report need to see
the sweep as it ran: the preset, the spec's path, the number of trials and the resolved base
config. Neither Ray nor torch here: the report reads the state too.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig, OmegaConf

from handpose.errors import UserError

if TYPE_CHECKING:
    from sweeps.run.spec import SweepSpec

STATE_FILE = "sweep_state.yaml"


@dataclass(kw_only=True)
class SweepRun:
    """What the sweep driver carries to the Tuner, the trainable and the summary.

    ``base_cfg``: the validated base config of every trial; ``storage``: Tune's storage root
    (a local path or a URL); ``sweep_dir``: the sweep's own folder, named like the sweep;
    ``trainable_fn``: replaces the trial function (same signature as
    ``sweeps.run.trainable.handpose_trial``), for benchmarks that script the trials."""

    spec: SweepSpec
    base_cfg: DictConfig
    storage: str
    sweep_dir: Path
    num_samples: int
    trainable_fn: Callable[..., None] | None = None

    @property
    def name(self) -> str:
        """The sweep's name: its folder's, and Tune's experiment's under ``storage``."""
        return self.sweep_dir.name


@dataclass(frozen=True)
class SweepState:
    """The content of ``sweep_state.yaml``."""

    preset: str
    spec: str  # the sweep spec's path
    num_samples: int
    base: dict[str, Any]


def write_state(sweep_dir: Path, state: SweepState) -> None:
    OmegaConf.save(asdict(state), sweep_dir / STATE_FILE)


def read_state(sweep_dir: Path) -> SweepState:
    """The sweep's ``sweep_state.yaml`` (UserError naming it when it is missing)."""
    path = sweep_dir / STATE_FILE
    if not path.is_file():
        raise UserError(f"not a sweep folder: missing {path}")
    raw = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    return SweepState(raw["preset"], raw["spec"], int(raw["num_samples"]), raw["base"])


def open_sweep(sweep_dir: Path) -> tuple[SweepState, SweepSpec, DictConfig]:
    """A saved sweep as it ran: its state, its spec (resolved against its base config) and
    that base config, validated (a UserError names what is missing)."""
    from handpose.config import load_config  # torch, through the model's config
    from sweeps.run.spec import load_spec

    state = read_state(sweep_dir)
    base_cfg = load_config(state.base, origin=str(sweep_dir / STATE_FILE))
    spec, _ = load_spec(state.preset, state.spec, base_cfg=base_cfg)
    return state, spec, base_cfg
