"""Tune overhead: one trial inside Ray Tune vs the same config trained bare. ``cli`` is the
command (``python -m benchmarks.tune_overhead``), ``runs`` the runs it compares, ``measure``
how it measures them."""
