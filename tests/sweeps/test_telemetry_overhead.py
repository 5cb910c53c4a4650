"""benchmarks/telemetry_overhead.py runs at toy size and writes its JSON (its timings are
never asserted: docs/benchmarks.md has the numbers)."""

from __future__ import annotations

import json

from benchmarks import telemetry_overhead


def test_telemetry_overhead_toy(local_ray, data_dir, tmp_path):
    out = tmp_path / "result.json"
    args = ["--toy", "--data", str(data_dir), "--out", str(out)]
    assert telemetry_overhead.main(args) == 0
    result = json.loads(out.read_text())
    assert result["benchmark"] == "telemetry_overhead" and result["repeats"] == 1
    assert [len(result["runs"][arm]) for arm in ("off", "on")] == [1, 1]
    assert result["on_step_s"] > 0 and result["off_step_s"] > 0 and result["step_ratio"] > 0
