"""One config system: typed defaults (dataclasses) + YAML recipe + ``KEY=VALUE`` overrides.

``load_config(name_or_path, overrides)`` merges, in order: the defaults below, the YAML
file (a name in ``configs/`` or a path), then the overrides, and validates the result.
Struct mode rejects unknown keys; any problem raises :class:`ConfigError` naming the key.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from handpose.errors import ConfigError

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
    device: str = "auto"  # auto | cpu | cuda


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
    augmentation: AugmentationCfg = field(default_factory=AugmentationCfg)


@dataclass
class BackboneCfg:
    arch: str = "vit_large"  # vit_tiny | vit_small | vit_base | vit_large | vit_giant2
    depth: int | None = None  # number of blocks (default: the arch's); small for CPU presets
    patch_size: int = 14
    num_register_tokens: int = 0
    checkpoint: str | None = None  # DINOv2 .pth or Hugging Face dinov2-* folder
    freeze: bool = False


@dataclass
class HandecCfg:
    num_layer: int = 6
    num_head: int = 8
    dim_head: int = 64
    dim_mlp: int = 1024
    dropout: float = 0.1
    context_dim: int = 1024
    dim: int = 1024
    # queries start from a code of the whole patch grid (decoder.py); false: learned only
    spatial_init: bool = True


@dataclass
class ModelCfg:
    img_size: int = 224
    hand_model: str = "kinematic"  # seam for a MANO layer later
    num_betas: int = 10
    backbone: BackboneCfg = field(default_factory=BackboneCfg)
    handec: HandecCfg = field(default_factory=HandecCfg)


@dataclass
class LossCfg:
    lambda_theta: float = 3.0
    lambda_shape: float = 3.0
    lambda_trans: float = 0.05
    lambda_rel: float = 0.012
    lambda_img: float = 0.002


@dataclass
class SplitCfg:
    source: list = field(default_factory=lambda: [DEFAULT_DATA_DIR + "/train-*.tar"])
    max_samples: int | None = None
    shuffle_buffer: int = 500


@dataclass
class SyntheticCfg:
    dir: str = DEFAULT_DATA_DIR  # generated here on first use when DATA.*.source point here
    train: int = 1000
    val: int = 500
    seed: int = 0
    image_size: int = 128


@dataclass
class DataCfg:
    train: SplitCfg = field(default_factory=SplitCfg)
    val: SplitCfg = field(
        default_factory=lambda: SplitCfg(source=[DEFAULT_DATA_DIR + "/val-*.tar"], max_samples=None)
    )
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


def apply_overrides(cfg: DictConfig, overrides: Sequence[str]) -> DictConfig:
    for item in overrides:
        key, value = parse_override(item)
        if OmegaConf.select(cfg, key, default="__missing__") == "__missing__":
            raise ConfigError(f"unknown config key: {key}")
        try:
            OmegaConf.update(cfg, key, value, merge=False)
        except OmegaConfBaseException as e:
            raise ConfigError(f"bad value for {key}: {value!r} ({type(e).__name__})") from None
    return cfg


def from_container(data: dict | DictConfig, source: str = "<dict>") -> DictConfig:
    """Defaults merged with ``data`` (e.g. a saved ``config.yaml``), struct mode, unvalidated."""
    cfg = OmegaConf.structured(Config)
    OmegaConf.set_struct(cfg, True)
    try:
        cfg = OmegaConf.merge(cfg, data)
    except OmegaConfBaseException as e:
        key = getattr(e, "full_key", None) or ""
        raise ConfigError(f"{source}: bad config key {key}: {str(e).splitlines()[0]}") from None
    return cfg


def load_config(name_or_path: str, overrides: Sequence[str] = ()) -> DictConfig:
    """Defaults <- YAML <- overrides, validated. Raises ConfigError naming the bad key."""
    path = resolve_config_path(name_or_path)
    data = OmegaConf.load(path)
    cfg = from_container(data, source=str(path))
    cfg = apply_overrides(cfg, overrides)
    validate(cfg)
    return cfg


def _check(cond: bool, key: str, value: Any, want: str) -> None:
    if not cond:
        raise ConfigError(f"{key}={value!r}: must be {want}")


def validate(cfg: DictConfig) -> DictConfig:
    g, t, m, d = cfg.GENERAL, cfg.TRAIN, cfg.MODEL, cfg.DATA
    for key in ("total_step", "log_step", "checkpoint_step", "aim_log_step", "keep_checkpoints"):
        _check(g[key] > 0, f"GENERAL.{key}", g[key], "> 0")
    _check(g.val_step is None or g.val_step > 0, "GENERAL.val_step", g.val_step, "> 0")
    for key in ("dropout_warmup_step", "dropout_ramp_step"):
        _check(g[key] >= 0, f"GENERAL.{key}", g[key], ">= 0")
    _check(g.dropout_schedule in ("step", "linear", "cosine"), "GENERAL.dropout_schedule",
           g.dropout_schedule, "one of step, linear, cosine")
    _check(0.0 <= m.handec.dropout < 1.0, "MODEL.handec.dropout", m.handec.dropout, "in [0, 1)")
    _check(t.lr > 0, "TRAIN.lr", t.lr, "> 0")
    _check(t.backbone_lr >= 0, "TRAIN.backbone_lr", t.backbone_lr, ">= 0")
    _check(t.sample_per_device > 0, "TRAIN.sample_per_device", t.sample_per_device, "> 0")
    _check(t.mixed_precision in ("no", "bf16", "fp16"), "TRAIN.mixed_precision",
           t.mixed_precision, "one of no, bf16, fp16")
    _check(0.0 <= t.augmentation.blur_p <= 1.0, "TRAIN.augmentation.blur_p",
           t.augmentation.blur_p, "in [0, 1]")
    for key, value in cfg.LOSS.items():
        _check(value >= 0, f"LOSS.{key}", value, ">= 0")
    _check(m.img_size % m.backbone.patch_size == 0, "MODEL.img_size", m.img_size,
           f"a multiple of MODEL.backbone.patch_size={m.backbone.patch_size}")
    _check(m.handec.num_layer > 0, "MODEL.handec.num_layer", m.handec.num_layer, "> 0")
    _check(0.0 <= d.max_bad_fraction <= 1.0, "DATA.max_bad_fraction", d.max_bad_fraction,
           "in [0, 1]")
    for split in ("train", "val"):
        _check(len(d[split].source) > 0, f"DATA.{split}.source", list(d[split].source),
               "a non-empty list")
    _check(d.val.max_samples is None or d.val.max_samples > 0, "DATA.val.max_samples",
           d.val.max_samples, "> 0")
    return cfg


def val_step(cfg: DictConfig) -> int:
    return cfg.GENERAL.val_step or cfg.GENERAL.checkpoint_step


def to_yaml(cfg: DictConfig) -> str:
    return OmegaConf.to_yaml(cfg, resolve=True)
