"""The sweep spec (``configs/sweep/*.yaml``): load a preset, validate it, build the space.

Everything here runs before Ray starts, so bad input fails fast with a one-line error.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from handpose.config import CONFIG_DIR, apply_overrides, load_config, validate
from handpose.errors import ConfigError

SPEC_PATH = CONFIG_DIR / "sweep" / "dropout_warmup.yaml"
# Every trial must validate on the same stream: these may not vary across trials.
FROZEN_PREFIXES = ("GENERAL.val_seed", "DATA.val.", "DATA.val_batch_size")
TYPES = ("int", "float", "choice")


@dataclass
class SweepSpec:
    preset: str
    metric: str
    mode: str
    base_config: str
    base_overrides: list[str]
    num_samples: int
    max_concurrent: int
    seed: int
    resources: dict[str, float]
    max_failures: int
    keep_checkpoints: int
    grace_period: int
    reduction_factor: float
    space: dict[str, dict[str, Any]]  # resolved: scaled bounds in training-config units
    points_to_evaluate: list[dict[str, Any]] = field(default_factory=list)


def load_spec(preset: str, path: str | Path = SPEC_PATH, base_cfg: DictConfig | None = None,
              extra_overrides: tuple[str, ...] = ()) -> tuple[SweepSpec, DictConfig]:
    """Load ``preset`` of the YAML at ``path``; returns the spec and the validated base config."""
    raw = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    presets = raw.get("presets", {})
    if preset not in presets:
        raise ConfigError(f"{path}: unknown preset {preset!r} (have: {', '.join(presets)})")
    p = presets[preset]
    known = {"base_config", "base_overrides", "num_samples", "max_concurrent", "seed",
             "resources", "max_failures", "keep_checkpoints", "scheduler", "space",
             "points_to_evaluate"}
    unknown = set(p) - known
    if unknown:
        raise ConfigError(f"{path}: presets.{preset}: unknown key {sorted(unknown)[0]}")
    overrides = list(p.get("base_overrides", [])) + list(extra_overrides)
    cfg = base_cfg if base_cfg is not None else load_config(p["base_config"], overrides)
    total = cfg.GENERAL.total_step
    space = {key: _resolve_param(key, dict(d), total, cfg) for key, d in p["space"].items()}
    points = [_resolve_point(pt, p["space"], space, total)
              for pt in p.get("points_to_evaluate", [])]
    sched = p.get("scheduler", {})
    spec = SweepSpec(
        preset=preset, metric=raw.get("metric", "mpjpe"), mode=raw.get("mode", "min"),
        base_config=p["base_config"], base_overrides=overrides,
        num_samples=int(p.get("num_samples", 8)), max_concurrent=int(p.get("max_concurrent", 2)),
        seed=int(p.get("seed", 0)), resources=dict(p.get("resources", {"cpu": 1})),
        max_failures=int(p.get("max_failures", 2)),
        keep_checkpoints=int(p.get("keep_checkpoints", 2)),
        grace_period=int(sched.get("grace_period", 1)),
        reduction_factor=float(sched.get("reduction_factor", 3)),
        space=space, points_to_evaluate=points)
    _check_spec(spec, cfg, path)
    return spec, cfg


def _check_spec(spec: SweepSpec, cfg: DictConfig, path: str | Path) -> None:
    where = f"{path}: presets.{spec.preset}"
    if spec.mode not in ("min", "max"):
        raise ConfigError(f"{path}: mode={spec.mode!r}: must be min or max")
    for key in ("num_samples", "max_concurrent", "grace_period"):
        if getattr(spec, key) < 1:
            raise ConfigError(f"{where}.{key}={getattr(spec, key)}: must be >= 1")
    if spec.reduction_factor < 2:
        raise ConfigError(f"{where}.scheduler.reduction_factor: must be >= 2")
    if spec.grace_period > cfg.GENERAL.total_step:
        raise ConfigError(f"{where}.scheduler.grace_period={spec.grace_period}: must be <= "
                          f"GENERAL.total_step={cfg.GENERAL.total_step}")
    for res, amount in spec.resources.items():
        if res not in ("cpu", "gpu") or amount < 0:
            raise ConfigError(f"{where}.resources.{res}={amount}: want cpu/gpu >= 0")


def _resolve_param(key: str, d: dict[str, Any], total: int, cfg: DictConfig) -> dict[str, Any]:
    if any(key == p or key.startswith(p) for p in FROZEN_PREFIXES):
        raise ConfigError(f"search space key {key}: the validation stream is fixed for the "
                          "sweep (one val seed, one val set) and may not be searched")
    if OmegaConf.select(cfg, key, default="__missing__") == "__missing__":
        raise ConfigError(f"search space: unknown config key {key}")
    kind = d.get("type")
    if kind not in TYPES:
        raise ConfigError(f"search space {key}: type={kind!r}: must be one of {', '.join(TYPES)}")
    if kind == "choice":
        values = list(d.get("values") or [])
        if not values:
            raise ConfigError(f"search space {key}: choice needs a non-empty 'values' list")
        for v in values:
            _check_value(cfg, key, v)
        return {"type": "choice", "values": values}
    if "low" not in d or "high" not in d:
        raise ConfigError(f"search space {key}: needs low and high")
    scale = d.get("scale")
    if scale not in (None, "total_step"):
        raise ConfigError(f"search space {key}: scale={scale!r}: only total_step is known")
    factor = total if scale else 1
    low, high = d["low"] * factor, d["high"] * factor
    if kind == "int":
        low, high = int(round(low)), int(round(high))
    if low > high:
        raise ConfigError(f"search space {key}: low={d['low']} > high={d['high']}")
    if d.get("log") and low <= 0:
        raise ConfigError(f"search space {key}: log range needs low > 0 (got {d['low']})")
    for v in (low, high):
        _check_value(cfg, key, v)
    return {"type": kind, "low": low, "high": high, "log": bool(d.get("log", False)),
            "scale": factor}


def _check_value(cfg: DictConfig, key: str, value: Any) -> None:
    """Apply ``key=value`` to a copy of the base config and validate (catches dropout >= 1)."""
    trial = copy.deepcopy(cfg)
    apply_overrides(trial, [f"{key}={value}"])
    try:
        validate(trial)
    except ConfigError as e:
        raise ConfigError(f"search space {key}: value {value!r} is invalid: {e}") from None


def _resolve_point(point: dict[str, Any], raw_space: dict[str, Any], space: dict[str, Any],
                   total: int) -> dict[str, Any]:
    out = {}
    for key, value in point.items():
        if key not in space:
            raise ConfigError(f"points_to_evaluate: {key} is not in the search space")
        if space[key]["type"] != "choice" and raw_space[key].get("scale"):
            value = value * total
        if space[key]["type"] == "int":
            value = int(round(value))
        if space[key]["type"] != "choice" and not space[key]["low"] <= value <= space[key]["high"]:
            raise ConfigError(f"points_to_evaluate: {key}={value} is outside the search range")
        out[key] = value
    return out


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
    """Searched values -> ``KEY=VALUE`` overrides of the base config (sorted)."""
    return [f"{k}={v}" for k, v in sorted(params.items())]
