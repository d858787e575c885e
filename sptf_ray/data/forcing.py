"""Forcing that stations lack (DESIGN section 0): PET, LST and LAI, every substitution flagged.

Input is a per-site daily frame in *station units* (the "met" columns below, any subset);
output adds `precip_cm, pet_cm, lai, lst_c` and the flag columns of schema.py.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

# Station-unit daily columns understood by `derive_forcing` (all optional).
MET_COLUMNS = {
    "precip_mm": "daily precipitation, mm",
    "tmax_c": "daily maximum air temperature, C",
    "tmin_c": "daily minimum air temperature, C",
    "tmean_c": "daily mean air temperature, C",
    "rs_mj_m2": "incoming solar radiation, MJ/m2/d",
    "rh_pct": "mean relative humidity, %",
    "wind_ms": "mean wind speed at 2 m, m/s",
    "surface_temp_c": "land/surface (skin) temperature, C",
    "pet_mm": "potential evapotranspiration given by the user, mm/d",
    "lai": "leaf area index given by the user, m2/m2",
}
DEFAULT_WIND_MS = 2.0  # FAO-56 (Allen et al. 1998, ch. 3) recommends 2 m/s when wind is unknown
DEFAULT_LAND_COVER = "GRA"

# Monthly LAI climatology (m2/m2, Jan..Dec, northern hemisphere) by IGBP class.
# Basis: rounded class means of the MODIS LAI climatology (MOD15A2, reprocessed by Yuan et al.
# 2011, Remote Sens. Environ. 115:1171-1187), as tabulated for land-surface models (e.g. the
# Noah-MP MPTABLE.TBL monthly LAI by MODIS/IGBP class). Southern-hemisphere sites are shifted
# by six months. It is a fallback only: every day it supplies is flagged lai_from_climatology.
LAI_CLIMATOLOGY = {
    "ENF": [4.0, 4.0, 4.0, 4.0, 4.2, 4.5, 4.7, 4.7, 4.5, 4.2, 4.0, 4.0],
    "EBF": [4.5, 4.5, 4.5, 4.5, 4.5, 4.5, 4.5, 4.5, 4.5, 4.5, 4.5, 4.5],
    "DNF": [0.5, 0.5, 0.5, 0.8, 2.0, 3.5, 4.0, 3.8, 2.5, 1.0, 0.5, 0.5],
    "DBF": [0.5, 0.5, 0.6, 1.0, 2.5, 4.5, 5.0, 4.8, 3.5, 1.5, 0.6, 0.5],
    "MF": [2.0, 2.0, 2.2, 2.6, 3.5, 4.5, 4.8, 4.7, 4.0, 3.0, 2.3, 2.0],
    "CSH": [0.5, 0.5, 0.6, 0.8, 1.2, 1.6, 1.8, 1.8, 1.5, 1.0, 0.6, 0.5],
    "OSH": [0.3, 0.3, 0.3, 0.4, 0.6, 0.8, 0.9, 0.9, 0.7, 0.5, 0.3, 0.3],
    "WSA": [0.8, 0.8, 0.9, 1.2, 1.8, 2.4, 2.7, 2.6, 2.1, 1.4, 0.9, 0.8],
    "SAV": [0.5, 0.5, 0.6, 0.8, 1.2, 1.7, 2.0, 1.9, 1.5, 1.0, 0.6, 0.5],
    "GRA": [0.4, 0.4, 0.5, 0.7, 1.2, 1.8, 2.0, 1.8, 1.3, 0.8, 0.5, 0.4],
    "WET": [0.5, 0.5, 0.6, 0.9, 1.5, 2.2, 2.6, 2.5, 1.9, 1.1, 0.6, 0.5],
    "CRO": [0.3, 0.3, 0.4, 0.6, 1.2, 2.5, 3.4, 3.0, 1.8, 0.8, 0.4, 0.3],
    "URB": [0.8, 0.8, 0.9, 1.0, 1.3, 1.6, 1.7, 1.7, 1.5, 1.2, 0.9, 0.8],
    "CVM": [0.5, 0.5, 0.6, 0.9, 1.5, 2.4, 3.0, 2.8, 2.0, 1.1, 0.6, 0.5],
    "BSV": [0.1, 0.1, 0.1, 0.1, 0.2, 0.2, 0.3, 0.3, 0.2, 0.1, 0.1, 0.1],
    "SNO": [0.0] * 12,
    "WAT": [0.0] * 12,
}

# ESA CCI land-cover codes (ISMN lc_2000/2005/2010) -> IGBP class of the table above.
ESA_CCI_TO_IGBP = {
    10: "CRO", 11: "CRO", 12: "CRO", 20: "CRO", 30: "CRO", 40: "CVM",
    50: "EBF", 60: "DBF", 61: "DBF", 62: "DBF", 70: "ENF", 71: "ENF", 72: "ENF",
    80: "DNF", 81: "DNF", 82: "DNF", 90: "MF", 100: "MF", 110: "GRA", 120: "OSH",
    121: "OSH", 122: "OSH", 130: "GRA", 140: "GRA", 150: "OSH", 151: "OSH", 152: "OSH",
    153: "GRA", 160: "WET", 170: "WET", 180: "WET", 190: "URB", 200: "BSV", 201: "BSV",
    202: "BSV", 210: "WAT", 220: "SNO",
}


def land_cover_class(value) -> str | None:
    """IGBP code from an IGBP string or an ESA CCI integer code; None when unknown."""
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA:
        return None
    text = str(value).strip().upper()
    if text in LAI_CLIMATOLOGY:
        return text
    try:
        return ESA_CCI_TO_IGBP.get(int(float(text)))
    except ValueError:
        return None


def lai_climatology(dates: pd.DatetimeIndex, land_cover: str, lat: float) -> np.ndarray:
    """Daily LAI from the monthly table, linear between mid-month values (cyclic)."""
    if land_cover not in LAI_CLIMATOLOGY:
        raise ValueError(f"no LAI climatology for land cover {land_cover!r}; known: {sorted(LAI_CLIMATOLOGY)}")
    monthly = np.asarray(LAI_CLIMATOLOGY[land_cover], dtype=float)
    if lat < 0:
        monthly = np.roll(monthly, 6)
    mid = (np.arange(12) + 0.5) * 365.0 / 12.0
    doy = dates.day_of_year.to_numpy(dtype=float) - 0.5
    # cyclic interpolation: pad December before January and January after December
    x = np.concatenate([[mid[-1] - 365.0], mid, [mid[0] + 365.0]])
    y = np.concatenate([[monthly[-1]], monthly, [monthly[0]]])
    return np.interp(doy, x, y)


def _col(met: pd.DataFrame, name: str) -> pd.Series:
    if name in met.columns:
        return pd.to_numeric(met[name], errors="coerce").astype(float)
    return pd.Series(np.nan, index=met.index, dtype=float)


# Plausibility limits in station units. Medians, not extremes, so a few bad days (QC's job) do
# not trip them: a median outside means the whole column is in another unit, which pyet either
# rejects with a misleading message or silently turns into absurd PET/LST.
TEMPERATURE_COLUMNS = ("tmax_c", "tmin_c", "tmean_c", "surface_temp_c")
TEMPERATURE_MEDIAN_RANGE_C = (-60.0, 50.0)
MEDIAN_MAX = {
    "rs_mj_m2": (50.0, "is it W/m2? give MJ/m2/d (W/m2 x 0.0864)"),
    "wind_ms": (50.0, "is it km/h or knots? give m/s"),
    "lai": (15.0, "is it scaled (e.g. MODIS LAI x10)? give m2/m2"),
}
RH_FRACTION_MAX, RH_FRACTION_MIN_VALUES = 1.5, 30  # fewer values: too little to call it a fraction


def check_station_inputs(met: pd.DataFrame, lat: float, site_id: str) -> None:
    """Raise ValueError naming the site when its latitude or a MET_COLUMNS column is implausible."""
    if lat is None or not np.isfinite(lat) or not -90.0 <= lat <= 90.0:
        raise ValueError(f"site {site_id}: latitude {lat} is missing or outside [-90, 90] degrees")
    for col in MET_COLUMNS:
        values = _col(met, col).dropna()
        problem = _unit_problem(col, values) if len(values) else None
        if problem:
            raise ValueError(f"site {site_id}: {col} {problem}")


def _unit_problem(col: str, values: pd.Series) -> str | None:
    median = float(values.median())
    lo, hi = TEMPERATURE_MEDIAN_RANGE_C
    if col in TEMPERATURE_COLUMNS and not lo <= median <= hi:
        return f"median {median:.1f} is outside [{lo:g}, {hi:g}] C: is it in kelvin or fahrenheit?"
    if col == "rh_pct" and len(values) >= RH_FRACTION_MIN_VALUES and values.max() <= RH_FRACTION_MAX:
        return f"values are all <= {RH_FRACTION_MAX} (median {median:.2f}): looks like a fraction; give percent"
    if col in MEDIAN_MAX and median > MEDIAN_MAX[col][0]:
        limit, hint = MEDIAN_MAX[col]
        return f"median {median:.1f} is above {limit:g}: {hint}"
    return None


def compute_pet_mm(met: pd.DataFrame, lat: float, elevation_m: float) -> tuple[pd.Series, pd.Series]:
    """(PET mm/d, method per day) with pyet: FAO-56 PM when T, Rs and RH exist, else Hargreaves.

    `met` is indexed by date. Negative FAO-56 values (net condensation on cold nights) are set
    to 0: the model's atmospheric boundary has no condensation flux.
    """
    import pyet

    idx = met.index
    tmax, tmin = _col(met, "tmax_c"), _col(met, "tmin_c")
    tmean = _col(met, "tmean_c").fillna((tmax + tmin) / 2)
    rs, rh, wind = _col(met, "rs_mj_m2"), _col(met, "rh_pct"), _col(met, "wind_ms")
    lat_rad = float(np.deg2rad(lat))
    use_pm = tmax.notna() & tmin.notna() & rs.notna() & rh.notna()
    pm = pd.Series(np.nan, index=idx)
    if use_pm.any():  # pyet rejects an all-missing humidity series, so call it on usable days
        d = use_pm.to_numpy()
        pm_days = pyet.pm_fao56(
            tmean[d], wind[d].fillna(DEFAULT_WIND_MS), rs=rs[d], elevation=float(elevation_m),
            lat=lat_rad, tmax=tmax[d], tmin=tmin[d], rh=rh[d],
        )
        pm[d] = np.asarray(pm_days, float)
    hg = pd.Series(np.asarray(pyet.hargreaves(tmean, tmax, tmin, lat=lat_rad), float), index=idx)
    use_pm &= pm.notna()
    pet = pm.where(use_pm, hg).clip(lower=0.0)
    method = pd.Series(np.where(use_pm, np.where(wind.notna(), "fao56", "fao56_wind2"), "hargreaves"), index=idx)
    method = method.where(pet.notna(), pd.NA)
    return pet, method.astype("string")


def derive_forcing(met: pd.DataFrame, lat: float, elevation_m: float, land_cover: str | None) -> tuple[pd.DataFrame, list[str]]:
    """Model forcing (precip_cm, pet_cm, lai, lst_c + flags) for one site; and notes.

    `met` is indexed by (daily) date with any of MET_COLUMNS.
    """
    notes: list[str] = []
    out = pd.DataFrame(index=met.index)
    out["precip_cm"] = _col(met, "precip_mm") / 10.0

    if "pet_mm" in met.columns and met["pet_mm"].notna().all():
        out["pet_cm"] = _col(met, "pet_mm") / 10.0
        out["pet_method"] = pd.Series("input", index=met.index, dtype="string")
    else:
        pet_mm, method = compute_pet_mm(met, lat, elevation_m)
        if "pet_mm" in met.columns:  # user PET where given, computed elsewhere
            given = _col(met, "pet_mm")
            method = method.where(given.isna(), "input")
            pet_mm = given.fillna(pet_mm)
        out["pet_cm"] = pet_mm / 10.0
        out["pet_method"] = method.astype("string")

    surface = _col(met, "surface_temp_c")
    air = _col(met, "tmean_c").fillna((_col(met, "tmax_c") + _col(met, "tmin_c")) / 2)
    out["lst_c"] = surface.fillna(air)
    out["lst_from_air_temperature"] = surface.isna() & air.notna()

    user_lai = _col(met, "lai")
    need = user_lai.isna()
    if need.any():
        lc = land_cover_class(land_cover)
        if lc is None:
            lc = DEFAULT_LAND_COVER
            notes.append(f"land cover unknown ({land_cover!r}): LAI climatology of {lc}")
        clim = pd.Series(lai_climatology(pd.DatetimeIndex(met.index), lc, lat), index=met.index)
        out["lai"] = user_lai.fillna(clim)
    else:
        out["lai"] = user_lai
    out["lai_from_climatology"] = need
    return out, notes
