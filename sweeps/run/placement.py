"""Can the cluster ever place one trial? Checked after Ray is up and before the sweep waits.

Tune counts a data-parallel trial as RUNNING once its own actor (``TRIAL_ACTOR_CPU``) runs,
while its Ray Train workers may never be placed (the ``gpu`` preset's GPU workers on a
machine without GPUs): the sweep would then wait forever without a word. So before the
sweep starts, the bundles of one trial (``trial_bundles``) are packed onto the alive nodes'
resources (``unplaced``). When they do not fit:

- on a cluster that can grow (``autoscaler``: KubeRay, or the Ray cluster launcher's
  autoscaler), one warning line with the resources asked for: the autoscaler may add nodes;
- on a fixed cluster, a one-line error (exit 2) before any trial starts.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import yaml

from handpose.errors import UserError
from sweeps.run.spec import ResourcesCfg

# What the trial of a data-parallel trial asks for (CPUs): it only waits on its Ray Train
# workers, which take the CPUs and GPUs (Ray Train's controller asks for none).
TRIAL_ACTOR_CPU = 0.01
# KubeRay sets this variable in every Ray container it starts (Ray reads it to tell KubeRay
# apart, ``ray._common.usage``); a RayJob's driver runs in the head's container.
KUBERAY_ENV = "RAY_USAGE_STATS_KUBERAY_IN_USE"
# The autoscaling config `ray up` writes on the head node (``docker/cluster.yaml`` starts
# the head's autoscaler with it); a job's driver runs on the head.
LAUNCHER_CONFIG = "~/ray_bootstrap_config.yaml"
Bundle = dict[str, float]
EPS = 1e-6  # float sums of resources (Ray keeps them in fixed point, 1e-4 units)


def trial_bundles(r: ResourcesCfg) -> list[Bundle]:
    """The resource bundles one trial asks for: one of ``{CPU: cpu, GPU: gpu}`` (one
    worker), or, data-parallel (``workers`` > 1), the trial's own ``{CPU: TRIAL_ACTOR_CPU}``
    and ``workers`` such bundles (Ray Train's workers)."""
    worker = {k: float(v) for k, v in (("CPU", r.cpu), ("GPU", r.gpu)) if v}
    if r.workers == 1:
        return [worker]
    return [{"CPU": TRIAL_ACTOR_CPU}] + [dict(worker) for _ in range(r.workers)]


def unplaced(bundles: list[Bundle], nodes: list[Bundle]) -> list[Bundle]:
    """The bundles that do not fit when packed (the workers' before the trial's own), each
    onto the first node with room left (a bundle never spans nodes; the bundles may spread
    over nodes, as Ray Train's default placement allows)."""
    room = [dict(n) for n in nodes]
    left = []
    for b in sorted(bundles, key=lambda b: sorted(b.items()), reverse=True):
        node = next((n for n in room if all(n.get(k, 0.0) >= v - EPS for k, v in b.items())), None)
        if node is None:
            left.append(b)
            continue
        for k, v in b.items():
            node[k] -= v
    return left


def describe(bundles: list[Bundle]) -> str:
    """``2 x {CPU: 8, GPU: 1} + 1 x {CPU: 0.01}``: equal bundles counted."""
    counts = Counter(tuple(sorted(b.items())) for b in bundles)
    return " + ".join(
        f"{n} x {{{', '.join(f'{k}: {v:g}' for k, v in b)}}}" for b, n in counts.items()
    )


def describe_cluster(nodes: list[Bundle]) -> str:
    """``1 node, 2 CPUs, 0 GPUs`` (the alive nodes' totals)."""
    cpu = sum(n.get("CPU", 0.0) for n in nodes)
    gpu = sum(n.get("GPU", 0.0) for n in nodes)
    return f"{len(nodes)} node{'s' * (len(nodes) != 1)}, {cpu:g} CPUs, {gpu:g} GPUs"


def node_resources() -> list[Bundle]:
    """Each alive node's total resources (Ray must be connected)."""
    import ray

    return [dict(n["Resources"]) for n in ray.nodes() if n["Alive"]]


def autoscaler() -> str | None:
    """What says this cluster can grow, or None for a fixed cluster: KubeRay (``KUBERAY_ENV``
    set: a KubeRay cluster, autoscaled or resized by its operator) or the cluster launcher
    (``LAUNCHER_CONFIG`` on this node with ``max_workers`` > 0, its default 2)."""
    if os.environ.get(KUBERAY_ENV):
        return f"KubeRay (${KUBERAY_ENV})"
    config = Path(LAUNCHER_CONFIG).expanduser()
    if config.is_file():
        max_workers = (yaml.safe_load(config.read_text()) or {}).get("max_workers", 2)
        if max_workers:
            return f"the cluster launcher ({LAUNCHER_CONFIG}, max_workers {max_workers})"
    return None


def check_placement(r: ResourcesCfg, nodes: list[Bundle], grows: str | None) -> str | None:
    """None when one trial (``r``) fits on ``nodes``; else, on a cluster that can grow
    (``grows``, from ``autoscaler``), the warning line to print; on a fixed one, raises
    ``UserError`` (one line, exit 2)."""
    bundles = trial_bundles(r)
    if not unplaced(bundles, nodes):
        return None
    asked = (
        f"each trial asks for {describe(bundles)}, which the cluster's nodes "
        f"({describe_cluster(nodes)}) cannot hold"
    )
    if grows:
        return f"warning: {asked}; trials wait until the autoscaler adds nodes ({grows})"
    raise UserError(
        f"{asked}; the cluster is fixed (no autoscaler), so no trial could ever start: choose "
        "a preset that fits (--preset cpu) or join a cluster with such nodes (--address)"
    )
