"""User-facing errors: one line, exit code 2 (bad input), raised before any heavy work."""

from __future__ import annotations

import sys
from collections.abc import Callable


class UserError(Exception):
    """Bad input from the user (config, path, checkpoint). The CLI prints it and exits 2."""


class ConfigError(UserError):
    """An unknown config key or a value out of range."""


class DataError(UserError):
    """Missing data folder, a glob that matches nothing, too many bad samples."""


def run_cli(main: Callable[[], int | None]) -> None:
    """Run ``main``; a :class:`UserError` becomes ``error: <msg>`` on stderr and exit 2."""
    try:
        code = main()
    except UserError as e:
        lines = str(e).strip().splitlines() or [type(e).__name__]
        print(f"error: {lines[0]}", file=sys.stderr)
        sys.exit(2)
    sys.exit(code or 0)
