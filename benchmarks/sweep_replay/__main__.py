"""``python -m benchmarks.sweep_replay``."""

from benchmarks.sweep_replay.cli import main
from handpose.errors import run_cli

run_cli(main)
