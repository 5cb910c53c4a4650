"""The sweep layer at scale: how its cost grows with the number of trials. ``cli`` is the
command (``python -m benchmarks.sweep_scale``), ``driver`` the scripted sweep it launches
and checks (``python -m benchmarks.sweep_scale.driver``)."""
