"""A small, realistic NOAA USCRN daily01 file generator (no download needed).

Seasonal temperature, radiation and humidity; intermittent rain; 5 cm SWC that wets on rain
and dries between; NOAA's -9999 / -99 missing codes sprinkled in like the real product.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from sptf_ray.data.ingest import USCRN_COLUMNS


def uscrn_daily_frame(wbanno="03047", years=(2019, 2020, 2021), lat=36.6, lon=-97.5,
                      seed=0, missing_swc_days=0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    dates = pd.date_range(f"{years[0]}-01-01", f"{years[-1]}-12-31", freq="D")
    doy = dates.day_of_year.to_numpy()
    season = np.sin(2 * np.pi * (doy - 105) / 365.0)
    tmean = 14 + 12 * season + rng.normal(0, 3, len(dates))
    rain = np.where(rng.random(len(dates)) < 0.25, rng.gamma(0.8, 8.0, len(dates)), 0.0)
    swc = np.empty(len(dates))
    s = 0.25
    for i, p in enumerate(rain):
        s = min(0.42, s + p / 50.0 * (0.45 - s)) - 0.004 * (1 + season[i]) * (s - 0.05)
        swc[i] = s
    df = pd.DataFrame({c: -9999.0 for c in USCRN_COLUMNS}, index=range(len(dates)))
    df["WBANNO"] = wbanno
    df["LST_DATE"] = dates.strftime("%Y%m%d")
    df["CRX_VN"] = "2.422"
    df["LONGITUDE"], df["LATITUDE"] = lon, lat
    df["T_DAILY_MAX"], df["T_DAILY_MIN"] = tmean + 6, tmean - 6
    df["T_DAILY_MEAN"] = tmean
    df["T_DAILY_AVG"] = tmean + 0.3
    df["P_DAILY_CALC"] = rain.round(1)
    df["SOLARAD_DAILY"] = (17 + 9 * season + rng.normal(0, 2, len(dates))).clip(1)
    df["SUR_TEMP_DAILY_TYPE"] = "C"
    df["SUR_TEMP_DAILY_AVG"] = tmean + 1.5
    df["RH_DAILY_AVG"] = (65 - 10 * season + rng.normal(0, 5, len(dates))).clip(10, 100)
    df["SOIL_MOISTURE_5_DAILY"] = swc.round(3)
    df.loc[rng.choice(len(dates), 3, replace=False), "RH_DAILY_AVG"] = -9999.0  # Hargreaves days
    df.loc[rng.choice(len(dates), 2, replace=False), "SUR_TEMP_DAILY_AVG"] = -9999.0  # LST from air
    if missing_swc_days:
        df.loc[rng.choice(len(dates), missing_swc_days, replace=False), "SOIL_MOISTURE_5_DAILY"] = -99.0
    return df


def write_uscrn_txt(path, **kw) -> None:
    """NOAA's whitespace layout, no header."""
    df = uscrn_daily_frame(**kw)
    lines = [" ".join(str(v) for v in row) for row in df.itertuples(index=False)]
    path.write_text("\n".join(lines) + "\n")


def write_uscrn_csv(path, **kw) -> None:
    uscrn_daily_frame(**kw).to_csv(path, index=False)
