"""Reading what Ray's metrics agents export, and what the sweep dashboard asks for.

- ``scrape(url)``: one node's metrics endpoint (Prometheus text format) as samples.
- ``MetricsWatch``: during a sweep, scrapes every target of Ray's service-discovery file
  (the nodes Prometheus would scrape) a few times a second and keeps the sweep's samples;
  with Debian's Prometheus (``/usr/bin/prometheus``) present it also runs one on the same
  file, queried with ``promql``.
- ``metric_names(expr)`` / ``dashboard_queries(path)``: the metric names a PromQL query
  reads, and every query of a Grafana dashboard JSON.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
from prometheus_client.parser import text_string_to_metric_families

from tests.deploy.ray_cluster import free_ports
from tests.helpers import REPO

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
SWEEP_DASHBOARD = REPO / "docker" / "grafana" / "sweep_dashboard.json"
PREFIX = "ray_handpose_"
# PromQL words that are not metric names (functions are followed by "(")
_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and"}
_KEYWORDS |= {"or", "unless", "offset", "inf", "nan"}


@dataclass(frozen=True)
class Sample:
    name: str
    labels: dict[str, str]
    value: float


def scrape(url: str, timeout_s: float = 5.0) -> list[Sample]:
    """The samples of one metrics endpoint (``http://host:port/metrics``)."""
    with urllib.request.urlopen(url, timeout=timeout_s) as r:
        text = r.read().decode()
    return [
        Sample(s.name, dict(s.labels), s.value)
        for family in text_string_to_metric_families(text)
        for s in family.samples
    ]


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL query reads: identifiers outside strings, label matchers,
    ranges and ``by``/``without``/``on``/``ignoring`` lists that are neither functions nor
    keywords (Grafana's ``$variables`` sit in matchers and ranges, or start with ``$``)."""
    s = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    s = re.sub(r"\{[^}]*\}|\[[^\]]*\]", " ", s)
    s = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", s)
    names = set()
    for m in re.finditer(r"(?<![\w.$])[A-Za-z_:][A-Za-z0-9_:]*", s):
        if m.group() not in _KEYWORDS and not s[m.end() :].lstrip().startswith("("):
            names.add(m.group())
    return names


def dashboard_queries(path: Path) -> list[tuple[str, str]]:
    """``(panel title, PromQL)`` of every target of every panel (rows' panels too) and of
    every query variable of a Grafana dashboard JSON."""
    board = json.loads(Path(path).read_text())
    out = []

    def walk(panels: list[dict[str, Any]]) -> None:
        for p in panels:
            out.extend((p.get("title", "?"), t["expr"]) for t in p.get("targets", []))
            walk(p.get("panels", []))

    walk(board["panels"])
    for v in board.get("templating", {}).get("list", []):
        query = v.get("query")
        if v.get("type") == "query":
            text = query.get("query", "") if isinstance(query, dict) else str(query)
            inner = re.fullmatch(r"\s*label_values\((.*),\s*\w+\)\s*", text)
            out.append((f"variable {v['name']}", inner.group(1) if inner else text))
    return out


def unknown_metrics(path: Path, exported: set[str]) -> dict[str, set[str]]:
    """Panel -> the metric names its queries read that are not in ``exported``."""
    bad: dict[str, set[str]] = {}
    for title, expr in dashboard_queries(path):
        missing = metric_names(expr) - exported
        if missing:
            bad.setdefault(title, set()).update(missing)
    return bad


@dataclass
class MetricsWatch:
    """Samples named ``ray_handpose_*`` scraped from the targets of ``sd_file``."""

    sd_file: Path
    period_s: float = 0.5
    scrapes: list[list[Sample]] = field(default_factory=list)
    names: set[str] = field(default_factory=set)  # every name seen, Ray's own included
    prometheus_url: str | None = None
    _stop: threading.Event = field(default_factory=threading.Event)

    def targets(self) -> list[str]:
        with contextlib.suppress(OSError, ValueError):
            groups = json.loads(self.sd_file.read_text())
            return [t for g in groups for t in g["targets"]]
        return []

    def run(self) -> None:
        while not self._stop.wait(self.period_s):
            for target in self.targets():
                try:
                    samples = scrape(f"http://{target}/metrics")
                except OSError:  # a target that is not up yet, or gone
                    continue
                self.names.update(s.name for s in samples)
                ours = [s for s in samples if s.name.startswith(PREFIX)]
                if ours:
                    self.scrapes.append(ours)

    def promql(self, query: str) -> list[dict[str, Any]]:
        """An instant query's result vector (Prometheus must be running)."""
        assert self.prometheus_url, "no Prometheus in this watch"
        url = f"{self.prometheus_url}/api/v1/query?" + urllib.parse.urlencode({"query": query})
        with urllib.request.urlopen(url, timeout=10) as r:
            body = json.loads(r.read())
        assert body["status"] == "success", body
        return body["data"]["result"]


@contextlib.contextmanager
def watch_metrics(sd_file: Path, tmp: Path, prometheus: bool = True) -> Iterator[MetricsWatch]:
    """Scrape ``sd_file``'s targets in a thread while the block runs; with ``prometheus`` and
    Debian's Prometheus present, also run one (1 s scrapes, data in ``tmp``) on the same file, ready
    before the block starts and stopped after it (query it inside)."""
    watch = MetricsWatch(sd_file)
    with contextlib.ExitStack() as stack:
        if prometheus and Path(PROMETHEUS).is_file():
            (port,) = free_ports(1)
            config = tmp / "prometheus.yml"
            config.write_text(
                "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
                "scrape_configs:\n"
                "- job_name: ray\n"
                f"  file_sd_configs: [{{files: ['{sd_file}'], refresh_interval: 1s}}]\n"
            )
            log = stack.enter_context(open(tmp / "prometheus.log", "wb"))
            proc = subprocess.Popen(
                [
                    PROMETHEUS,
                    f"--config.file={config}",
                    f"--storage.tsdb.path={tmp / 'tsdb'}",
                    f"--web.listen-address=127.0.0.1:{port}",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            stack.callback(_stop, proc)
            watch.prometheus_url = f"http://127.0.0.1:{port}"
            _wait_until_ready(watch.prometheus_url)
        thread = threading.Thread(target=watch.run, daemon=True)
        thread.start()
        stack.callback(thread.join, 30)
        stack.callback(watch._stop.set)
        yield watch


def local_ray_sd_file(driver_pid: int) -> Path | None:
    """The service-discovery file of the local Ray a driver process started (in its session
    folder, which the raylet's command line names), or None while it has none."""
    for p in psutil.Process(driver_pid).children(recursive=True):
        with contextlib.suppress(psutil.Error):
            found = re.search(r"--raylet_socket_name=(\S+)/sockets/raylet", " ".join(p.cmdline()))
            if found:
                return Path(found.group(1)) / "prom_metrics_service_discovery.json"
    return None


def trial_metric_names(scrape_: list[Sample]) -> set[str]:
    return {s.name for s in scrape_ if "trial_id" in s.labels}


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _wait_until_ready(url: str, timeout_s: float = 60.0) -> None:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        with contextlib.suppress(OSError):
            with urllib.request.urlopen(f"{url}/-/ready", timeout=2) as r:
                if r.status == 200:
                    return
        time.sleep(0.3)
    raise RuntimeError(f"Prometheus at {url} not ready after {timeout_s} s")


def _latest_by_trial(scrape_: list[Sample]) -> dict[str, dict[str, float]]:
    """One scrape's trial gauges: trial id -> {metric name: value}; a metric exported twice
    for a trial (by two ranks, say) fails."""
    out: dict[str, dict[str, float]] = {}
    for s in scrape_:
        if "trial_id" in s.labels:
            values = out.setdefault(s.labels["trial_id"], {})
            assert s.name not in values, f"{s.name} of {s.labels['trial_id']} exported twice"
            values[s.name] = s.value
    return out


def check_trial_values(scrapes: list[list[Sample]], run_dirs: dict[str, Path]) -> None:
    """Every scraped value (``scrapes``: a ``MetricsWatch``'s) of a trial is what its run
    folder holds at the same step: the validation metrics as ``metrics.jsonl`` and the
    console print them (2 decimals), the log step's lr, dropout rate and loss as
    ``metrics.jsonl`` holds them, samples/s as ``log.txt`` prints it; every trial
    (``run_dirs``: trial id -> run folder) was seen with a validation."""
    validated = set()
    for scrape_ in scrapes:
        for tid, v in _latest_by_trial(scrape_).items():
            run = run_dirs[tid]
            rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
            val = {r["step"]: r for r in rows if r["split"] == "val"}
            train = {r["step"]: r for r in rows if r["split"] == "train"}
            if "ray_handpose_trial_val_step" in v:
                row = val[int(v["ray_handpose_trial_val_step"])]
                for key in ("mpjpe", "pa_mpjpe", "mpjpe_rel", "rte"):
                    name = f"ray_handpose_trial_{key}_mm"
                    assert f"{v[name]:.2f}" == f"{row[key]:.2f}", (tid, name, v[name], row)
                validated.add(tid)
            if "ray_handpose_trial_step" in v:
                step = int(v["ray_handpose_trial_step"])
                row = train[step]
                assert v["ray_handpose_trial_lr"] == row["lr"], (tid, v, row)
                assert v["ray_handpose_trial_dropout_rate"] == row["dropout_rate"], (tid, v, row)
                assert v["ray_handpose_trial_train_loss"] == row["total"], (tid, v, row)
                printed = re.search(
                    rf"^{step}/\d+ lr=.* ([\d.]+) samples/s$", (run / "log.txt").read_text(), re.M
                )
                assert f"{v['ray_handpose_trial_samples_per_s']:.1f}" == printed.group(1)
    assert validated == set(run_dirs), f"seen validated: {validated}, trials: {set(run_dirs)}"


def check_sweep_values(scrapes: list[list[Sample]], sweep: Path, summary: dict) -> None:
    """The driver's last scraped values: trials by status as ``summary.json`` counts them,
    the best final MPJPE as its best (2 decimals), the rung decisions as the journal's."""
    last: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for scrape_ in scrapes:
        for s in scrape_:
            if s.name.startswith("ray_handpose_sweep_"):
                tags = {k: v for k, v in s.labels.items() if k in ("status", "rung", "decision")}
                last[(s.name, tuple(sorted(tags.items())))] = s.value
    named = {"COMPLETED": "completed", "STOPPED_EARLY": "stopped_early", "ERROR": "errored"}
    want: dict[tuple[tuple[str, str], ...], float] = {}
    for t in summary["trials"]:
        key = (("status", named[t["status"]]),)
        want[key] = want.get(key, 0) + 1
    got = {k[1]: v for k, v in last.items() if k[0] == "ray_handpose_sweep_trials" and v}
    assert got == want, (got, want)
    best = last[("ray_handpose_sweep_best_mpjpe_mm", ())]
    assert f"{best:.2f}" == f"{summary['best']['mpjpe']:.2f}", (best, summary["best"])
    journal = (sweep / "scheduler_state.jsonl").read_text().splitlines()
    counted: dict[tuple[tuple[str, str], ...], float] = {}
    for r in (r for r in map(json.loads, journal) if "rung" in r):
        key = (("decision", "stop" if r.get("stop") else "continue"), ("rung", f"{r['rung']:g}"))
        counted[key] = counted.get(key, 0) + 1
    got = {k[1]: v for k, v in last.items() if k[0] == "ray_handpose_sweep_rung_decisions"}
    assert got == counted, (got, counted)
