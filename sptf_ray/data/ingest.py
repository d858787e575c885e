"""Real stations to a site dataset: ISMN downloads, NOAA USCRN daily files, or your own tables.

Both readers produce, per site, a static row and a daily frame of SWC plus station-unit
meteorology (forcing.MET_COLUMNS); `forcing.derive_forcing` fills what stations lack (flagged),
`validate.validate_sites` does the QC, and `write_site_dataset` writes everything atomically
with a manifest last:

    DIR/sites.parquet, DIR/daily.parquet, DIR/qc_report.parquet, DIR/qc_summary.txt,
    DIR/ingest_config.yaml, DIR/manifest.json

Optional user CSVs (keyed by site_id) complete the stations:
  statics: site_id, sand, silt, clay (%), bulk_density (g/cm3), land_cover, elevation_m, texture_class
  forcing: site_id, date, any of forcing.MET_COLUMNS (e.g. precip_mm from a gridded product)
  lai:     site_id, date, lai

`tables` (any other station data): a daily table already in the schema.py format (CSV or
Parquet: site_id, date, swc, precip_cm, pet_cm, lai, lst_c; optional tair_c, which stands in
for a missing LST) and, as --statics, a static table (site_id, lat, lon, sand, silt, clay,
bulk_density; optional texture_class, land_cover). Both go through the same QC and are written
the same way.
"""
from __future__ import annotations

import glob
import os
import re
import tempfile
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from sptf_ray import storage
from sptf_ray.config import load_config, save_config
from sptf_ray.data import schema
from sptf_ray.data.forcing import MET_COLUMNS, check_station_inputs, derive_forcing
from sptf_ray.data.validate import (SITE_REJECTED, QCConfig, SiteDataset, validate_sites, write_qc_report,
                                    write_site_dataset)

CONFIG_FILE = "ingest_config.yaml"
SOURCES = ("ismn", "uscrn", "tables")
STATIC_USER_COLUMNS = ("sand", "silt", "clay", "bulk_density", "land_cover", "elevation_m", "texture_class")


@dataclass
class IngestConfig:
    source: str  # "ismn", "uscrn" or "tables"
    path: str
    out: str
    statics_csv: str | None = None
    forcing_csv: str | None = None
    lai_csv: str | None = None
    depth_m: float = 0.05  # ISMN: sensors whose interval contains it ...
    max_depth_span_m: float = 0.10  # ... and spans at most this
    qc: QCConfig = field(default_factory=QCConfig)

    def validate(self) -> None:
        if self.source not in SOURCES:
            raise ValueError(f"source must be one of {', '.join(SOURCES)}, got {self.source!r}")
        if self.source == "tables":
            if not self.statics_csv:
                raise ValueError("source 'tables' needs the static table (statics_csv / --statics): "
                                 "site_id, lat, lon, sand, silt, clay, bulk_density")
            given = [name for name in ("forcing_csv", "lai_csv") if getattr(self, name)]
            if given:
                raise ValueError(f"source 'tables': {', '.join(given)} do not apply, the daily table carries "
                                 "precip_cm, pet_cm and lai itself")
        if not (0 < self.depth_m < 1 and 0 <= self.max_depth_span_m <= 1):
            raise ValueError("depth_m must be in (0, 1) m and max_depth_span_m in [0, 1] m")


@dataclass
class StationRecord:
    """One station before forcing derivation: static attributes and daily SWC + met."""

    site_id: str
    lat: float
    lon: float
    elevation_m: float | None
    daily: pd.DataFrame  # index: date; columns: swc and any MET_COLUMNS
    static: dict = field(default_factory=dict)  # sand/silt/clay/bulk_density/land_cover/...
    source: str = ""


# --------------------------------------------------------------------------- USCRN
USCRN_COLUMNS = (
    "WBANNO LST_DATE CRX_VN LONGITUDE LATITUDE T_DAILY_MAX T_DAILY_MIN T_DAILY_MEAN T_DAILY_AVG "
    "P_DAILY_CALC SOLARAD_DAILY SUR_TEMP_DAILY_TYPE SUR_TEMP_DAILY_MAX SUR_TEMP_DAILY_MIN "
    "SUR_TEMP_DAILY_AVG RH_DAILY_MAX RH_DAILY_MIN RH_DAILY_AVG SOIL_MOISTURE_5_DAILY "
    "SOIL_MOISTURE_10_DAILY SOIL_MOISTURE_20_DAILY SOIL_MOISTURE_50_DAILY SOIL_MOISTURE_100_DAILY "
    "SOIL_TEMP_5_DAILY SOIL_TEMP_10_DAILY SOIL_TEMP_20_DAILY SOIL_TEMP_50_DAILY SOIL_TEMP_100_DAILY"
).split()
USCRN_MISSING = (-9999.0, -99.0, -99.000)
_USCRN_TO_MET = {
    "P_DAILY_CALC": "precip_mm",
    "T_DAILY_MAX": "tmax_c",
    "T_DAILY_MIN": "tmin_c",
    "SOLARAD_DAILY": "rs_mj_m2",
    "RH_DAILY_AVG": "rh_pct",
    "SUR_TEMP_DAILY_AVG": "surface_temp_c",
}


def read_uscrn_file(path: str) -> pd.DataFrame:
    """One USCRN daily01 file (NOAA whitespace layout, or CSV with the same column header)."""
    # Decoding and empty-file errors from open/pandas do not name the file; in a folder of
    # station-years the user needs to know which one.
    try:
        df = _read_uscrn_table(path)
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not UTF-8 text (byte {exc.object[exc.start:exc.start + 1]!r} at "
                         f"offset {exc.start}); USCRN files are ASCII, save it as UTF-8") from exc
    except pd.errors.EmptyDataError as exc:
        raise ValueError(f"{path}: empty file, not a USCRN daily file") from exc
    needed = ["WBANNO", "LST_DATE", "LONGITUDE", "LATITUDE", "T_DAILY_MAX", "T_DAILY_MIN", "P_DAILY_CALC",
              "SOIL_MOISTURE_5_DAILY"]
    missing = [c for c in needed if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: missing USCRN column(s): {', '.join(missing)}")
    return df


def _read_uscrn_table(path: str) -> pd.DataFrame:
    # utf-8-sig: CSVs saved by spreadsheets start with a BOM that would otherwise glue onto WBANNO
    with open(path, encoding="utf-8-sig") as f:
        first = f.readline()
    if "WBANNO" in first.upper():
        df = pd.read_csv(path, sep=None, engine="python", encoding="utf-8-sig",
                         dtype={"WBANNO": str, "LST_DATE": str})
        df.columns = [c.strip().upper() for c in df.columns]
        return df
    df = pd.read_csv(path, sep=r"\s+", header=None, dtype=str, engine="python", encoding="utf-8-sig")
    if df.shape[1] != len(USCRN_COLUMNS):
        raise ValueError(f"{path}: {df.shape[1]} columns, the USCRN daily01 layout has {len(USCRN_COLUMNS)}")
    df.columns = USCRN_COLUMNS
    return df


def _uscrn_station(df: pd.DataFrame, path: str) -> StationRecord:
    wbanno = str(df["WBANNO"].iloc[0]).strip()
    if df["WBANNO"].astype(str).str.strip().nunique() != 1:
        raise ValueError(f"{path}: several stations (WBANNO) in one file")
    num = {c: pd.to_numeric(df[c], errors="coerce").replace(list(USCRN_MISSING), np.nan)
           for c in df.columns if c not in ("WBANNO", "LST_DATE", "SUR_TEMP_DAILY_TYPE")}
    dates = pd.to_datetime(df["LST_DATE"].astype(str).str.strip(), format="%Y%m%d", errors="coerce")
    if dates.isna().any():
        raise ValueError(f"{path}: unreadable LST_DATE on {int(dates.isna().sum())} rows")
    daily = pd.DataFrame(index=pd.DatetimeIndex(dates, name="date"))
    daily["swc"] = num["SOIL_MOISTURE_5_DAILY"].to_numpy()
    for src, dst in _USCRN_TO_MET.items():
        if src in num:
            daily[dst] = num[src].to_numpy()
    # T_DAILY_AVG (mean of 5-min values) is the better daily mean; (max+min)/2 otherwise.
    tavg = num.get("T_DAILY_AVG", pd.Series(np.nan, index=df.index))
    tmean = num.get("T_DAILY_MEAN", pd.Series(np.nan, index=df.index))
    daily["tmean_c"] = tavg.fillna(tmean).to_numpy()
    lat, lon = num["LATITUDE"].median(), num["LONGITUDE"].median()
    return StationRecord(f"uscrn:{wbanno}", float(lat), float(lon), None, daily, {}, "uscrn")


def read_uscrn(path: str) -> list[StationRecord]:
    """USCRN daily files under `path` (a file or a directory, e.g. one file per station-year)."""
    files = [path] if os.path.isfile(path) else sorted(
        p for p in glob.glob(os.path.join(path, "**", "*"), recursive=True)
        if os.path.isfile(p) and p.lower().endswith((".txt", ".csv"))
    )
    if not files:
        raise FileNotFoundError(f"no USCRN daily files (.txt/.csv) under {path}")
    per_station: dict[str, list[StationRecord]] = {}
    for p in files:
        rec = _uscrn_station(read_uscrn_file(p), p)
        per_station.setdefault(rec.site_id, []).append(rec)
    stations = []
    for sid, recs in sorted(per_station.items()):
        daily = pd.concat([r.daily for r in recs]).sort_index()
        stations.append(StationRecord(sid, recs[0].lat, recs[0].lon, None, daily, {}, "uscrn"))
    return stations


# --------------------------------------------------------------------------- ISMN
_AREA_SENSOR = re.compile(r"cosmic|crns|cosmos|gnss|gps|radiometer", re.IGNORECASE)
_ISMN_MET = {"precipitation": "precip_mm", "air_temperature": "air", "surface_temperature": "surface_temp_c"}


def is_point_sensor_at_depth(instrument: str, network: str, start: float, end: float,
                             depth_m: float = 0.05, max_span_m: float = 0.10) -> bool:
    """DESIGN section 0: depth interval contains depth_m, spans <= max_span_m, not an area sensor."""
    if _AREA_SENSOR.search(str(instrument)) or _AREA_SENSOR.search(str(network)):
        return False
    lo, hi = min(start, end), max(start, end)
    return lo <= depth_m + 1e-9 and hi >= depth_m - 1e-9 and (hi - lo) <= max_span_m + 1e-9


def _ismn_good(df: pd.DataFrame, var: str) -> pd.Series:
    """Values not flagged by ISMN's QC: C.. (outside plausible range), D.. (dubious) and M
    (missing) are dropped; G (good) and U (unchecked, older downloads) are kept."""
    values = pd.to_numeric(df[var], errors="coerce")
    flag = df.get(f"{var}_flag")
    if flag is not None:
        values = values.where(~flag.astype(str).str.strip().str[:1].isin(["C", "D", "M"]))
    return values


def _ismn_static(station) -> dict:
    meta = station.metadata
    out = {}
    for key, name in (("sand_fraction", "sand"), ("silt_fraction", "silt"), ("clay_fraction", "clay")):
        try:
            out[name] = float(meta[key].val)  # ISMN: % by weight, 0-0.3 m (HWSD/SoilGrids)
        except Exception:
            out[name] = np.nan
    for key in ("lc_2010", "lc_2005", "lc_2000"):
        try:
            out["land_cover"] = meta[key].val
            break
        except Exception:
            continue
    return out


def read_ismn(path: str, depth_m: float = 0.05, max_span_m: float = 0.10) -> tuple[list[StationRecord], list[dict]]:
    """ISMN stations (header+values or ceop, folder or zip) with a 5 cm point sensor.

    Returns (stations, skipped) where skipped lists stations without a usable sensor and why.
    Hourly values (UTC) become daily means; precipitation daily sums.
    """
    from ismn.interface import ISMN_Interface

    if not os.path.exists(path):
        raise FileNotFoundError(f"no ISMN data at {path}")
    if os.path.isfile(path) and not path.lower().endswith(".zip"):
        # ISMN_Interface would fail with NotADirectoryError: it reads NETWORK/STATION folders
        raise ValueError(f"{path} is a single file: PATH must be the ISMN download folder "
                         f"(NETWORK/STATION/*.stm) or its zip")
    stations, skipped = [], []
    # ISMN writes a metadata cache; keep it out of the user's download folder.
    with tempfile.TemporaryDirectory(prefix="sptf-ismn-meta-") as meta_dir:
        try:
            ds = ISMN_Interface(path, meta_path=meta_dir, parallel=False)
        except TypeError as exc:  # ismn 1.5 fails this way when it finds no station file
            raise ValueError(
                f"no ISMN station files under {path} (expected NETWORK/STATION/*.stm, or the zip)"
            ) from exc
        except ValueError as exc:  # pandas' "No objects to concatenate": every file was unreadable
            # (ISMN's own log of why lives in meta_dir, deleted on exit, so say it here)
            raise ValueError(
                f"no readable ISMN station file under {path} (expected the header+values format: "
                f"a header line, then 'YYYY/MM/DD HH:MM value flag flag' lines; or ceop): {exc}"
            ) from exc
        for net in ds.collection.iter_networks():
            for st in net.iter_stations():
                rec, why = _ismn_station(net.name, st, depth_m, max_span_m)
                if rec is None:
                    skipped.append({"site_id": f"{net.name}:{st.name}", "reason": why})
                else:
                    stations.append(rec)
    return stations, skipped


def _ismn_station(network: str, st, depth_m: float, max_span_m: float):
    swc_series, met = [], {}
    for sensor in st.iter_sensors():
        var = sensor.variable
        if var == "soil_moisture":
            if not is_point_sensor_at_depth(sensor.instrument, network, sensor.depth.start,
                                            sensor.depth.end, depth_m, max_span_m):
                continue
            swc_series.append(_ismn_good(sensor.read_data(), var))
        elif var in _ISMN_MET and var not in met:
            met[var] = _ismn_good(sensor.read_data(), var)
    if not swc_series:
        return None, (f"no soil-moisture point sensor whose depth interval contains {depth_m} m "
                      f"and spans <= {max_span_m} m (area sensors such as cosmic-ray excluded)")
    # Several 5 cm sensors: daily mean of each, then their mean.
    swc = pd.concat([s.resample("D").mean() for s in swc_series], axis=1).mean(axis=1)
    daily = pd.DataFrame({"swc": swc})
    if "precipitation" in met:
        daily["precip_mm"] = met["precipitation"].resample("D").sum(min_count=1)
    if "air_temperature" in met:
        air = met["air_temperature"].resample("D")
        daily["tmean_c"], daily["tmax_c"], daily["tmin_c"] = air.mean(), air.max(), air.min()
    if "surface_temperature" in met:
        daily["surface_temp_c"] = met["surface_temperature"].resample("D").mean()
    daily.index = pd.DatetimeIndex(daily.index.normalize(), name="date")
    rec = StationRecord(f"{network}:{st.name}", float(st.lat), float(st.lon),
                        float(st.elev) if st.elev is not None else None, daily, _ismn_static(st), "ismn")
    return rec, ""


# --------------------------------------------------------------------------- user files
def _read_keyed_csv(path: str | None, what: str, dated: bool) -> pd.DataFrame | None:
    if not path:
        return None
    df = pd.read_csv(path, dtype={"site_id": str})
    need = ["site_id"] + (["date"] if dated else [])
    missing = [c for c in need if c not in df.columns]
    if missing:
        raise ValueError(f"{what} file {path} lacks column(s): {', '.join(missing)}")
    if dated:
        df["date"] = pd.to_datetime(df["date"])
        unknown = [c for c in df.columns if c not in ("site_id", "date") and c not in MET_COLUMNS]
        if unknown:
            raise ValueError(f"{what} file {path}: unknown column(s) {unknown}; known: {sorted(MET_COLUMNS)}")
    else:
        unknown = [c for c in df.columns if c != "site_id" and c not in STATIC_USER_COLUMNS]
        if unknown:
            raise ValueError(f"{what} file {path}: unknown column(s) {unknown}; known: {list(STATIC_USER_COLUMNS)}")
    return df


def _merge_user_daily(daily: pd.DataFrame, user: pd.DataFrame | None, site_id: str) -> pd.DataFrame:
    """User daily values override station values where given (e.g. gridded precipitation)."""
    if user is None:
        return daily
    rows = user[user["site_id"] == site_id].drop(columns="site_id").set_index("date")
    if rows.empty:
        return daily
    if rows.index.duplicated().any():
        raise ValueError(f"user daily file: duplicate dates for site {site_id}")
    merged = daily.reindex(daily.index.union(rows.index))
    for col in rows.columns:
        given = rows[col].reindex(merged.index)
        merged[col] = given.combine_first(merged[col]) if col in merged else given
    return merged


# --------------------------------------------------------------------------- assembly
def stations_to_frames(stations: list[StationRecord], statics: pd.DataFrame | None = None,
                       forcing: pd.DataFrame | None = None, lai: pd.DataFrame | None = None):
    """(static_df, daily_df, notes per site) in the schema.py layout, before QC."""
    user_static = statics.set_index("site_id") if statics is not None else None
    if user_static is not None and user_static.index.duplicated().any():
        raise ValueError("statics file: duplicate site_id rows")
    static_rows, daily_frames, notes = [], [], {}
    for rec in stations:
        attrs = dict(rec.static)
        if user_static is not None and rec.site_id in user_static.index:
            given = user_static.loc[rec.site_id]
            attrs.update({k: v for k, v in given.items() if not pd.isna(v)})
        elevation = attrs.pop("elevation_m", rec.elevation_m)
        site_notes = []
        if elevation is None or pd.isna(elevation):
            elevation = 0.0  # only the psychrometric constant of FAO-56 depends on it
            site_notes.append("elevation unknown: 0 m used for FAO-56 air pressure")
        daily = _merge_user_daily(rec.daily, forcing, rec.site_id)
        daily = _merge_user_daily(daily, lai, rec.site_id)
        derived, forcing_notes = _site_forcing(rec, daily, float(elevation), attrs.get("land_cover"))
        frame = derived.assign(swc=daily["swc"], site_id=rec.site_id, swc_interpolated=False)
        daily_frames.append(frame.rename_axis("date").reset_index())
        notes[rec.site_id] = site_notes + forcing_notes
        lc = attrs.get("land_cover")
        static_rows.append({
            "site_id": rec.site_id, "lat": rec.lat, "lon": rec.lon,
            "sand": attrs.get("sand", np.nan), "silt": attrs.get("silt", np.nan),
            "clay": attrs.get("clay", np.nan), "bulk_density": attrs.get("bulk_density", np.nan),
            "texture_class": attrs.get("texture_class"),
            "land_cover": None if lc is None or pd.isna(lc) else str(lc), "source": rec.source,
        })
    cols = list(schema.DAILY_COLUMNS) + list(schema.DAILY_FLAG_COLUMNS)
    daily_df = pd.concat(daily_frames, ignore_index=True)[cols] if daily_frames else pd.DataFrame(columns=cols)
    return pd.DataFrame(static_rows), daily_df, notes


def _site_forcing(rec: StationRecord, daily: pd.DataFrame, elevation_m: float, land_cover):
    """derive_forcing after a unit check, with the site named in any error: pyet raises bare
    Exceptions (e.g. "radiation ... greater than 100 MJ/m2d") that name neither site nor file."""
    check_station_inputs(daily, rec.lat, rec.site_id)
    try:
        return derive_forcing(daily, rec.lat, elevation_m, land_cover)
    except Exception as exc:
        raise ValueError(f"site {rec.site_id}: forcing/PET computation failed: {exc}") from exc


def _unmatched_user_ids(stations: list[StationRecord], **user: pd.DataFrame | None) -> dict[str, list[str]]:
    """Per user file, the site_ids that match no station (their rows would be silently unused)."""
    known = {s.site_id for s in stations}
    out = {}
    for name, df in user.items():
        ids = sorted(set(df["site_id"].dropna().astype(str)) - known) if df is not None else []
        if ids:
            out[name] = ids
    return out


def _raise_no_site_kept(report: pd.DataFrame, out: str, unmatched: dict) -> None:
    """Write only the QC report (the user needs the reasons) and no dataset: an empty dataset
    with a valid manifest would let later steps start on nothing."""
    storage.makedirs(out)
    for earlier in (storage.MANIFEST_NAME, schema.STATIC_FILE, schema.DAILY_FILE):  # an earlier ingest's
        storage.remove(storage.join(out, earlier))
    write_qc_report(report, out)
    reason = report["reason"].fillna("")
    rejected = report[(report["status"] == "rejected") & (reason != "") & (reason != SITE_REJECTED)]
    # one reason per site, a site-year's own first: it says what was missing, the site row only
    # "no years"; but a fine year at a site rejected for its statics says only "site rejected"
    first = rejected.sort_values("level", ascending=False, kind="stable").drop_duplicates("site_id")
    reasons = [f"{r.site_id}{'' if pd.isna(r.year) else ' ' + str(r.year)}: {r.reason}"
               for r in first.head(3).itertuples()]
    n_sites = int((report["level"] == "site").sum())
    msg = (f"no site passed QC (0 of {n_sites} kept); see {storage.join(out, schema.QC_SUMMARY_FILE)}. "
           f"First rejection reasons: " + " | ".join(reasons))
    if unmatched:
        msg += f". Note: user-file site_id(s) matching no station: {({k: v[:5] for k, v in unmatched.items()})}"
    raise ValueError(msg)


def ingest(config: IngestConfig | dict) -> SiteDataset:
    """Read stations, derive forcing, run QC, write the site dataset under config.out."""
    cfg = load_config(IngestConfig, config)
    if cfg.source == "tables":
        return _ingest_tables(cfg)
    skipped: list[dict] = []
    if cfg.source == "uscrn":
        stations = read_uscrn(cfg.path)
    else:
        stations, skipped = read_ismn(cfg.path, cfg.depth_m, cfg.max_depth_span_m)
    if not stations:
        raise ValueError(f"no usable station in {cfg.path}: " + "; ".join(
            f"{s['site_id']}: {s['reason']}" for s in skipped))
    statics = _read_keyed_csv(cfg.statics_csv, "statics", dated=False)
    forcing = _read_keyed_csv(cfg.forcing_csv, "forcing", dated=True)
    lai = _read_keyed_csv(cfg.lai_csv, "lai", dated=True)
    unmatched = _unmatched_user_ids(stations, statics=statics, forcing=forcing, lai=lai)
    static_df, daily_df, notes = stations_to_frames(stations, statics, forcing, lai)
    clean_static, clean_daily, report = validate_sites(static_df, daily_df, cfg.qc)
    report = _add_ingest_notes(report, notes, skipped)
    if clean_static.empty:
        _raise_no_site_kept(report, cfg.out, unmatched)
    dataset = SiteDataset(clean_static, clean_daily, report, {
        "source": cfg.source, "input": cfg.path, "unmatched_user_site_ids": unmatched})
    storage.makedirs(cfg.out)
    save_config(cfg, storage.join(cfg.out, CONFIG_FILE))
    write_site_dataset(dataset, cfg.out, {"config_file": CONFIG_FILE})
    return dataset


def read_table(uri: str, what: str) -> pd.DataFrame:
    """A CSV or Parquet table (by extension; local path or URI), site_id read as text."""
    if not storage.exists(uri):
        raise FileNotFoundError(f"{what} table {uri} does not exist")
    if uri.lower().endswith((".parquet", ".pq")):
        df = storage.read_parquet(uri)
    elif uri.lower().endswith(".csv"):
        import io

        df = pd.read_csv(io.StringIO(storage.read_text(uri)), dtype={"site_id": str})
    else:
        raise ValueError(f"{what} table {uri}: give a .csv or .parquet file")
    if "site_id" in df.columns:
        df["site_id"] = df["site_id"].astype(str)
    return df


def _ingest_tables(cfg: IngestConfig) -> SiteDataset:
    """Your own daily and static tables (schema.py columns): QC, then written like a station ingest."""
    static_df, daily_df = read_table(cfg.statics_csv, "static"), read_table(cfg.path, "daily")
    clean_static, clean_daily, report = validate_sites(static_df, daily_df, cfg.qc)
    if clean_static.empty:
        _raise_no_site_kept(report, cfg.out, {})
    dataset = SiteDataset(clean_static, clean_daily, report, {"source": "tables", "input": cfg.path,
                                                             "statics": cfg.statics_csv})
    storage.makedirs(cfg.out)
    save_config(cfg, storage.join(cfg.out, CONFIG_FILE))
    write_site_dataset(dataset, cfg.out, {"config_file": CONFIG_FILE})
    return dataset


def _add_ingest_notes(report: pd.DataFrame, notes: dict, skipped: list[dict]) -> pd.DataFrame:
    report = report.copy()
    site_level = report["level"] == "site"
    for sid, site_notes in notes.items():
        if not site_notes:
            continue
        idx = report.index[site_level & (report["site_id"] == sid)]
        for i in idx:
            joined = "; ".join(n for n in [report.at[i, "note"], *site_notes] if n)
            report.at[i, "note"] = joined
    extra = pd.DataFrame([
        {"site_id": s["site_id"], "year": pd.NA, "level": "site", "status": "rejected",
         "reason": s["reason"], "note": "", "n_days_present": pd.NA, "n_swc_missing": pd.NA,
         "n_swc_interpolated": pd.NA} for s in skipped
    ], columns=report.columns)
    if len(extra):
        report = pd.concat([report, extra.astype(report.dtypes.to_dict())], ignore_index=True)
    return report
