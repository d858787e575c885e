"""Tiny synthetic sites for inversion tests and benchmarks.

Simple seasonal weather (rain as a seeded Poisson-exponential process, sinusoidal PET, LAI and
LST) and SWC simulated by the solver from known Table 1 parameters, each year started cold, as
the forward protocol prescribes. A stand-in until the virtual network (`sptf_ray.data.network`)
is available; it is not a climate generator.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from sptf_ray.physics import SimulationError, parameter_space, simulate
from sptf_ray.physics.parameters import PARAM_NAMES

DAYS = 365


def seasonal_weather(rng: np.random.Generator, n_years: int, wetness: float = 1.0, winter_c: float = -4.0):
    """Daily precip_cm, pet_cm, lai, lst_c for n_years 365-day years."""
    d = np.arange(DAYS * n_years) % DAYS
    season = np.clip(np.sin(np.pi * (d - 60) / 245.0), 0.0, None)  # 0 in winter, 1 mid-summer
    wet_prob = 0.25 + 0.1 * np.cos(2 * np.pi * d / DAYS)
    precip = np.where(rng.random(d.size) < wet_prob, rng.exponential(0.6 * wetness, d.size), 0.0)
    pet = 0.05 + 0.40 * season
    lai = 0.3 + 2.5 * np.clip(np.sin(np.pi * (d - 90) / 200.0), 0.0, None)
    lst = winter_c + 22.0 * (0.5 - 0.5 * np.cos(2 * np.pi * (d - 15) / DAYS)) + rng.normal(0, 2.0, d.size)
    return precip, pet, lai, lst


def random_params(model: str, rng: np.random.Generator, n: int = 1) -> np.ndarray:
    """Table 1 parameters drawn uniformly in unit space (log for alpha, Ks), kept away from the edges."""
    space = parameter_space(model)
    return space.from_unit(rng.uniform(0.1, 0.9, size=(n, 6)))


def synthetic_site(site_id: str, model: str, params, rng: np.random.Generator, n_years: int = 2,
                   start_year: int = 2001, noise: float = 0.0, wetness: float = 1.0):
    """(static row dict, daily DataFrame) of one site whose SWC comes from `params` via the solver."""
    precip, pet, lai, lst = seasonal_weather(rng, n_years, wetness)
    params = np.asarray(params, dtype=float).reshape(1, 6)
    swc = np.empty(DAYS * n_years)
    for k in range(n_years):
        s = slice(k * DAYS, (k + 1) * DAYS)
        swc[s] = simulate(model, params, precip[s], pet[s], lai[s]).swc[0]  # cold start every year
    if noise > 0:
        swc = np.clip(swc + rng.normal(0.0, noise, swc.size), 0.0, 1.0)
    dates = np.concatenate([pd.date_range(f"{start_year + k}-01-01", periods=DAYS, freq="D").values
                            for k in range(n_years)])
    daily = pd.DataFrame({"site_id": site_id, "date": dates, "swc": swc, "precip_cm": precip, "pet_cm": pet,
                          "lai": lai, "lst_c": lst})
    static = {"site_id": site_id, "lat": 45.0, "lon": 10.0, "sand": 40.0, "silt": 40.0, "clay": 20.0,
              "bulk_density": 1.4, "source": "synthetic", "truth_model": model,
              **{f"true_{k}": float(v) for k, v in zip(PARAM_NAMES[model], params[0])}}
    return static, daily


def synthetic_dataset(n_sites: int, seed: int = 0, models=("vgm", "fxw"), n_years: int = 2, noise: float = 0.0):
    """(static DataFrame, daily DataFrame) of n_sites sites, truth models alternating over `models`."""
    rng = np.random.default_rng(seed)
    statics, dailies = [], []
    for i in range(n_sites):
        model = models[i % len(models)]
        for _attempt in range(20):  # the solver fails on a few parameter sets: draw again
            params = random_params(model, rng)[0]
            try:
                st, dy = synthetic_site(f"S{i:04d}", model, params, rng, n_years=n_years, noise=noise,
                                        wetness=float(rng.uniform(0.5, 1.5)))
                break
            except SimulationError:
                continue
        else:
            raise RuntimeError(f"could not simulate site {i} in 20 draws")
        statics.append(st)
        dailies.append(dy)
    return pd.DataFrame(statics), pd.concat(dailies, ignore_index=True)
