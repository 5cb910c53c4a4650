"""Sweep replay: scheduler settings measured on recorded full-budget curves, without
training. ``cli`` is the command (``python -m benchmarks.sweep_replay``), ``sim`` the pool,
the replay through the sweep's scheduler and the constant-budget baseline."""
