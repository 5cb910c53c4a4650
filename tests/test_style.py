"""One style, checked in CI: ruff's lint rules and ruff's formatter (pyproject.toml)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.helpers import REPO

CODE = ("handpose", "sweeps", "benchmarks", "tests", "docker")


@pytest.mark.parametrize("args", [["check"], ["format", "--check"]])
def test_ruff(args):
    proc = subprocess.run(
        [sys.executable, "-m", "ruff", *args, *CODE],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
