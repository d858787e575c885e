"""build-dataset: sampling, shards, resume, determinism, S3, CLI, and a worker killed on a cluster."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from sptf_ray import storage
from sptf_ray.dataset import sampling
from sptf_ray.dataset.build import (SCHEMA, build_dataset, check_shard, load_dataset, shard_name,
                                    sidecar_name)
from sptf_ray.physics.parameters import THETA_S_SAMPLING_RANGE, parameter_space

REPO = Path(__file__).resolve().parents[1]
SMALL = dict(shards=3, per_shard=6, days=30, model="both", seed=3)


def _bytes(out, i):
    return storage.read_bytes(storage.join(out, shard_name(i)))


# --------------------------------------------------------------------------- sampling
@pytest.mark.parametrize("model", ["vgm", "fxw"])
def test_parameters_inside_table1_with_log_space_for_alpha_and_ks(model):
    p = sampling.sample_parameters(seed=0, model=model, shard=2, n=256)
    space = parameter_space(model)
    names = list(space.names)
    lo, hi = space.lower.copy(), space.upper.copy()
    lo[names.index("theta_s")], hi[names.index("theta_s")] = THETA_S_SAMPLING_RANGE
    assert p.shape == (256, 6)
    assert np.all(p >= lo) and np.all(p <= hi)
    for name in ("alpha", "Ks"):  # uniform in log10: half the points below the geometric middle
        k = names.index(name)
        below = np.mean(p[:, k] < np.sqrt(lo[k] * hi[k]))
        assert 0.4 < below < 0.6, (name, below)
    theta_s = p[:, names.index("theta_s")]
    assert theta_s.max() > 0.6 and theta_s.min() < 0.34  # the widened theta_s range is covered


def test_shards_are_consecutive_blocks_of_one_sobol_sequence():
    whole = sampling.sobol_unit(5, "vgm", 0, 32)
    blocks = np.concatenate([sampling.sobol_unit(5, "vgm", 8 * i, 8) for i in range(4)])
    np.testing.assert_array_equal(whole, blocks)
    assert not np.allclose(sampling.sobol_unit(5, "fxw", 0, 8), whole[:8])  # models scrambled apart
    assert not np.allclose(sampling.sobol_unit(6, "vgm", 0, 8), whole[:8])  # seeds too


def test_shard_inputs_depend_only_on_seed_and_index():
    kw = dict(seed=1, per_shard=10, model="both", days=50)
    a, b = sampling.shard_inputs(4, **kw), sampling.shard_inputs(4, **kw)
    for field in ("params", "precip", "pet", "lai"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    c = sampling.shard_inputs(5, **kw)
    assert not np.allclose(a.params, c.params) and not np.allclose(a.precip, c.precip)
    np.testing.assert_array_equal(a.sim_id, np.arange(40, 50))
    assert list(a.model) == ["vgm"] * 5 + ["fxw"] * 5
    # Many climates: every row has its own, from desert to wet.
    annual = a.precip.sum(axis=1) * 365 / 50
    assert annual.max() / max(annual.min(), 1e-3) > 2


def _site_dataset(path: Path) -> str:
    """Two sites: A with 2016-2018 complete (2016 leap), B with 2017 complete and 2018 gappy."""
    rows = []
    for site, years in (("A", (2016, 2017, 2018)), ("B", (2017, 2018))):
        for year in years:
            dates = pd.date_range(f"{year}-01-01", f"{year}-12-31", freq="D")
            n = len(dates)
            precip = np.full(n, 0.1 * (year - 2015) + (0.5 if site == "B" else 0.0))
            if site == "B" and year == 2018:
                precip[100] = np.nan
            rows.append(pd.DataFrame({"site_id": site, "date": dates, "swc": 0.2, "precip_cm": precip,
                                      "pet_cm": 0.3, "lai": np.arange(n) / 365.0, "lst_c": 10.0}))
    storage.atomic_write_parquet(pd.concat(rows), str(path / "daily.parquet"))
    return str(path)


def test_site_windows_are_consecutive_complete_years_from_1_january(tmp_path):
    pool = sampling.load_site_pool(_site_dataset(tmp_path))
    assert pool.site_ids == ("A", "B") and pool.years.shape == (4, 365, 3)  # B 2018 rejected
    np.testing.assert_array_equal(pool.window_starts(2), [0, 1])  # A2016-17, A2017-18
    rng = np.random.default_rng(0)
    precip, pet, lai = sampling.site_forcings(pool, 20, 400, rng)
    assert precip.shape == (20, 400)
    assert np.allclose(lai[:, 0], 0.0) and np.allclose(lai[:, 365], 0.0)  # both years start on 1 Jan
    assert set(np.round(precip[:, 0], 3)) <= {0.1, 0.2}  # only site A has two consecutive years
    with pytest.raises(ValueError, match="consecutive"):
        sampling.site_forcings(pool, 1, 365 * 3 + 1, rng)
    inputs = sampling.shard_inputs(0, seed=0, per_shard=10, model="vgm", days=365, site_fraction=0.3, pool=pool)
    assert (inputs.forcing_source == "site").sum() == 3


# --------------------------------------------------------------------------- build, resume
def test_build_writes_schema_skips_on_rerun_and_rebuilds_broken_shards(tmp_path):
    out = str(tmp_path / "ds")
    first = build_dataset(SMALL, out, executor="local", progress=False)
    assert first.actions == ["built"] * 3 and first.simulated == 18
    assert storage.verify_manifest(out)
    manifest = storage.read_manifest(out)
    assert set(manifest["files"]) == {"config.yaml"} | {shard_name(i) for i in range(3)} | {
        sidecar_name(i) for i in range(3)}
    assert manifest["extra"]["config"]["per_shard"] == 6 and manifest["extra"]["counts"]["simulations"] == 18
    from sptf_ray.provenance import host_info

    sidecar = json.loads(storage.read_text(os.path.join(out, sidecar_name(0))))
    assert sidecar["host"] == host_info()  # which CPU's numba build simulated it
    table = pq.read_table(os.path.join(out, shard_name(0)))
    assert table.schema.equals(SCHEMA)
    df = table.to_pandas()
    assert all(len(x) == 30 for col in ("precip", "pet", "lai", "swc") for x in df[col])
    assert set(df.forcing_source) == {"weather"} and set(df.model) <= {"vgm", "fxw"}
    meta = pq.read_metadata(os.path.join(out, shard_name(0)))
    assert meta.row_group(0).column(0).compression.lower() == "zstd"
    original = [_bytes(out, i) for i in range(3)]

    again = build_dataset(SMALL, out, executor="local", progress=False)
    assert again.actions == ["skipped"] * 3 and again.simulated == 0

    with open(os.path.join(out, shard_name(1)), "r+b") as f:  # corrupt shard 1
        f.truncate(100)
    os.remove(os.path.join(out, sidecar_name(2)))  # shard 2 lost its sidecar
    assert not storage.verify_manifest(out) and check_shard(out, 1, first.manifest["extra"]["content_hash"]) is None
    fixed = build_dataset(SMALL, out, executor="local", progress=False)
    assert fixed.actions == ["skipped", "rebuilt", "rebuilt"] and fixed.simulated == 12
    assert [_bytes(out, i) for i in range(3)] == original and storage.verify_manifest(out)

    with pytest.raises(ValueError, match="different content"):
        build_dataset({**SMALL, "seed": 4}, out, executor="local", progress=False)


def test_failed_simulations_go_to_the_manifest_not_the_shards(tmp_path, monkeypatch):
    import sptf_ray.physics as physics

    real = physics.simulate

    def flaky(model, params, *args, **kwargs):  # every vgm row 1 "fails" like a solver breakdown
        result = real(model, params, *args, **kwargs)
        if model == "vgm":
            result.status[1] |= physics.STATUS_FAILED
            result.swc[1, 5:] = np.nan
            result.messages.append("simulation 1: no convergence (test) on day 6; later days are NaN")
        return result

    monkeypatch.setattr(physics, "simulate", flaky)
    out = str(tmp_path / "ds")
    r = build_dataset({**SMALL, "shards": 2}, out, executor="local", progress=False)
    assert [f["sim_id"] for f in r.failed] == [1, 7]
    assert "no convergence (test)" in r.failed[0]["message"]
    manifest = storage.read_manifest(out)
    assert manifest["extra"]["counts"]["failed"] == 2 and manifest["extra"]["counts"]["rows"] == 10
    ids = load_dataset(out).column("sim_id").to_pylist()
    assert ids == [0, 2, 3, 4, 5, 6, 8, 9, 10, 11]
    monkeypatch.setattr(physics, "simulate", real)
    assert build_dataset({**SMALL, "shards": 2}, out, executor="local", progress=False).simulated == 0


def test_shard_i_is_identical_across_shard_counts_order_and_executors(tmp_path, ray_session):
    local2 = str(tmp_path / "two")
    build_dataset({**SMALL, "shards": 2}, local2, executor="local", progress=False)
    via_ray = str(tmp_path / "ray4")
    r = build_dataset({**SMALL, "shards": 4}, via_ray, executor="ray", progress=False)
    assert r.actions == ["built"] * 4
    assert [_bytes(local2, i) for i in range(2)] == [_bytes(via_ray, i) for i in range(2)]
    # Extending the same directory to more shards reuses the existing ones.
    assert build_dataset({**SMALL, "shards": 5}, via_ray, executor="ray", progress=False).actions == \
        ["skipped"] * 4 + ["built"]
    # a task wider than the local instance would queue for ever: refused, nothing written
    with pytest.raises(ValueError, match=r"dataset tasks: 1 x \(3 CPU\) needs 3 CPU in all \(the cluster has 2\)"):
        build_dataset({**SMALL, "cpus_per_task": 3}, str(tmp_path / "wide"), executor="ray", progress=False)
    assert not list((tmp_path / "wide").glob("shard-*"))


# --------------------------------------------------------------------------- S3, CLI
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_build_to_s3_through_pyarrow(tmp_path, monkeypatch):
    server_mod = pytest.importorskip("moto.server", reason="moto[server] not installed")
    import pyarrow.fs as pafs

    port = _free_port()
    server = server_mod.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        for k, v in {"SPTF_S3_ENDPOINT": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": "testing",
                     "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}.items():
            monkeypatch.setenv(k, v)
        pafs.S3FileSystem(endpoint_override=f"127.0.0.1:{port}", scheme="http", access_key="testing",
                          secret_key="testing", region="us-east-1", allow_bucket_creation=True).create_dir("sptf-ds")
        out = "s3://sptf-ds/surrogate/quick"
        cfg = {**SMALL, "shards": 2, "per_shard": 4}
        r = build_dataset(cfg, out, executor="local", progress=False)
        assert r.actions == ["built", "built"]
        assert storage.verify_manifest(out)
        assert [u.rsplit("/", 1)[1] for u in storage.list_files(out)] == [
            "config.yaml", "manifest.json", "shard-00000.json", "shard-00000.parquet",
            "shard-00001.json", "shard-00001.parquet"]
        assert load_dataset(out).num_rows + len(r.failed) == 8
        assert build_dataset(cfg, out, executor="local", progress=False).actions == ["skipped", "skipped"]
    finally:
        server.stop()


def test_cli_builds_and_reports_progress(tmp_path, capsys):
    from sptf_ray.cli import main

    out = str(tmp_path / "cli")
    argv = ["build-dataset", "--out", out, "--shards", "2", "--per-shard", "3", "--days", "20",
            "--model", "fxw", "--seed", "9", "--local"]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "build-dataset: shards 2/2" in text and "sims/s" in text and "ETA" in text
    assert storage.read_manifest(out)["extra"]["config"]["model"] == "fxw"
    assert main(argv) == 0
    assert "2 skipped" in capsys.readouterr().out


# --------------------------------------------------------------------------- fault tolerance
def test_killed_worker_and_removed_node_still_give_every_shard_once(tmp_path):
    """3-node cluster in a subprocess (own RAY_TMPDIR, auth off): SIGKILL a shard's worker, then
    remove a node mid-build; every shard ends up present once, valid, and as built in-process."""
    tmp = tempfile.mkdtemp(prefix="sptf-cl-")  # short: Ray's socket paths have a length limit
    out, ref = os.path.join(tmp, "out"), os.path.join(tmp, "ref")
    env = {**os.environ, "RAY_TMPDIR": tmp, "RAY_AUTH_MODE": "disabled", "HOME": tmp,
           "RAY_USAGE_STATS_ENABLED": "0", "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, str(REPO / "tests" / "dataset_cluster_scenario.py"), out, ref],
                          env=env, cwd=tmp, capture_output=True, text=True, timeout=240)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("SCENARIO ")]
    assert proc.returncode == 0 and lines, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads(lines[-1][len("SCENARIO "):])
    assert report["error"] is None, report
    assert report["killed_pids"] and report["removed_node"], report
    n = 8
    names = sorted(os.listdir(out))
    visible = [x for x in names if not x.startswith(".")]
    assert visible == sorted(["config.yaml", "manifest.json"] + [shard_name(i) for i in range(n)]
                             + [sidecar_name(i) for i in range(n)])
    assert storage.verify_manifest(out)
    chash = storage.read_manifest(out)["extra"]["content_hash"]
    assert all(check_shard(out, i, chash) is not None for i in range(n))
    assert [_bytes(out, i) for i in range(n)] == [_bytes(ref, i) for i in range(n)]
    ids = load_dataset(out).column("sim_id").to_pylist()
    assert ids == sorted(set(ids)) and len(ids) + report["failed"] == n * 12
