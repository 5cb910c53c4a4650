"""The multi-seed confirmation of a finished sweep (``sweeps/results/confirm.py``):

    python sweeps/confirm.py SWEEP_DIR [--top K] [--seeds S] [--address ADDR] [KEY=VALUE ...]

The code lives in the module ``sweeps.results.confirm``, so Ray workers import its trial
function by name (not from ``__main__``).
"""

from handpose.errors import run_cli
from sweeps.results.confirm import main


def cli() -> None:
    """The ``handpose-sweep-confirm`` console script: :func:`main` with one-line errors (exit 2)."""
    run_cli(main)


if __name__ == "__main__":
    cli()
