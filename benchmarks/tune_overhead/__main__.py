"""``python -m benchmarks.tune_overhead``."""

from benchmarks.tune_overhead.cli import main
from handpose.errors import run_cli

run_cli(main)
