"""Small helpers shared by the `jobs/` entrypoints (`ray job submit -- python jobs/X.py ...`).

- `ray_address()`: where a job should connect: `RAY_ADDRESS` when set (Ray sets it for a
  job's driver under `ray job submit`), else `None` (no cluster known).
- `connect_ray(address=None, **local_kwargs)`: join that cluster, or start a new local Ray
  (`ray.init("local", ...)`, never a stale `ray_current_cluster`) when none is known.
- `check_resources(per_unit, count, what)`: fail fast when a local Ray instance cannot hold
  `count` workers or actors of `per_unit` resources (Ray would wait for them without end);
  on a joined cluster, which may autoscale, only say what is short.
- `load_job_config(cls, uri, overrides)`: a typed config from a YAML/JSON file at any
  storage URI (local path, s3://, gs://), with `--flag` overrides applied before validation.
"""
from __future__ import annotations

import os
from typing import Any, TypeVar

T = TypeVar("T")


def ray_address(explicit: str | None = None) -> str | None:
    """The cluster a job should join: `explicit`, else `RAY_ADDRESS`, else None."""
    return explicit or os.environ.get("RAY_ADDRESS") or None


def connect_ray(address: str | None = None, **local_kwargs):
    """Initialize Ray once: join `address`/RAY_ADDRESS ('auto' joins the running cluster of
    this host), or start a new local instance with `local_kwargs` when no cluster is known.
    Returns the `ray` module."""
    import ray

    if ray.is_initialized():
        return ray
    target = ray_address(address)
    if target:
        ray.init(address=target)
    else:
        ray.init("local", **local_kwargs)
    return ray


def ray_started_in_this_process() -> bool:
    """True when this driver started its Ray instance itself (`ray.init("local")`): such an
    instance never grows. Ray has no public call for it; unknown reads as False."""
    import ray._private.worker as ray_worker

    node = getattr(ray_worker, "_global_node", None)
    return bool(node is not None and getattr(node, "head", False))


def check_resources(per_unit: dict[str, float], count: int, what: str, hint: str = "") -> None:
    """Raise ValueError when this process's own Ray instance cannot hold `count` x `per_unit`
    (in total, or one unit on any node); on a joined cluster print the shortfall instead.

    Ray queues a request it cannot place until nodes arrive: an autoscaler's cue, a silent
    hang on a machine that will never have them (`--use-gpu` without a GPU)."""
    import sys

    import ray

    total = ray.cluster_resources()
    largest = _largest_node(ray.nodes())
    short = [f"{count * v:g} {k} in all (the cluster has {total.get(k, 0.0):g})"
             for k, v in per_unit.items() if count * v > total.get(k, 0.0) + 1e-9]
    short += [f"{v:g} {k} on one node (the largest has {largest.get(k, 0.0):g})"
              for k, v in per_unit.items() if v > largest.get(k, 0.0) + 1e-9]
    if not short:
        return
    unit = " + ".join(f"{v:g} {k}" for k, v in per_unit.items())
    msg = f"{what}: {count} x ({unit}) needs " + "; ".join(short)
    if ray_started_in_this_process():
        raise ValueError(f"{msg}. This local Ray instance cannot grow{hint}")
    print(f"{msg}; waiting for the cluster to add nodes (stop with Ctrl-C if it does not autoscale)",
          file=sys.stderr, flush=True)


def _largest_node(nodes: list[dict]) -> dict[str, float]:
    largest: dict[str, float] = {}
    for node in nodes:
        if node.get("Alive"):
            for k, v in node.get("Resources", {}).items():
                largest[k] = max(largest.get(k, 0.0), float(v))
    return largest


def load_job_config(cls: type[T], uri: str | None = None, overrides: dict[str, Any] | None = None) -> T:
    """`cls` loaded from the YAML/JSON at `uri` (defaults when None) with non-None overrides."""
    from sptf_ray import storage
    from sptf_ray.config import config_to_dict, load_config, parse_yaml

    data = (parse_yaml(storage.read_text(uri)) or {}) if uri else config_to_dict(cls())
    data = {**data, **{k: v for k, v in (overrides or {}).items() if v is not None}}
    return load_config(cls, data)
