"""``python -m benchmarks.sweep_scale``."""

from benchmarks.sweep_scale.cli import main
from handpose.errors import run_cli

run_cli(main)
