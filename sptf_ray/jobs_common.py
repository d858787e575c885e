"""Small helpers shared by the `jobs/` entrypoints (`ray job submit -- python jobs/X.py ...`).

- `ray_address()`: where a job should connect: `RAY_ADDRESS` when set (Ray sets it for a
  job's driver under `ray job submit`), else `None` (no cluster known).
- `connect_ray(address=None, **local_kwargs)`: join that cluster, or start a new local Ray
  (`ray.init("local", ...)`, never a stale `ray_current_cluster`) when none is known.
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


def load_job_config(cls: type[T], uri: str | None = None, overrides: dict[str, Any] | None = None) -> T:
    """`cls` loaded from the YAML/JSON at `uri` (defaults when None) with non-None overrides."""
    from sptf_ray import storage
    from sptf_ray.config import config_to_dict, load_config, parse_yaml

    data = (parse_yaml(storage.read_text(uri)) or {}) if uri else config_to_dict(cls())
    data = {**data, **{k: v for k, v in (overrides or {}).items() if v is not None}}
    return load_config(cls, data)
