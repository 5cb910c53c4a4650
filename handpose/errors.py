"""User-facing errors: one line, exit code 2 (bad input), raised before any heavy work."""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from typing import Any


class UserError(Exception):
    """Bad input from the user (config, path, checkpoint). The CLI prints it and exits 2."""


class ConfigError(UserError):
    """An unknown config key or a value out of range."""


class DataError(UserError):
    """Missing data folder, a glob that matches nothing, too many bad samples."""


def check(cond: bool, key: str, value: Any, want: str) -> None:
    """:class:`ConfigError` ``<key>=<value>: must be <want>`` unless ``cond``: the one form
    of a config value check (``handpose.config.validate`` and the model's own checks)."""
    if not cond:
        raise ConfigError(f"{key}={value!r}: must be {want}")


def check_positive(section: Mapping[str, Any], prefix: str, keys: str, strict: bool = True) -> None:
    """:func:`check` that each of the space-separated ``keys`` of ``section`` (the config
    section at ``prefix``) is > 0 (``strict``) or >= 0."""
    for key in keys.split():
        value = section[key]
        check(
            value > 0 if strict else value >= 0,
            f"{prefix}.{key}",
            value,
            "> 0" if strict else ">= 0",
        )


def first_line(e: BaseException, limit: int | None = None) -> str:
    """The first non-blank line of ``str(e)`` (at most ``limit`` characters), or the
    exception's type name when its message is empty."""
    lines = str(e).strip().splitlines()
    text = lines[0].strip() if lines else type(e).__name__
    return text if limit is None else text[:limit]


def error_reason(err: BaseException) -> str:
    """The original exception behind wrappers that keep it as ``cause`` (Ray's
    ``RayTaskError``), as one line: its type and first line."""
    while getattr(err, "cause", None) is not None:
        err = err.cause
    return f"{type(err).__name__}: {first_line(err)}"[:500]


def run_cli(main: Callable[[], int | None]) -> None:
    """Run ``main``; a :class:`UserError` becomes ``error: <msg>`` on stderr and exit 2."""
    try:
        code = main()
    except UserError as e:
        print(f"error: {first_line(e)}", file=sys.stderr)
        sys.exit(2)
    sys.exit(code or 0)
