"""The site dataset format (DESIGN.md section 2): two Parquet tables.

- static table (`sites.parquet`): one row per site.
- daily table (`daily.parquet`): one row per site and day.

Units: cm, days, cm3/cm3, degrees C, %, g/cm3.
"""
from __future__ import annotations

STATIC_FILE = "sites.parquet"
DAILY_FILE = "daily.parquet"

# column -> pandas dtype; optional columns may be missing or NaN (with a flag).
STATIC_COLUMNS = {
    "site_id": "string",
    "lat": "float64",
    "lon": "float64",
    "sand": "float64",  # %
    "silt": "float64",  # %
    "clay": "float64",  # %
    "bulk_density": "float64",  # g/cm3
}
STATIC_OPTIONAL_COLUMNS = {
    "texture_class": "string",  # USDA class name, e.g. "sandy loam"
    "land_cover": "string",  # IGBP code, e.g. "GRA"
    "source": "string",  # "virtual", "ismn", "uscrn", ...
}

# Static flags: which static attributes were unavailable at ingest (comma-separated names,
# "" when complete). Training and `predict` reject a site whose flag is not empty.
STATIC_FLAG_COLUMNS = {
    "static_missing": "string",
}

DAILY_COLUMNS = {
    "site_id": "string",
    "date": "datetime64[ns]",
    "swc": "float64",  # cm3/cm3 at 5 cm
    "precip_cm": "float64",  # cm/d
    "pet_cm": "float64",  # cm/d
    "lai": "float64",  # m2/m2
    "lst_c": "float64",  # land-surface temperature, C
}
# Optional daily columns: read when present, not carried into the QC'd table.
DAILY_OPTIONAL_COLUMNS = {
    "tair_c": "float64",  # air temperature, C: stands in for a missing LST (frozen mask)
}
# Flags recording every gap fill and substitution (True = value was filled/substituted).
DAILY_FLAG_COLUMNS = {
    "swc_interpolated": "bool",
    "lst_from_air_temperature": "bool",
    "lai_from_climatology": "bool",
    "pet_method": "string",  # "input", "fao56", "fao56_wind2", "hargreaves"
}

# QC report (one row per site and one per site-year; see sptf_ray.data.validate).
QC_REPORT_FILE = "qc_report.parquet"
QC_SUMMARY_FILE = "qc_summary.txt"
DAYS_PER_YEAR = 365  # 31 Dec of leap years is dropped (DESIGN section 0)
