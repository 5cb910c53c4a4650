"""The sweep spec (``configs/sweep/*.yaml``): typed presets, validated, resolved to a space.

The YAML is read into the dataclasses below (typed defaults, struct mode, unknown keys
rejected, as for training configs), so every default lives here once.
Everything runs before Ray starts, so bad input fails fast with a one-line error.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from handpose.config import CONFIG_DIR, load_config
from handpose.errors import ConfigError, UserError, first_line

SPEC_PATH = CONFIG_DIR / "sweep" / "dropout_warmup.yaml"
# Every trial must validate on the same stream: these may not vary across trials.
FROZEN_PREFIXES = ("GENERAL.val_seed", "DATA.val.", "DATA.val_batch_size")
TYPES = ("int", "float", "choice")


@dataclass
class ParamCfg:
    """One searched key: ``int``/``float`` in [low, high] (``log``; ``scale: total_step``
    means low/high are fractions of the budget) or ``choice`` among ``values``."""

    type: str = MISSING
    low: float | None = None
    high: float | None = None
    log: bool = False
    scale: str | None = None
    values: list[Any] | None = None


@dataclass
class ResourcesCfg:
    """Per trial: ``workers`` data-parallel workers of ``cpu`` CPUs and ``gpu`` GPUs each."""

    cpu: float = 1.0
    gpu: float = 0.0
    workers: int = 1


@dataclass
class SchedulerCfg:
    """ASHA on the training step (``sweeps/run/scheduler.py``)."""

    grace_period: int = 300  # steps
    reduction_factor: float = 2.0
    # no rung decision before a trial's dropout is at its target and validated once
    schedule_aware: bool = True
    sentinel_fraction: float = 0.2  # trials run to the full budget whatever ASHA says
    min_sentinels: int = 2


@dataclass
class PresetCfg:
    base_config: str = "stage1-tiny"
    base_overrides: list[str] = field(default_factory=list)
    num_samples: int = 10
    max_concurrent: int = 2
    seed: int = 0
    startup_trials: int | None = None  # TPE's random start-up trials; null: num_samples/4, >= 2
    resources: ResourcesCfg = field(default_factory=ResourcesCfg)
    max_failures: int = 2
    # Tune's checkpoints per trial while it runs; the latest is kept at the end. 1 makes Tune
    # snapshot its whole state at every checkpoint of any trial; 2 saved ~45% of the driver's
    # CPU at 100 scripted trials (docs/benchmarks.md section 7)
    keep_checkpoints: int = 2
    # a trial hands Tune a checkpoint at most this often (and at its last validation); the
    # others are reported without one. Tune's forced snapshots follow checkpoints: at 1000
    # scripted trials validating seconds apart they cost most of the driver's CPU
    checkpoint_interval_s: float = 10.0
    keep_stopped_checkpoints: bool = False  # false: trials ASHA stopped lose theirs at the end
    export_metrics: bool = True  # trial and sweep metrics on Ray's dashboard (docs/deploy.md)
    scheduler: SchedulerCfg = field(default_factory=SchedulerCfg)
    space: dict[str, ParamCfg] = field(default_factory=dict)
    # null: one point, the base config's own values of the searched keys (the baseline)
    points_to_evaluate: list[dict[str, Any]] | None = None


@dataclass
class SpecFileCfg:
    metric: str = "mpjpe"
    mode: str = "min"
    defaults: Any = None  # a YAML anchor block that presets merge (`<<: *defaults`)
    presets: dict[str, PresetCfg] = field(default_factory=dict)


@dataclass
class SweepSpec:
    """A resolved preset: its settings, and the space in training-config units."""

    preset: str
    metric: str
    mode: str
    settings: PresetCfg
    space: dict[str, dict[str, Any]]  # key -> {type, low, high, log, scale} or {type, values}
    points_to_evaluate: list[dict[str, Any]]

    # The preset's settings that the sweep, the confirmation and the benchmarks read (``space``
    # and ``points_to_evaluate`` above are the resolved ones, not the preset's raw ones).
    @property
    def base_config(self) -> str:
        return self.settings.base_config

    @property
    def num_samples(self) -> int:
        return self.settings.num_samples

    @property
    def max_concurrent(self) -> int:
        return self.settings.max_concurrent

    @property
    def seed(self) -> int:
        return self.settings.seed

    @property
    def startup_trials(self) -> int | None:
        return self.settings.startup_trials

    @property
    def resources(self) -> ResourcesCfg:
        return self.settings.resources

    @property
    def max_failures(self) -> int:
        return self.settings.max_failures

    @property
    def keep_checkpoints(self) -> int:
        return self.settings.keep_checkpoints

    @property
    def checkpoint_interval_s(self) -> float:
        return self.settings.checkpoint_interval_s

    @property
    def keep_stopped_checkpoints(self) -> bool:
        return self.settings.keep_stopped_checkpoints

    @property
    def scheduler(self) -> SchedulerCfg:
        return self.settings.scheduler

    @property
    def grace_period(self) -> int:
        return self.settings.scheduler.grace_period

    @property
    def reduction_factor(self) -> float:
        return self.settings.scheduler.reduction_factor


def read_spec_file(path: str | Path) -> SpecFileCfg:
    try:
        raw = OmegaConf.load(path)
        typed = OmegaConf.merge(OmegaConf.structured(SpecFileCfg), raw)
        return OmegaConf.to_object(typed)
    except FileNotFoundError:
        raise ConfigError(f"sweep spec not found: {path}") from None
    except OmegaConfBaseException as e:
        key = getattr(e, "full_key", None) or ""
        raise ConfigError(f"{path}: bad key {key}: {first_line(e)}") from None


def load_spec(
    preset: str,
    path: str | Path = SPEC_PATH,
    base_cfg: DictConfig | None = None,
    extra_overrides: tuple[str, ...] = (),
) -> tuple[SweepSpec, DictConfig]:
    """Load ``preset`` of the YAML at ``path``; returns the spec and the validated base config.

    A base config loaded here (``base_cfg`` None) gets absolute paths (:func:`absolutize`);
    a given ``base_cfg`` (a saved sweep's) is used as it is. The model checks
    (:func:`check_model`) open the same files the trials will."""
    spec_file = read_spec_file(path)
    if preset not in spec_file.presets:
        raise ConfigError(
            f"{path}: unknown preset {preset!r} (have: {', '.join(spec_file.presets)})"
        )
    p = spec_file.presets[preset]
    p.base_overrides = list(p.base_overrides) + list(extra_overrides)
    if base_cfg is None:
        cfg = load_config(p.base_config, p.base_overrides)
        absolutize(cfg)
    else:
        cfg = base_cfg
    total = cfg.GENERAL.total_step
    space = {key: _resolve_param(key, d, total, cfg) for key, d in p.space.items()}
    if p.points_to_evaluate is None:
        points = [_base_point(cfg, space)]
    else:
        points = [_resolve_point(pt, p.space, space, total) for pt in p.points_to_evaluate]
    spec = SweepSpec(
        preset=preset,
        metric=spec_file.metric,
        mode=spec_file.mode,
        settings=p,
        space=space,
        points_to_evaluate=points,
    )
    _check_spec(spec, cfg, path)
    check_model(cfg, space)
    return spec, cfg


def absolutize(cfg: DictConfig) -> None:
    """Trials run in other folders and on other nodes: make local paths absolute, in place.

    Data and output paths (``DATA.{train,val}.source``, ``DATA.synthetic.dir``,
    ``GENERAL.output_dir``) are relative to the working folder; URLs stay as they are. The
    model checkpoints (``MODEL.backbone.checkpoint``, ``MODEL.handec.checkpoint``) go
    through the loaders' own :func:`resolve_checkpoint_path` (a relative path missing from
    the working folder is looked up in the repository root), so a trial opens exactly the
    file this process resolved. Only path strings change: the config stays as validated."""

    from handpose.data.shards import is_url  # these import torch: only when needed
    from handpose.model.dinov2_io import resolve_checkpoint_path

    def fix(p: str) -> str:
        return p if is_url(p) or os.path.isabs(p) else str(Path(p).resolve())

    for split in ("train", "val"):
        cfg.DATA[split].source = [fix(s) for s in cfg.DATA[split].source]
    cfg.DATA.synthetic.dir = fix(cfg.DATA.synthetic.dir)
    cfg.GENERAL.output_dir = fix(cfg.GENERAL.output_dir)
    for part in (cfg.MODEL.backbone, cfg.MODEL.handec):
        if part.checkpoint:
            part.checkpoint = str(resolve_checkpoint_path(part.checkpoint).resolve())


def _check_spec(spec: SweepSpec, cfg: DictConfig, path: str | Path) -> None:
    where = f"{path}: presets.{spec.preset}"
    if spec.mode not in ("min", "max"):
        raise ConfigError(f"{path}: mode={spec.mode!r}: must be min or max")
    for key in ("num_samples", "max_concurrent"):
        if getattr(spec, key) < 1:
            raise ConfigError(f"{where}.{key}={getattr(spec, key)}: must be >= 1")
    s = spec.scheduler
    if s.grace_period < 1 or s.grace_period > cfg.GENERAL.total_step:
        raise ConfigError(
            f"{where}.scheduler.grace_period={s.grace_period}: must be in "
            f"[1, GENERAL.total_step={cfg.GENERAL.total_step}]"
        )
    if s.reduction_factor < 2:
        raise ConfigError(f"{where}.scheduler.reduction_factor: must be >= 2")
    if not 0.0 <= s.sentinel_fraction <= 1.0 or s.min_sentinels < 0:
        raise ConfigError(
            f"{where}.scheduler: want sentinel_fraction in [0, 1], min_sentinels >= 0"
        )
    r = spec.resources
    if r.cpu < 0 or r.gpu < 0 or r.workers < 1:
        raise ConfigError(f"{where}.resources: want cpu, gpu >= 0 and workers >= 1")
    if spec.startup_trials is not None and spec.startup_trials < 1:
        raise ConfigError(f"{where}.startup_trials={spec.startup_trials}: must be >= 1")


def _resolve_param(key: str, d: ParamCfg, total: int, cfg: DictConfig) -> dict[str, Any]:
    if any(key == p or key.startswith(p) for p in FROZEN_PREFIXES):
        raise ConfigError(
            f"search space key {key}: the validation stream is fixed for the "
            "sweep (one val seed, one val set) and may not be searched"
        )
    if OmegaConf.select(cfg, key, default="__missing__") == "__missing__":
        raise ConfigError(f"search space: unknown config key {key}")
    if d.type not in TYPES:
        raise ConfigError(f"search space {key}: type={d.type!r}: must be one of {', '.join(TYPES)}")
    if d.type == "choice":
        if not d.values:
            raise ConfigError(f"search space {key}: choice needs a non-empty 'values' list")
        for v in d.values:
            _check_value(cfg, key, v)
        return {"type": "choice", "values": list(d.values)}
    if d.low is None or d.high is None:
        raise ConfigError(f"search space {key}: needs low and high")
    if d.scale not in (None, "total_step"):
        raise ConfigError(f"search space {key}: scale={d.scale!r}: only total_step is known")
    factor = total if d.scale else 1
    low, high = d.low * factor, d.high * factor
    if d.type == "int":
        low, high = int(round(low)), int(round(high))
    if low > high:
        raise ConfigError(f"search space {key}: low={d.low} > high={d.high}")
    if d.log and low <= 0:
        raise ConfigError(f"search space {key}: log range needs low > 0 (got {d.low})")
    for v in (low, high):
        _check_value(cfg, key, v)
    return {"type": d.type, "low": low, "high": high, "log": d.log, "scale": factor}


def _check_value(cfg: DictConfig, key: str, value: Any) -> None:
    """Build the base config with ``key=value`` (validated: catches dropout >= 1)."""
    try:
        load_config(cfg, params={key: value})
    except ConfigError as e:
        raise ConfigError(f"search space {key}: value {value!r} is invalid: {e}") from None


def _resolve_point(
    point: dict[str, Any], raw_space: dict[str, ParamCfg], space: dict[str, Any], total: int
) -> dict[str, Any]:
    out = {}
    for key, value in point.items():
        if key not in space:
            raise ConfigError(f"points_to_evaluate: {key} is not in the search space")
        if space[key]["type"] != "choice" and raw_space[key].scale:
            value = value * total
        if space[key]["type"] == "int":
            value = int(round(value))
        if space[key]["type"] != "choice" and not space[key]["low"] <= value <= space[key]["high"]:
            raise ConfigError(f"points_to_evaluate: {key}={value} is outside the search range")
        out[key] = value
    return out


def _base_point(cfg: DictConfig, space: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The baseline: the base config's own values of the searched keys (in range)."""
    point = {key: OmegaConf.select(cfg, key) for key in space}
    for key, value in point.items():
        d = space[key]
        inside = value in d["values"] if d["type"] == "choice" else d["low"] <= value <= d["high"]
        if not inside:
            where = d["values"] if d["type"] == "choice" else f"[{d['low']}, {d['high']}]"
            raise ConfigError(
                f"{key}={value!r} (the base config's value, the baseline) is "
                f"outside its search range {where}: set {key} inside it"
            )
    return point


def check_model(cfg: DictConfig, space: dict[str, dict[str, Any]]) -> None:
    """Before Ray, open what every trial opens: the backbone checkpoint must be readable (it
    is opened, not read: DINOv2-L's is 1.2 GB), and the model must build on the meta device
    (no memory) with the decoder checkpoint loaded, for the base config and at each end of
    every searched ``MODEL.*`` key (so a searched decoder shape that does not fit the
    decoder checkpoint fails here, not in every trial). Paths resolve as in the trials
    (:func:`resolve_checkpoint_path`)."""
    import torch

    from handpose.model import build_model
    from handpose.model.dinov2_io import resolve_checkpoint_path

    if cfg.MODEL.backbone.checkpoint:
        bb = resolve_checkpoint_path(cfg.MODEL.backbone.checkpoint)
        try:
            if not bb.is_dir():
                bb.open("rb").close()
        except OSError as e:
            raise UserError(
                f"unreadable backbone checkpoint {bb}: {e.strerror or e} "
                "(MODEL.backbone.checkpoint)"
            ) from None

    def build(params: dict[str, Any]) -> None:
        trial = load_config(cfg, params={**params, "MODEL.backbone.checkpoint": None})
        with torch.device("meta"), warnings.catch_warnings():
            # loading into meta tensors checks names and shapes, copies nothing
            warnings.filterwarnings("ignore", ".*copying from a non-meta parameter")
            build_model(trial)

    build({})  # the base config: a missing or mismatched decoder checkpoint, named
    for key in (k for k in space if k.startswith("MODEL.")):
        d = space[key]
        for value in d["values"] if d["type"] == "choice" else (d["low"], d["high"]):
            try:
                build({key: value})
            except Exception as e:  # noqa: BLE001 - any failure here is the value's fault
                raise ConfigError(
                    f"search space {key}: value {value!r} does not build the model: {first_line(e)}"
                ) from None


def tune_space(spec: SweepSpec) -> dict[str, Any]:
    """The spec's space as Ray Tune domains (OptunaSearch converts them)."""
    from ray import tune

    out = {}
    for key, d in spec.space.items():
        if d["type"] == "choice":
            out[key] = tune.choice(d["values"])
        elif d["type"] == "int":
            out[key] = (tune.lograndint if d["log"] else tune.randint)(d["low"], d["high"] + 1)
        else:
            out[key] = (tune.loguniform if d["log"] else tune.uniform)(d["low"], d["high"])
    return out


def trial_overrides(params: dict[str, Any]) -> list[str]:
    """Searched values as ``KEY=VALUE`` text (sorted), for people and command lines."""
    return [f"{k}={v}" for k, v in sorted(params.items())]
