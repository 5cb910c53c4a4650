"""One config system: typed defaults (dataclasses) + YAML recipe + ``KEY=VALUE`` overrides.

:class:`Config` composes the sections. The ``MODEL`` section is the model's own, defined
beside the code that reads it with its own checks (``ModelCfg`` and ``validate_model`` in
:mod:`handpose.model.posenet`, ``BackboneCfg`` in :mod:`handpose.model.vit`, ``HandecCfg``
in :mod:`handpose.model.decoder`); :func:`validate` runs those checks with its own.

:func:`load_config` is the one way to a config: it merges, in order, the defaults below,
the source (a name in ``configs/``, a YAML path, or a container such as a saved
``config.yaml`` or a sweep's base config), the ``KEY=VALUE`` overrides and the ``params``
(typed values by key, e.g. a sweep trial's searched values), validates the result once and
marks it validated (:func:`is_validated`). Struct mode rejects unknown keys; any problem
raises :class:`ConfigError` naming the key.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException

from handpose.errors import ConfigError, check, check_positive, first_line
from handpose.model.posenet import ModelCfg, validate_model
from handpose.schedules import DROPOUT_SCHEDULES

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
DEFAULT_DATA_DIR = "data/synthetic"


@dataclass
class GeneralCfg:
    total_step: int = 100000
    log_step: int = 100
    checkpoint_step: int = 3000
    val_step: int | None = None  # default: checkpoint_step
    keep_checkpoints: int = 3
    dropout_warmup_step: int = 10000
    dropout_schedule: str = "step"  # step | linear | cosine
    dropout_ramp_step: int = 0
    val_seed: int = 42
    seed: int = 0
    resume_path: str | None = None
    output_dir: str = "outputs"
    run_name: str | None = None
    aim_log_step: int = 10
    device: str = "auto"  # auto | cpu | cuda | cuda:N


@dataclass
class AugmentationCfg:
    crop_jitter: float = 0.05  # fraction of the crop size
    scale_jitter: float = 0.1
    color_jitter: float = 0.2
    blur_p: float = 0.0
    blur_sigma: float = 1.0  # px


@dataclass
class TrainCfg:
    lr: float = 1e-4
    backbone_lr: float = 1e-5
    weight_decay: float = 1e-4
    warmup_step: int = 500
    min_lr_ratio: float = 0.01
    grad_clip: float = 1.0
    sample_per_device: int = 32
    num_workers: int = 0
    mixed_precision: str = "no"  # no | bf16 | fp16
    compile: bool = False
    # > 0: validate and save an exponential moving average of the weights, this decay per
    # step (handpose/ema.py); 0: the weights themselves
    ema_decay: float = 0.0
    augmentation: AugmentationCfg = field(default_factory=AugmentationCfg)


@dataclass
class LossCfg:
    lambda_theta: float = 3.0
    lambda_shape: float = 3.0
    lambda_trans: float = 0.05
    lambda_rel: float = 0.012
    lambda_img: float = 0.002


@dataclass
class TrainSplitCfg:
    source: list = field(default_factory=lambda: [DEFAULT_DATA_DIR + "/train-*.tar"])
    shuffle_buffer: int = 500  # samples


@dataclass
class ValSplitCfg:
    source: list = field(default_factory=lambda: [DEFAULT_DATA_DIR + "/val-*.tar"])
    max_samples: int | None = None  # a fixed subset chosen with GENERAL.val_seed


@dataclass
class SyntheticCfg:
    dir: str = DEFAULT_DATA_DIR  # generated here on first use when DATA.*.source point here
    train: int = 1000
    val: int = 500
    seed: int = 0
    image_size: int = 128


@dataclass
class DataCfg:
    train: TrainSplitCfg = field(default_factory=TrainSplitCfg)
    val: ValSplitCfg = field(default_factory=ValSplitCfg)
    val_batch_size: int = 64
    train_eval_samples: int = 256  # fixed train subset validated in eval mode (0: off)
    max_bad_fraction: float = 0.01
    synthetic: SyntheticCfg = field(default_factory=SyntheticCfg)


@dataclass
class AimCfg:
    enabled: bool = True
    server_url: str | None = None  # repo path or aim://host:port (default GENERAL.output_dir)
    experiment: str = "handpose"


@dataclass
class Config:
    GENERAL: GeneralCfg = field(default_factory=GeneralCfg)
    TRAIN: TrainCfg = field(default_factory=TrainCfg)
    MODEL: ModelCfg = field(default_factory=ModelCfg)
    LOSS: LossCfg = field(default_factory=LossCfg)
    DATA: DataCfg = field(default_factory=DataCfg)
    AIM: AimCfg = field(default_factory=AimCfg)


def resolve_config_path(name_or_path: str) -> Path:
    """``stage1-tiny`` -> ``configs/stage1-tiny.yaml``; a path is taken as is."""
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") and p.exists():
        return p
    for cand in (CONFIG_DIR / f"{name_or_path}.yaml", CONFIG_DIR / name_or_path, p):
        if cand.is_file():
            return cand
    raise ConfigError(f"config not found: {name_or_path} (looked in {CONFIG_DIR})")


def parse_override(item: str) -> tuple[str, Any]:
    """``"LOSS.lambda_trans=0.1"`` -> ``("LOSS.lambda_trans", 0.1)`` (YAML-typed value)."""
    key, sep, value = item.partition("=")
    key = key.strip().lstrip("+")
    if not sep or not key:
        raise ConfigError(f"override must be KEY=VALUE: {item!r}")
    parsed = OmegaConf.create({"v": value}) if value == "" else OmegaConf.create(f"v: {value}")
    return key, OmegaConf.to_container(parsed)["v"]


# Keys that were accepted and never used. A config.yaml saved by an older run holds them
# with these (their default) values: they are dropped when it is loaded. Any other value,
# or setting one by an override, is a ConfigError naming the key.
DEPRECATED = {
    "DATA.train.max_samples": (None, "it never limited training"),
    "DATA.val.shuffle_buffer": (500, "validation is never shuffled"),
}


def _deprecated(key: str) -> ConfigError:
    return ConfigError(f"{key} is deprecated ({DEPRECATED[key][1]}): remove it")


def _drop_deprecated(data: dict | DictConfig, source: str) -> DictConfig:
    """A copy of ``data`` without the :data:`DEPRECATED` keys that hold their old default."""
    data = data.copy() if isinstance(data, DictConfig) else OmegaConf.create(data)
    with open_dict(data):
        for key, (old, _) in DEPRECATED.items():
            parent, _, leaf = key.rpartition(".")
            node = OmegaConf.select(data, parent, default=None)
            if isinstance(node, DictConfig) and leaf in node:
                if node[leaf] != old:
                    raise ConfigError(f"{source}: {_deprecated(key)}")
                del node[leaf]
    return data


def set_value(cfg: DictConfig, key: str, value: Any) -> None:
    """``cfg.<key> = value`` (typed, in place); ConfigError for a deprecated or unknown key
    or a value of the wrong type."""
    if key in DEPRECATED:
        raise _deprecated(key)
    if OmegaConf.select(cfg, key, default="__missing__") == "__missing__":
        raise ConfigError(f"unknown config key: {key}")
    try:
        OmegaConf.update(cfg, key, value, merge=False)
    except OmegaConfBaseException as e:
        raise ConfigError(f"bad value for {key}: {value!r} ({type(e).__name__})") from None


def _from_container(data: Mapping[str, Any] | DictConfig, source: str) -> DictConfig:
    """Defaults merged with ``data`` (a config's content), struct mode, unvalidated."""
    cfg = OmegaConf.structured(Config)
    OmegaConf.set_struct(cfg, True)
    try:
        cfg = OmegaConf.merge(cfg, _drop_deprecated(data, source))
    except OmegaConfBaseException as e:
        key = getattr(e, "full_key", None) or ""
        raise ConfigError(f"{source}: bad config key {key}: {first_line(e)}") from None
    return cfg


# The flag load_config sets on the configs it returns: train() does not validate them again.
_VALIDATED = "handpose_validated"


def load_config(
    source: str | Path | Mapping[str, Any] | DictConfig,
    overrides: Sequence[str] = (),
    params: Mapping[str, Any] | None = None,
    *,
    origin: str | None = None,
) -> DictConfig:
    """A validated config: defaults <- ``source`` <- ``overrides`` <- ``params``.

    ``source``: a config name in ``configs/`` or a YAML path, or a container (a saved
    ``config.yaml``'s content, a sweep's base config as a dict) named ``origin`` in errors;
    a config this function returned is copied as it is. ``overrides``: ``KEY=VALUE`` text
    (values parsed as YAML). ``params``: typed values by key, set as they are. The result
    is validated here, once, and marked so (:func:`is_validated`). Raises ConfigError
    naming the bad key."""
    if isinstance(source, DictConfig) and is_validated(source):
        cfg = copy.deepcopy(source)  # built here before: its keys are the defaults' own
    elif isinstance(source, (str, Path)):
        path = resolve_config_path(str(source))
        cfg = _from_container(OmegaConf.load(path), str(path))
    else:
        cfg = _from_container(source, origin or "<dict>")
    for item in overrides:
        set_value(cfg, *parse_override(item))
    for key, value in (params or {}).items():
        set_value(cfg, key, value)
    validate(cfg)
    cfg._set_flag(_VALIDATED, True)
    return cfg


def is_validated(cfg: DictConfig) -> bool:
    """Whether ``cfg`` was built by :func:`load_config` (and so validated). Changing a
    built config afterwards does not clear the mark: build a new one instead
    (``load_config(cfg, params=...)``), or call :func:`validate` after the change."""
    return bool(cfg._get_flag(_VALIDATED))


def validate(cfg: DictConfig) -> DictConfig:
    """Check everything that can be checked without building anything (model, data, Ray):
    ranges, choices, the device, and the model's own rules (``validate_model``: the backbone
    arch and depth, the hand model, ...). Raises :class:`ConfigError` (one line,
    naming the key) at the first problem."""
    g, t, m, d = cfg.GENERAL, cfg.TRAIN, cfg.MODEL, cfg.DATA
    check_positive(
        g, "GENERAL", "total_step log_step checkpoint_step aim_log_step keep_checkpoints"
    )
    check_positive(g, "GENERAL", "dropout_warmup_step dropout_ramp_step", strict=False)
    check(g.val_step is None or g.val_step > 0, "GENERAL.val_step", g.val_step, "> 0")
    check(
        g.dropout_schedule in DROPOUT_SCHEDULES,
        "GENERAL.dropout_schedule",
        g.dropout_schedule,
        f"one of {', '.join(DROPOUT_SCHEDULES)}",
    )
    check(
        re.fullmatch(r"auto|cpu|cuda(:\d+)?", g.device) is not None,
        "GENERAL.device",
        g.device,
        "auto, cpu, cuda or cuda:N",
    )
    check(t.lr > 0, "TRAIN.lr", t.lr, "> 0")
    check_positive(t, "TRAIN", "sample_per_device grad_clip")
    check_positive(t, "TRAIN", "backbone_lr weight_decay warmup_step num_workers", strict=False)
    check(0.0 <= t.min_lr_ratio <= 1.0, "TRAIN.min_lr_ratio", t.min_lr_ratio, "in [0, 1]")
    check(0.0 <= t.ema_decay < 1.0, "TRAIN.ema_decay", t.ema_decay, "in [0, 1)")
    check(
        t.mixed_precision in ("no", "bf16", "fp16"),
        "TRAIN.mixed_precision",
        t.mixed_precision,
        "one of no, bf16, fp16",
    )
    aug = t.augmentation
    check_positive(
        aug, "TRAIN.augmentation", "crop_jitter scale_jitter color_jitter blur_sigma", strict=False
    )
    check(aug.scale_jitter < 1.0, "TRAIN.augmentation.scale_jitter", aug.scale_jitter, "< 1")
    check(0.0 <= aug.blur_p <= 1.0, "TRAIN.augmentation.blur_p", aug.blur_p, "in [0, 1]")
    for key, value in cfg.LOSS.items():
        check(value >= 0, f"LOSS.{key}", value, ">= 0")
    validate_model(m, "MODEL")
    check(
        0.0 <= d.max_bad_fraction <= 1.0, "DATA.max_bad_fraction", d.max_bad_fraction, "in [0, 1]"
    )
    check_positive(d, "DATA", "val_batch_size")
    check_positive(d, "DATA", "train_eval_samples", strict=False)
    check_positive(d.train, "DATA.train", "shuffle_buffer")
    check_positive(d.synthetic, "DATA.synthetic", "train val image_size")
    for split in ("train", "val"):
        check(
            len(d[split].source) > 0,
            f"DATA.{split}.source",
            list(d[split].source),
            "a non-empty list",
        )
    check(
        d.val.max_samples is None or d.val.max_samples > 0,
        "DATA.val.max_samples",
        d.val.max_samples,
        "> 0",
    )
    return cfg


def val_step(cfg: Mapping[str, Any]) -> int:
    """Steps between two validations: ``GENERAL.val_step``, else ``GENERAL.checkpoint_step``.
    ``cfg``: a config, or a plain dict of one (``OmegaConf.to_container``)."""
    general = cfg["GENERAL"]
    return general["val_step"] or general["checkpoint_step"]


def to_yaml(cfg: DictConfig) -> str:
    return OmegaConf.to_yaml(cfg, resolve=True)
