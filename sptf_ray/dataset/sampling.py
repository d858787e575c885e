"""What goes into one shard of the surrogate training set: parameters and forcings.

Everything here is a pure function of (config, shard index), so shard i is the same whatever
the number of shards, the order they run in, or the machine that runs them:

- **Parameters** (paper Table 1, theta_s widened to THETA_S_SAMPLING_RANGE; alpha and Ks in
  log10 space) come from one scrambled Sobol' sequence per hydraulic model, scrambled by a seed
  derived from (seed, model). Shard i takes the points [i*n, (i+1)*n) of that sequence, where n
  is the shard's row count for the model, so the whole dataset is one contiguous Sobol' prefix
  of each model's sequence (its balance properties hold for the union of shards).
- **Forcings** come from the weather generator (`sptf_ray.data.weather`, one fresh climate per
  simulation, so a shard spans arid to humid and cold to hot) and, when a site dataset directory
  is given, from real site-year windows of its `daily.parquet` (random site, random start year,
  starting on 1 January like every simulated year: DESIGN section 0), mixed by `site_fraction`.
  Their randomness comes from numpy Generators seeded by SeedSequence(seed, spawn_key=(1, i, stream)),
  one independent stream each for the forcing mix, the weather and the site windows.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from sptf_ray.physics.parameters import THETA_S_SAMPLING_RANGE, parameter_space

DAYS_PER_YEAR = 365
FORCING_WEATHER = "weather"
FORCING_SITE = "site"

# Independent streams per shard (spawn keys), so adding draws to one never shifts another.
_STREAM_SOURCE, _STREAM_WEATHER, _STREAM_SITES = 0, 1, 2
_MODEL_KEY = {"vgm": 1, "fxw": 2}


def models_for(model: str) -> tuple[str, ...]:
    """'vgm' -> ('vgm',), 'fxw' -> ('fxw',), 'both' -> ('vgm', 'fxw')."""
    if model == "both":
        return ("vgm", "fxw")
    if model in ("vgm", "fxw"):
        return (model,)
    raise ValueError(f"model must be 'vgm', 'fxw' or 'both', got {model!r}")


def rows_per_model(per_shard: int, model: str) -> dict[str, int]:
    """How a shard's rows split between the models (the same for every shard)."""
    names = models_for(model)
    base, extra = divmod(int(per_shard), len(names))
    return {m: base + (k < extra) for k, m in enumerate(names)}


def sampling_space(model: str):
    """Table 1 bounds with theta_s in THETA_S_SAMPLING_RANGE (log10 for alpha and Ks)."""
    space = parameter_space(model)
    i = space.names.index("theta_s")
    lower, upper = space.lower.copy(), space.upper.copy()
    lower[i], upper[i] = THETA_S_SAMPLING_RANGE
    return type(space)(space.model, space.names, lower, upper, space.log_scaled)


def sobol_unit(seed: int, model: str, start: int, n: int) -> np.ndarray:
    """Points [start, start + n) of the scrambled 6-d Sobol' sequence of (seed, model)."""
    from scipy.stats import qmc

    ss = np.random.SeedSequence(int(seed), spawn_key=(0, _MODEL_KEY[model]))
    engine = qmc.Sobol(d=6, scramble=True, seed=np.random.default_rng(ss))
    if start:
        engine.fast_forward(int(start))
    with warnings.catch_warnings():
        # Shards are blocks of one sequence; balance is a property of the union, not a block.
        warnings.filterwarnings("ignore", message=".*balance properties.*")
        return engine.random(int(n))


def sample_parameters(seed: int, model: str, shard: int, n: int) -> np.ndarray:
    """(n, 6) physical parameters of `model` for shard `shard` (Table 1 column order)."""
    if n == 0:
        return np.empty((0, 6))
    unit = sobol_unit(seed, model, shard * n, n)
    return sampling_space(model).from_unit(unit)


def shard_rng(seed: int, shard: int, stream: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=(1, int(shard), stream)))


# --------------------------------------------------------------------------- site forcings
@dataclass(frozen=True)
class SitePool:
    """Every complete 365-day year of forcing of a site dataset, in a fixed order.

    years: (Y, 365, 3) float32 precip_cm, pet_cm, lai; site_index: (Y,) index into site_ids;
    year: (Y,) calendar year. Windows of k consecutive years start at `window_starts(k)`.
    """

    site_ids: tuple
    site_index: np.ndarray
    year: np.ndarray
    years: np.ndarray

    def window_starts(self, n_years: int) -> np.ndarray:
        """Indices y such that years y .. y+n_years-1 are consecutive years of one site."""
        y = np.arange(len(self.year) - n_years + 1)
        if len(y) <= 0:
            return np.empty(0, dtype=np.int64)
        ok = np.ones(len(y), dtype=bool)
        for k in range(1, n_years):
            ok &= (self.site_index[y + k] == self.site_index[y]) & (self.year[y + k] == self.year[y] + k)
        return y[ok]


def load_site_pool(sites_dir: str) -> SitePool:
    """Complete forcing years of the site dataset in `sites_dir` (its daily.parquet).

    A year counts when it has all 365 days (31 Dec of leap years dropped) with finite,
    non-negative precip_cm, pet_cm and lai. Raises ValueError when none does.
    """
    import pandas as pd

    from sptf_ray import storage
    from sptf_ray.data import schema
    from sptf_ray.data.validate import drop_leap_dec31

    uri = storage.join(sites_dir, schema.DAILY_FILE)
    if not storage.exists(uri):
        raise FileNotFoundError(f"site dataset {sites_dir}: missing {uri}")
    daily = storage.read_parquet(uri, columns=["site_id", "date", "precip_cm", "pet_cm", "lai"])
    daily["date"] = pd.to_datetime(daily["date"])
    daily, _ = drop_leap_dec31(daily)
    daily = daily.drop_duplicates(["site_id", "date"]).sort_values(["site_id", "date"])
    daily["year"] = daily["date"].dt.year
    values = daily[["precip_cm", "pet_cm", "lai"]].to_numpy(np.float64)
    daily["good"] = np.isfinite(values).all(axis=1) & (values >= 0).all(axis=1)
    counts = daily.groupby(["site_id", "year"], sort=True)["good"].agg(["sum", "size"])
    complete = counts[(counts["sum"] == DAYS_PER_YEAR) & (counts["size"] == DAYS_PER_YEAR)].index
    if len(complete) == 0:
        raise ValueError(f"site dataset {sites_dir}: no site has a complete 365-day year of forcing")
    keep = daily.set_index(["site_id", "year"]).loc[complete].reset_index()
    site_ids = tuple(sorted(keep["site_id"].astype(str).unique()))
    pos = {s: k for k, s in enumerate(site_ids)}
    years = keep[["precip_cm", "pet_cm", "lai"]].to_numpy(np.float32).reshape(len(complete), DAYS_PER_YEAR, 3)
    site_index = np.array([pos[str(s)] for s, _ in complete], dtype=np.int64)
    year = np.array([y for _, y in complete], dtype=np.int64)
    return SitePool(site_ids=site_ids, site_index=site_index, year=year, years=years)


def site_forcings(pool: SitePool, n: int, n_days: int, rng: np.random.Generator):
    """(precip, pet, lai), each (n, n_days): windows of consecutive site-years from 1 January."""
    n_years = -(-n_days // DAYS_PER_YEAR)
    starts = pool.window_starts(n_years)
    if len(starts) == 0:
        raise ValueError(f"no site has {n_years} consecutive complete years for {n_days}-day windows")
    pick = starts[rng.integers(0, len(starts), n)]
    idx = pick[:, None] + np.arange(n_years)[None, :]
    block = pool.years[idx].reshape(n, n_years * DAYS_PER_YEAR, 3)[:, :n_days]
    return tuple(np.ascontiguousarray(block[:, :, k], dtype=np.float64) for k in range(3))


def weather_forcings(n: int, n_days: int, rng: np.random.Generator):
    """(precip, pet, lai), each (n, n_days), one freshly sampled climate per row."""
    from sptf_ray.data.weather import generate_weather, sample_climates

    climate = sample_climates(n, rng)
    w = generate_weather(climate, n_days, rng)
    return w.precip_cm, w.pet_cm, w.lai


# --------------------------------------------------------------------------- one shard
@dataclass(frozen=True)
class ShardInputs:
    """Inputs of one shard's simulations, rows ordered by sim_id."""

    sim_id: np.ndarray  # (B,) int64, shard * per_shard + row
    model: np.ndarray  # (B,) str
    params: np.ndarray  # (B, 6) float64, Table 1 order of each row's model
    precip: np.ndarray  # (B, T) cm/d
    pet: np.ndarray  # (B, T) cm/d
    lai: np.ndarray  # (B, T)
    forcing_source: np.ndarray  # (B,) "weather" or "site"


def shard_inputs(shard: int, *, seed: int, per_shard: int, model: str, days: int,
                 site_fraction: float = 0.0, pool: SitePool | None = None) -> ShardInputs:
    """Parameters and forcings of shard `shard`; depends only on its arguments."""
    if per_shard < 1 or days < 1 or shard < 0:
        raise ValueError(f"need per_shard >= 1, days >= 1, shard >= 0 (got {per_shard}, {days}, {shard})")
    if not 0.0 <= site_fraction <= 1.0:
        raise ValueError(f"site_fraction must lie in [0, 1], got {site_fraction}")
    split = rows_per_model(per_shard, model)
    models = np.concatenate([np.full(k, m, dtype=object) for m, k in split.items()])
    params = np.concatenate([sample_parameters(seed, m, shard, k) for m, k in split.items()])

    n_site = int(round(site_fraction * per_shard)) if pool is not None else 0
    source = np.full(per_shard, FORCING_WEATHER, dtype=object)
    source[shard_rng(seed, shard, _STREAM_SOURCE).permutation(per_shard)[:n_site]] = FORCING_SITE
    precip, pet, lai = (np.empty((per_shard, days)) for _ in range(3))
    is_site = source == FORCING_SITE
    for mask, forcings in (
        (~is_site, lambda k: weather_forcings(k, days, shard_rng(seed, shard, _STREAM_WEATHER))),
        (is_site, lambda k: site_forcings(pool, k, days, shard_rng(seed, shard, _STREAM_SITES))),
    ):
        k = int(mask.sum())
        if k:
            p, e, a = forcings(k)
            precip[mask], pet[mask], lai[mask] = p, e, a
    sim_id = np.int64(shard) * per_shard + np.arange(per_shard, dtype=np.int64)
    # The shard stores float32: simulate exactly what is stored, so inputs reproduce outputs.
    f32 = lambda a: a.astype(np.float32).astype(np.float64)  # noqa: E731
    return ShardInputs(sim_id=sim_id, model=models, params=f32(params), precip=f32(precip), pet=f32(pet),
                       lai=f32(lai), forcing_source=source)
