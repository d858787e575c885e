"""Shared fixtures. One local Ray instance per test session (see README, 'Testing')."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data"

# Ray must never join a stray cluster or write to the user's home during tests.
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")
os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")


@pytest.fixture(scope="session")
def ray_session():
    """A local Ray instance shared by every test that needs one, with its own temp dir."""
    import ray

    tmp = tempfile.mkdtemp(prefix="sptf-ray-test-")
    old_env = {k: os.environ.get(k) for k in ("RAY_TMPDIR", "RAY_AUTH_MODE", "HOME")}
    os.environ["RAY_TMPDIR"] = tmp
    os.environ["RAY_AUTH_MODE"] = "disabled"
    os.environ["HOME"] = tmp
    ray.init(
        "local",
        num_cpus=2,
        include_dashboard=True,
        object_store_memory=500 * 1024**2,
        _temp_dir=tmp,
        log_to_driver=False,
    )
    try:
        yield ray
    finally:
        ray.shutdown()
        for k, v in old_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture
def data_dir() -> Path:
    return DATA
