"""How the Tune-overhead benchmark (``cli``) measures a run: the CPU seconds of its processes
by role, sampled while it runs, and its phases from its files' modification times and its
console lines."""

from __future__ import annotations

import threading
from pathlib import Path
from types import TracebackType
from typing import Any

from benchmarks.common import train_windows, window_stats


class CpuSampler:
    """CPU seconds used while it runs by this process and all its descendants, by role:
    ``driver`` (this process; in a sweep, Tune's control loop), ``trainer`` (the process that
    runs ``train``, the bare subprocess or the trial's Ray worker, and its children, e.g.
    Aim's) and ``ray`` (Ray's own processes: GCS, raylet, dashboard and agents, log monitor,
    idle workers). A thread samples every ``interval`` s; a process that ends loses at most
    its last interval."""

    def __init__(self, interval: float = 1.0) -> None:
        import psutil  # a dependency of aim

        self._psutil, self._interval = psutil, interval
        self._me = psutil.Process()
        self._start: dict[int, float] = {}
        self._last: dict[int, tuple[str, float]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _role(self, proc: Any) -> str:
        if proc.pid == self._me.pid:
            return "driver"
        return "trainer" if any(map(_runs_train, [proc, *proc.parents()])) else "ray"

    def _sample(self) -> dict[int, tuple[str, float]]:
        seen = {}
        for proc in [self._me, *self._me.children(recursive=True)]:
            try:
                cpu = proc.cpu_times()
                seen[proc.pid] = (self._role(proc), cpu.user + cpu.system)
            except self._psutil.Error:  # ended meanwhile
                continue
        return seen

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self._last.update(self._sample())

    def __enter__(self) -> CpuSampler:
        self._start = {pid: cpu for pid, (_, cpu) in self._sample().items()}
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, err: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join()
        self._last.update(self._sample())

    def totals(self) -> dict[str, float]:
        """CPU seconds per role since ``__enter__``."""
        out = {"trainer": 0.0, "driver": 0.0, "ray": 0.0}
        for pid, (role, cpu) in self._last.items():
            out[role] += cpu - self._start.get(pid, 0.0)
        return out


def _runs_train(proc: Any) -> bool:
    """The bare ``python -m handpose.train`` or a Ray worker running a trial."""
    name = proc.name()
    return "handpose.train" in " ".join(proc.cmdline()) or (
        name.startswith("ray::") and name != "ray::IDLE" and "Agent" not in name
    )


def timeline(
    run_dir: Path, launched: float, wall: float, log_step: int, val_every: int, batch: int
) -> dict[str, Any]:
    """A run's phases from its files' modification times and its console lines:
    ``config.yaml`` is written when ``train()`` starts, ``metrics.jsonl`` last at the final
    validation."""
    started = (run_dir / "config.yaml").stat().st_mtime
    last_val = (run_dir / "metrics.jsonl").stat().st_mtime
    return {
        "startup_s": started - launched,
        "loop_s": last_val - started,
        "tail_s": launched + wall - last_val,
        "wall_s": wall,
        **window_stats(train_windows(run_dir / "log.txt"), log_step, val_every, batch),
    }
