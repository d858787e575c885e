"""Stochastic daily weather for the virtual network.

Each site's climate is a handful of interpretable numbers (`Climate`), sampled across many
climates (arid to humid, cold to hot) by `sample_climates`. `generate_weather` turns them
into daily series for any number of 365-day years, vectorized over sites:

- precipitation: first-order Markov wet/dry chain (Richardson 1981) whose stationary wet-day
  probability follows a seasonal cosine, with gamma-distributed wet-day amounts;
- air temperature: seasonal cosine plus an AR(1) daily anomaly;
- PET: Hargreaves (FAO-56 eq. 52) from air temperature, the diurnal range (smaller on wet
  days: clouds) and extraterrestrial radiation at the site's latitude;
- LAI: a smooth seasonal cycle between land-cover minimum and maximum, greening with warmth
  (and with the wet season where rain is seasonal), capped in dry climates;
- LST: air temperature plus a land-cover offset and noise; cold climates get frozen days.

Units: cm/d for precipitation and PET, C for temperatures, m2/m2 for LAI.
Everything is deterministic given the numpy Generator (or integer seed) passed in.
"""
from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

DAYS_PER_YEAR = 365  # DESIGN section 0: 31 Dec of leap years is dropped

# IGBP land-cover codes used by the virtual network -> (LAI minimum, LAI maximum, LST offset C).
# LAI ranges follow MODIS climatologies of these biomes; bare-ish surfaces run warmer.
LAND_COVER = {
    "GRA": (0.3, 2.5, 1.5),  # grassland
    "CRO": (0.2, 3.5, 1.0),  # cropland
    "DBF": (0.5, 5.0, -0.5),  # deciduous broadleaf forest
    "ENF": (2.5, 4.0, -1.0),  # evergreen needleleaf forest
    "OSH": (0.2, 0.8, 3.0),  # open shrubland
    "SAV": (0.5, 2.0, 2.0),  # savanna
}
LAND_COVER_CODES = tuple(LAND_COVER)


@dataclass(frozen=True)
class Climate:
    """Climate of S sites: every field is an array of shape (S,)."""

    lat: np.ndarray  # degrees north; sets radiation and which half of the year is summer
    annual_precip_mm: np.ndarray  # long-run mean annual precipitation
    wet_day_fraction: np.ndarray  # long-run fraction of days with rain
    wet_persistence: np.ndarray  # P(wet|wet) - P(wet|dry), lag-1 autocorrelation of wet/dry
    precip_seasonality: np.ndarray  # relative amplitude of the wet-day probability cycle, 0..0.8
    precip_peak_doy: np.ndarray  # day of year when rain days are most likely
    gamma_shape: np.ndarray  # shape of wet-day amounts (< 1: many drizzles, a few storms)
    temp_mean_c: np.ndarray  # mean annual air temperature
    temp_amplitude_c: np.ndarray  # half the difference between warmest and coldest season
    temp_noise_sd_c: np.ndarray  # sd of the daily AR(1) temperature anomaly
    diurnal_range_c: np.ndarray  # mean daily Tmax - Tmin on dry days (for Hargreaves PET)
    land_cover: np.ndarray  # IGBP code (str), one of LAND_COVER_CODES

    def __post_init__(self):
        sizes = {np.asarray(getattr(self, f.name)).shape for f in fields(self)}
        if len(sizes) != 1 or len(next(iter(sizes))) != 1:
            raise ValueError(f"Climate fields must be 1-D arrays of one length, got shapes {sizes}")
        unknown = set(np.asarray(self.land_cover).tolist()) - set(LAND_COVER_CODES)
        if unknown:
            raise ValueError(f"unknown land cover {sorted(unknown)}: expected {LAND_COVER_CODES}")
        f = np.asarray(self.wet_day_fraction)
        r = np.asarray(self.wet_persistence)
        if np.any((f <= 0) | (f >= 1)) or np.any((r < 0) | (r >= 1)):
            raise ValueError("wet_day_fraction must lie in (0, 1) and wet_persistence in [0, 1)")

    def __len__(self) -> int:
        return len(self.lat)

    def subset(self, index) -> "Climate":
        return Climate(**{f.name: np.asarray(getattr(self, f.name))[index] for f in fields(self)})

    def to_columns(self) -> dict:
        """Column name -> array, for storing beside a network (prefix-free)."""
        return {f.name: np.asarray(getattr(self, f.name)) for f in fields(self)}

    @classmethod
    def from_columns(cls, columns) -> "Climate":
        return cls(**{f.name: np.asarray(columns[f.name]) for f in fields(cls)})


@dataclass(frozen=True)
class Weather:
    """Daily forcing of S sites over T days: arrays of shape (S, T)."""

    precip_cm: np.ndarray
    pet_cm: np.ndarray
    lai: np.ndarray
    lst_c: np.ndarray
    tair_c: np.ndarray


def sample_climates(n_sites: int, rng: np.random.Generator) -> Climate:
    """Draw `n_sites` climates spanning arid to humid and cold to hot.

    Most sites sit at 28-62 N like the ISMN's (US and European networks dominate it); the rest
    spread from 40 S to 28 N. Temperature falls with latitude, seasonality grows with it and
    with continentality; annual precipitation is log-normal (median 650 mm, 90 % in about
    280-1,500 mm) and wetter climates rain on more days.
    """
    if n_sites < 1:
        raise ValueError(f"n_sites must be >= 1, got {n_sites}")
    mid_latitude = rng.random(n_sites) < 0.8
    lat = np.where(mid_latitude, rng.uniform(28, 62, n_sites), rng.uniform(-40, 28, n_sites))
    abs_lat = np.abs(lat)
    continentality = rng.uniform(0.6, 1.4, n_sites)
    temp_mean = 28.0 - 0.4 * abs_lat + rng.normal(0.0, 3.0, n_sites)
    temp_amplitude = 2.0 + 0.25 * abs_lat * continentality

    annual_precip = np.clip(np.exp(rng.normal(np.log(650.0), 0.5, n_sites)), 80.0, 3000.0)
    wet_fraction = 0.08 + 0.3 * (annual_precip / 1000.0) ** 0.6 + rng.normal(0.0, 0.04, n_sites)
    wet_fraction = np.clip(wet_fraction, 0.05, 0.7)

    return Climate(
        lat=lat,
        annual_precip_mm=annual_precip,
        wet_day_fraction=wet_fraction,
        wet_persistence=rng.uniform(0.1, 0.4, n_sites),
        precip_seasonality=rng.uniform(0.0, 0.7, n_sites),
        precip_peak_doy=rng.uniform(0.0, DAYS_PER_YEAR, n_sites),
        gamma_shape=rng.uniform(0.6, 0.9, n_sites),
        temp_mean_c=temp_mean,
        temp_amplitude_c=temp_amplitude,
        temp_noise_sd_c=rng.uniform(2.0, 4.0, n_sites),
        diurnal_range_c=rng.uniform(8.0, 14.0, n_sites),
        land_cover=_sample_land_cover(annual_precip, temp_mean, rng),
    )


def _sample_land_cover(annual_precip, temp_mean, rng) -> np.ndarray:
    """Land cover that fits the climate: shrubs where dry, conifers where cold, else mixed."""
    n = len(annual_precip)
    u = rng.random(n)
    dry = annual_precip < 350
    cold = temp_mean < 4
    humid = annual_precip > 900
    cover = np.where(u < 0.5, "GRA", np.where(u < 0.8, "CRO", "SAV"))
    cover = np.where(humid, np.where(u < 0.35, "DBF", np.where(u < 0.6, "CRO", "GRA")), cover)
    cover = np.where(cold, np.where(u < 0.45, "ENF", "GRA"), cover)
    cover = np.where(dry, np.where(u < 0.6, "OSH", "GRA"), cover)
    return cover.astype(object)


def generate_weather(climate: Climate, n_days: int, rng) -> Weather:
    """Daily weather for every site of `climate`, starting on 1 January, 365-day years."""
    if n_days < 1:
        raise ValueError(f"n_days must be >= 1, got {n_days}")
    rng = np.random.default_rng(rng)
    doy = np.arange(n_days) % DAYS_PER_YEAR + 1  # 1..365
    col = lambda a: np.asarray(a, dtype=np.float64)[:, None]  # noqa: E731  (S,) -> (S, 1)

    wet = _wet_days(climate, doy, rng)
    precip_cm = _wet_day_amounts(climate, wet, rng)
    tair = _air_temperature(climate, doy, rng)
    # Clouds on wet days narrow the diurnal range, which lowers Hargreaves PET.
    diurnal_range = col(climate.diurnal_range_c) * np.where(wet, 0.65, 1.0)
    pet_cm = _hargreaves_pet_cm(tair, diurnal_range, col(climate.lat), doy)
    lai = _leaf_area_index(climate, doy, n_days, rng)
    lst_offset = np.array([LAND_COVER[c][2] for c in climate.land_cover])
    lst = tair + lst_offset[:, None] + rng.normal(0.0, 1.5, tair.shape)
    return Weather(precip_cm=precip_cm, pet_cm=pet_cm, lai=lai, lst_c=lst, tair_c=tair)


def seasonal_wet_probability(climate: Climate, doy) -> np.ndarray:
    """Stationary wet-day probability of each site on each day of year, shape (S, len(doy))."""
    phase = 2 * np.pi * (np.asarray(doy)[None, :] - climate.precip_peak_doy[:, None]) / DAYS_PER_YEAR
    p = climate.wet_day_fraction[:, None] * (1.0 + climate.precip_seasonality[:, None] * np.cos(phase))
    return np.clip(p, 0.01, 0.95)


def _wet_days(climate: Climate, doy, rng) -> np.ndarray:
    """Markov chain with P(wet|dry) = p(1 - r), P(wet|wet) = p + r(1 - p).

    That pair keeps p as the stationary wet-day probability and r as the lag-1
    autocorrelation of the wet/dry sequence.
    """
    p = seasonal_wet_probability(climate, doy)
    r = climate.wet_persistence[:, None]
    p_wet_after_dry = p * (1.0 - r)
    p_wet_after_wet = p + r * (1.0 - p)
    u = rng.random(p.shape)
    wet = np.empty(p.shape, dtype=bool)
    wet[:, 0] = u[:, 0] < p[:, 0]
    for t in range(1, p.shape[1]):
        threshold = np.where(wet[:, t - 1], p_wet_after_wet[:, t], p_wet_after_dry[:, t])
        wet[:, t] = u[:, t] < threshold
    return wet


def _wet_day_amounts(climate: Climate, wet, rng) -> np.ndarray:
    # Mean wet-day depth chosen so the long-run annual total is annual_precip_mm.
    mean_mm = climate.annual_precip_mm / (DAYS_PER_YEAR * climate.wet_day_fraction)
    shape = climate.gamma_shape[:, None]
    amounts_mm = rng.gamma(np.broadcast_to(shape, wet.shape), 1.0) * (mean_mm[:, None] / shape)
    return np.where(wet, amounts_mm / 10.0, 0.0)


def _summer_peak_doy(lat) -> np.ndarray:
    """Warmest day of year: mid-July in the north, mid-January in the south."""
    return np.where(np.asarray(lat) >= 0, 200.0, 200.0 - DAYS_PER_YEAR / 2)


def seasonal_temperature(climate: Climate, doy) -> np.ndarray:
    """Climatological air temperature (no daily noise), shape (S, len(doy))."""
    phase = 2 * np.pi * (np.asarray(doy)[None, :] - _summer_peak_doy(climate.lat)[:, None]) / DAYS_PER_YEAR
    return climate.temp_mean_c[:, None] + climate.temp_amplitude_c[:, None] * np.cos(phase)


def _air_temperature(climate: Climate, doy, rng) -> np.ndarray:
    phi = 0.7  # day-to-day persistence of temperature anomalies (synoptic weather)
    sd = climate.temp_noise_sd_c
    shocks = rng.normal(0.0, 1.0, (len(climate), len(doy))) * (sd * np.sqrt(1 - phi**2))[:, None]
    anomaly = np.empty_like(shocks)
    anomaly[:, 0] = rng.normal(0.0, 1.0, len(climate)) * sd
    for t in range(1, shocks.shape[1]):
        anomaly[:, t] = phi * anomaly[:, t - 1] + shocks[:, t]
    return seasonal_temperature(climate, doy) + anomaly


def extraterrestrial_radiation_mm(lat_deg, doy) -> np.ndarray:
    """FAO-56 eqs 21-25, as evaporation equivalent (mm/d = 0.408 x MJ/m2/d)."""
    phi = np.deg2rad(lat_deg)
    j = np.asarray(doy, dtype=np.float64)
    dr = 1 + 0.033 * np.cos(2 * np.pi * j / 365)
    decl = 0.409 * np.sin(2 * np.pi * j / 365 - 1.39)
    ws = np.arccos(np.clip(-np.tan(phi) * np.tan(decl), -1.0, 1.0))
    ra_mj = (24 * 60 / np.pi) * 0.0820 * dr * (
        ws * np.sin(phi) * np.sin(decl) + np.cos(phi) * np.cos(decl) * np.sin(ws)
    )
    return 0.408 * np.maximum(ra_mj, 0.0)


def _hargreaves_pet_cm(tair, diurnal_range, lat_col, doy) -> np.ndarray:
    ra = extraterrestrial_radiation_mm(lat_col, doy[None, :])
    pet_mm = 0.0023 * ra * (tair + 17.8) * np.sqrt(diurnal_range)
    return np.maximum(pet_mm, 0.0) / 10.0


def _leaf_area_index(climate: Climate, doy, n_days, rng) -> np.ndarray:
    """Seasonal LAI between the land cover's minimum and (moisture-capped) maximum."""
    lai_min = np.array([LAND_COVER[c][0] for c in climate.land_cover])
    lai_max = np.array([LAND_COVER[c][1] for c in climate.land_cover])
    # Dry climates cannot carry their biome's full canopy.
    lai_max = lai_min + (lai_max - lai_min) * np.minimum(1.0, climate.annual_precip_mm / 600.0) ** 0.5
    warmth = 1.0 / (1.0 + np.exp(-(seasonal_temperature(climate, doy) - 8.0) / 3.0))
    # Where rain is seasonal, green-up follows the wet season with about a month's lag.
    wet_cycle = seasonal_wet_probability(climate, (np.asarray(doy) - 30) % DAYS_PER_YEAR + 1)
    wet_cycle = wet_cycle / wet_cycle.max(axis=1, keepdims=True)
    weight = (climate.precip_seasonality / 0.7)[:, None] * 0.5
    greenness = warmth * (1.0 - weight + weight * wet_cycle)
    # Canopies differ a little from year to year (+-10 %).
    n_years = -(-n_days // DAYS_PER_YEAR)
    year_factor = rng.normal(1.0, 0.1, (len(climate), n_years)).clip(0.7, 1.3)
    year_factor = np.repeat(year_factor, DAYS_PER_YEAR, axis=1)[:, :n_days]
    lai = lai_min[:, None] + (lai_max - lai_min)[:, None] * greenness * year_factor
    return np.maximum(lai, 0.0)
