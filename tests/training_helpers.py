"""Tiny data for the training tests: surrogate shards and a site dataset, made with the solver."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa

from sptf_ray import storage
from sptf_ray.physics import parameter_space, simulate
from sptf_ray.physics.parameters import THETA_S_SAMPLING_RANGE


def _weather(rng, n, days, day0=0):
    t = np.arange(day0, day0 + days)
    season = 0.5 - 0.5 * np.cos(2 * np.pi * t / 365.0)
    precip = rng.exponential(0.8, (n, days)) * (rng.random((n, days)) < 0.3)
    pet = (0.05 + 0.4 * season) * rng.uniform(0.7, 1.3, (n, 1))
    lai = 0.3 + 3.0 * season * rng.uniform(0.5, 1.0, (n, 1))
    return precip, np.broadcast_to(pet, (n, days)).copy(), np.broadcast_to(lai, (n, days)).copy()


def write_shards(dir_uri, n_sims=48, days=90, n_shards=2, model="vgm", seed=0):
    """Shards in the `dataset` branch's schema; failed simulations are kept with NaN SWC."""
    rng = np.random.default_rng(seed)
    space = parameter_space(model, THETA_S_SAMPLING_RANGE[1])
    params = space.from_unit(rng.random((n_sims, 6)))
    precip, pet, lai = _weather(rng, n_sims, days, day0=int(rng.integers(0, 365)))
    res = simulate(model, params, precip, pet, lai, raise_on_failure=False)
    names = []
    for s, idx in enumerate(np.array_split(np.arange(n_sims), n_shards)):
        def lst(a):
            return pa.array([row.astype(np.float32) for row in a[idx]], type=pa.list_(pa.float32()))
        table = pa.table({
            "sim_id": pa.array(idx.astype(np.int64)),
            "model": pa.array([model] * len(idx)),
            "params": pa.FixedSizeListArray.from_arrays(pa.array(params[idx].astype(np.float32).ravel()), 6),
            "precip": lst(precip), "pet": lst(pet), "lai": lst(lai), "swc": lst(res.swc),
            "balance_error": pa.array(res.balance_error[idx].astype(np.float32)),
            "forcing_source": pa.array(["test"] * len(idx)),
        })
        name = f"shard-{s:05d}.parquet"
        storage.atomic_write_parquet(table, storage.join(dir_uri, name))
        names.append(name)
    storage.write_manifest(dir_uri, names, {"n_sims": n_sims, "days": days})
    return names


def write_site_dataset(dir_uri, n_sites=8, years=(2001, 2002, 2003), model="vgm", seed=1):
    """Virtual sites: true parameters through the solver (cold start each year) plus noise."""
    from sptf_ray.data.validate import SiteDataset, write_site_dataset as write

    rng = np.random.default_rng(seed)
    space = parameter_space(model)
    true = space.from_unit(rng.uniform(0.2, 0.8, (n_sites, 6)))
    sand = rng.uniform(10, 80, n_sites)
    clay = rng.uniform(5, 100 - sand - 5)
    static = pd.DataFrame({"site_id": [f"S{i:02d}" for i in range(n_sites)], "lat": rng.uniform(30, 50, n_sites),
                           "lon": rng.uniform(-120, -80, n_sites), "sand": sand, "silt": 100 - sand - clay,
                           "clay": clay, "bulk_density": rng.uniform(1.1, 1.6, n_sites)})
    frames = []
    for y in years:
        dates = pd.date_range(f"{y}-01-01", periods=365, freq="D")
        precip, pet, lai = _weather(rng, n_sites, 365)
        res = simulate(model, true, precip, pet, lai, raise_on_failure=False)
        swc = np.clip(res.swc + rng.normal(0, 0.005, res.swc.shape), 0.01, 0.7)
        doy = np.arange(365)
        lst = -8 + 30 * (0.5 - 0.5 * np.cos(2 * np.pi * doy / 365.0))
        for i, sid in enumerate(static.site_id):
            frames.append(pd.DataFrame({"site_id": sid, "date": dates, "swc": swc[i], "precip_cm": precip[i],
                                        "pet_cm": pet[i], "lai": lai[i], "lst_c": lst + rng.normal(0, 2, 365)}))
    daily = pd.concat(frames, ignore_index=True)
    write(SiteDataset(static=static, daily=daily), dir_uri)
    return static, daily, true
