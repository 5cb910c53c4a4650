"""The sweep report (``sweeps/reporting/``): one HTML page of a sweep and/or training runs.

    python sweeps/report.py DIR [DIR ...] [--out OUT] [--top N] [--lines K] [--rows R]
                            [--window K] [--steps S,S,...]

(``python -m sweeps.report`` too.) ``sweeps/reporting/page.py`` has the options' meaning.
"""

from handpose.errors import run_cli
from sweeps.reporting.page import main


def cli() -> None:
    """The ``handpose-sweep-report`` console script: :func:`main` with one-line errors (exit 2)."""
    run_cli(main)


if __name__ == "__main__":
    cli()
