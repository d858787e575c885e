"""Site dataset loading, quality control and writing (DESIGN sections 0 and 2, paper 2.5).

QC works per site-year (365-day years: 31 Dec of leap years is dropped). A year is rejected
when any rule fails; a site is kept when it has at least two consecutive accepted years.
Every removed site or year appears in the report with its reason: nothing is dropped silently.

Rules, per site:
  - a row in the static table (exactly one), lat/lon present and in range;
  - texture, when given, in [0, 100] % and summing to 100 +- `texture_tolerance_pct`;
    bulk density, when given, in (0, 2.65] g/cm3 (2.65 = quartz particle density);
  - missing static attributes do not reject a site: they are NaN and named in `static_missing`.
Per site-year:
  - no duplicate dates;
  - SWC within [0, 1] (a hint is given when the values look like percent);
  - precipitation, PET and LAI present, finite and non-negative on every day; no infinite SWC or LST;
  - at most `max_missing_fraction` of the 365 SWC days missing; shorter gaps are linearly
    interpolated within the year (edges take the nearest value) and flagged `swc_interpolated`.
Unsorted dates are sorted, and noted in the report. A missing LST takes the day's air
temperature when the daily table has a `tair_c` column (flagged `lst_from_air_temperature`).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from sptf_ray import storage
from sptf_ray.data import schema

ACCEPTED = "accepted"
REJECTED = "rejected"
SITE_REJECTED = "site rejected"  # the reason of a fine year at a site rejected for itself (its statics)
REPORT_COLUMNS = {
    "site_id": "string",
    "year": "Int64",  # <NA> on site-level rows
    "level": "string",  # "site" or "site-year"
    "status": "string",  # "accepted" or "rejected"
    "reason": "string",  # why rejected ("" when accepted)
    "note": "string",  # non-fatal observations (sorted dates, missing statics, ...)
    "n_days_present": "Int64",
    "n_swc_missing": "Int64",
    "n_swc_interpolated": "Int64",
}
TEXTURE = ("sand", "silt", "clay")
STATIC_ATTRIBUTES = ("sand", "silt", "clay", "bulk_density")
MAX_BULK_DENSITY = 2.65
_FORCING = ("precip_cm", "pet_cm", "lai")


@dataclass
class QCConfig:
    """Thresholds of the quality control."""

    max_missing_fraction: float = 0.20  # paper 2.5
    texture_tolerance_pct: float = 2.0
    min_consecutive_years: int = 2  # one historical + one target year

    def validate(self) -> None:
        if not 0.0 <= self.max_missing_fraction < 1.0:
            raise ValueError(f"max_missing_fraction must be in [0, 1), got {self.max_missing_fraction}")
        if self.texture_tolerance_pct < 0:
            raise ValueError("texture_tolerance_pct must be >= 0")
        if self.min_consecutive_years < 1:
            raise ValueError("min_consecutive_years must be >= 1")


@dataclass
class SiteDataset:
    """The two tables of a site dataset, plus the QC report when one was produced."""

    static: pd.DataFrame
    daily: pd.DataFrame
    report: pd.DataFrame | None = None
    extra: dict = field(default_factory=dict)

    @property
    def site_ids(self) -> list[str]:
        return sorted(self.static["site_id"].astype(str).tolist())


# --------------------------------------------------------------------------- columns
def _require_columns(df: pd.DataFrame, required, table: str) -> None:
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise ValueError(f"{table} table is missing required column(s): {', '.join(missing)}")


def _as_dtypes(df: pd.DataFrame, dtypes: dict[str, str], table: str) -> pd.DataFrame:
    out = df.copy()
    for col, dtype in dtypes.items():
        if col not in out.columns:
            continue
        try:
            if dtype.startswith("datetime64"):
                out[col] = _to_datetime(out, col)
            elif dtype == "bool":
                if out[col].isna().any():
                    raise ValueError("contains missing values")
                out[col] = out[col].astype(bool)
            else:
                out[col] = out[col].astype(dtype)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{table} column {col!r} cannot be read as {dtype}: {exc}") from exc
    return out


def _to_datetime(df: pd.DataFrame, col: str) -> pd.Series:
    """df[col] as datetime64[ns]; an unreadable entry is named with its row (and site), not
    left to pandas' format advice."""
    try:
        return pd.to_datetime(df[col]).astype("datetime64[ns]")
    except (TypeError, ValueError):
        parsed = pd.to_datetime(df[col], errors="coerce", format="mixed")
        bad = df.index[parsed.isna() & df[col].notna()]
        if not len(bad):
            raise
        where = f"row {df.index.get_loc(bad[0]) + 1}" + (f", site {df.at[bad[0], 'site_id']}" if "site_id" in df else "")
        raise ValueError(f"{df.at[bad[0], col]!r} ({where}) is not a date; {len(bad)} such entr"
                         f"{'y' if len(bad) == 1 else 'ies'}") from None


def normalize_static(static_df: pd.DataFrame) -> pd.DataFrame:
    """Static table with schema dtypes; absent attribute columns are added as NaN."""
    _require_columns(static_df, ("site_id", "lat", "lon"), "static")
    out = static_df.copy()
    for col in STATIC_ATTRIBUTES:
        if col not in out.columns:
            out[col] = np.nan  # optional at ingest: recorded in static_missing
    dtypes = {**schema.STATIC_COLUMNS, **schema.STATIC_OPTIONAL_COLUMNS, **schema.STATIC_FLAG_COLUMNS}
    return _as_dtypes(out, dtypes, "static")


def normalize_daily(daily_df: pd.DataFrame) -> pd.DataFrame:
    """Daily table with schema dtypes; absent flag columns get their 'not substituted' value."""
    _require_columns(daily_df, list(schema.DAILY_COLUMNS), "daily")
    out = daily_df.copy()
    for col, dtype in schema.DAILY_FLAG_COLUMNS.items():
        if col not in out.columns:
            out[col] = "input" if col == "pet_method" else False
    dtypes = {**schema.DAILY_COLUMNS, **schema.DAILY_OPTIONAL_COLUMNS, **schema.DAILY_FLAG_COLUMNS}
    return _lst_from_air_temperature(_as_dtypes(out, dtypes, "daily"))


def _lst_from_air_temperature(daily: pd.DataFrame) -> pd.DataFrame:
    """Missing LST takes the day's air temperature (`tair_c`, when the table has it), flagged in
    `lst_from_air_temperature`, so that every frozen mask downstream sees the same days."""
    if "tair_c" not in daily.columns:
        return daily
    fill = daily["lst_c"].isna() & daily["tair_c"].notna()
    if fill.any():
        daily = daily.assign(lst_c=daily["lst_c"].fillna(daily["tair_c"]),
                             lst_from_air_temperature=daily["lst_from_air_temperature"] | fill)
    return daily


# --------------------------------------------------------------------------- calendar
def drop_leap_dec31(daily: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """Rows without 31 Dec of leap years (365-day years), and how many were dropped."""
    d = daily["date"]
    mask = d.dt.is_leap_year & (d.dt.month == 12) & (d.dt.day == 31)
    return daily.loc[~mask], int(mask.sum())


def year_calendar(year: int) -> pd.DatetimeIndex:
    """The 365 dates of a model year."""
    days = pd.date_range(f"{year}-01-01", periods=schema.DAYS_PER_YEAR, freq="D")
    return days


YEAR_COLUMNS = ("swc", "precip_cm", "pet_cm", "lai", "lst_c")  # what inversion and scoring read of a year


def site_year_blocks(daily: pd.DataFrame, columns=YEAR_COLUMNS, complete_only: bool = True) -> dict[str, dict[int, np.ndarray]]:
    """{site: {calendar year: the year's `columns` as an (n_days, len(columns)) float64 array in
    date order}}, 31 Dec of leap years left out; with complete_only, only the years holding all
    365 days. The one place a daily table is cut into model years (whole table at once: per
    site, pandas' fixed costs made 3,000 sites take 14 s)."""
    days, _ = drop_leap_dec31(daily.sort_values(["site_id", "date"], kind="stable"))
    values = days[list(columns)].to_numpy(np.float64)
    sites = days["site_id"].astype(str).to_numpy()
    years = days["date"].dt.year.to_numpy()
    starts = np.flatnonzero(np.r_[True, (sites[1:] != sites[:-1]) | (years[1:] != years[:-1])]) if len(years) \
        else np.array([], dtype=np.int64)
    ends = np.r_[starts[1:], len(years)]
    out: dict[str, dict[int, np.ndarray]] = {}
    for a, b in zip(starts, ends):
        if b - a == schema.DAYS_PER_YEAR or not complete_only:
            out.setdefault(str(sites[a]), {})[int(years[a])] = values[a:b]
    return out


def frozen_mask(lst_c) -> np.ndarray:
    """True where a day counts in a loss or a score: LST >= 0 C (paper eq. 3's bLST). A missing
    LST counts: QC has already put air temperature where LST was missing (DESIGN section 0)."""
    lst = np.asarray(lst_c, dtype=np.float64)
    return ~(lst < 0.0)  # NaN compares False, so it counts


# --------------------------------------------------------------------------- static QC
def _check_static_row(row: pd.Series, cfg: QCConfig) -> tuple[list[str], list[str]]:
    """(reasons to reject, names of missing attributes) for one static row."""
    reasons: list[str] = []
    lat, lon = row["lat"], row["lon"]
    if pd.isna(lat) or pd.isna(lon) or not (-90 <= lat <= 90) or not (-180 <= lon <= 180):
        reasons.append(f"lat/lon missing or out of range (lat={lat}, lon={lon})")
    missing = [c for c in STATIC_ATTRIBUTES if pd.isna(row[c])]
    texture = [row[c] for c in TEXTURE]
    if not any(pd.isna(v) for v in texture):
        if any(v < 0 or v > 100 for v in texture):
            reasons.append(f"texture outside [0, 100] % (sand={texture[0]}, silt={texture[1]}, clay={texture[2]})")
        total = float(sum(texture))
        if abs(total - 100.0) > cfg.texture_tolerance_pct:
            hint = " (fractions? give percent)" if abs(total - 1.0) <= 0.05 else ""
            reasons.append(
                f"texture sums to {total:.1f} % (sand+silt+clay must be 100 +- "
                f"{cfg.texture_tolerance_pct:g}){hint}"
            )
    bd = row["bulk_density"]
    if not pd.isna(bd) and not (0 < bd <= MAX_BULK_DENSITY):
        hint = " (kg/m3? give g/cm3)" if 0 < bd / 1000.0 <= MAX_BULK_DENSITY else ""
        reasons.append(f"bulk_density {bd} g/cm3 outside (0, {MAX_BULK_DENSITY}]{hint}")
    return reasons, missing


# --------------------------------------------------------------------------- daily QC
def _count_msg(n: int, what: str) -> str:
    return f"{what} on {n} day{'s' if n != 1 else ''}"


def _year_reasons(year: dict[str, np.ndarray], n_duplicates: int, cfg: QCConfig) -> list[str]:
    """Reasons to reject one site-year, from its 365 days' columns (NaN where a day is missing)."""
    reasons = []
    if n_duplicates:
        reasons.append(_count_msg(n_duplicates, "duplicate dates"))
    for col in ("swc", *_FORCING, "lst_c"):
        n_inf = int(np.isinf(year[col]).sum())
        if n_inf:
            reasons.append(_count_msg(n_inf, f"{col} infinite"))
    swc = year["swc"]
    n_bad = int(((swc < 0) | (swc > 1)).sum())
    if n_bad:
        lo, hi = np.nanmin(swc), np.nanmax(swc)
        msg = f"swc outside [0, 1] {_count_msg(n_bad, '')[1:]} (min {lo:.3g}, max {hi:.3g})"
        if 1 < hi <= 100 and lo >= 0:
            msg += "; looks like percent: divide by 100"
        reasons.append(msg)
    for col in _FORCING:
        n_nan = int(np.isnan(year[col]).sum())
        if n_nan:
            reasons.append(_count_msg(n_nan, f"{col} missing"))
        n_neg = int((year[col] < 0).sum())
        if n_neg:
            reasons.append(_count_msg(n_neg, f"negative {col}"))
    n_missing = int(np.isnan(swc).sum())
    if n_missing > cfg.max_missing_fraction * schema.DAYS_PER_YEAR:
        reasons.append(
            f"swc missing on {n_missing}/{schema.DAYS_PER_YEAR} days "
            f"({100 * n_missing / schema.DAYS_PER_YEAR:.0f} % > {100 * cfg.max_missing_fraction:g} %)"
        )
    return reasons


def _interpolate_gaps(swc: np.ndarray) -> np.ndarray:
    """Linear interpolation of one year's SWC gaps; edge gaps take the nearest value."""
    gaps = np.isnan(swc)
    if not gaps.any() or gaps.all():
        return swc
    days = np.arange(len(swc))
    return np.where(gaps, np.interp(days, days[~gaps], swc[~gaps]), swc)


def _consecutive_runs(years: list[int]) -> list[list[int]]:
    runs: list[list[int]] = []
    for y in sorted(years):
        if runs and y == runs[-1][-1] + 1:
            runs[-1].append(y)
        else:
            runs.append([y])
    return runs


def _no_temperature_note(n_days: int) -> str:
    """A site-year's note on the days neither LST nor air temperature was known: they count."""
    return f"{_count_msg(n_days, 'no LST or air temperature')}: counted as unfrozen" if n_days else ""


def _report_row(site_id, year, level, status, reason="", note="", present=None, missing=None, interp=None):
    return {
        "site_id": site_id, "year": year, "level": level, "status": status, "reason": reason,
        "note": note, "n_days_present": present, "n_swc_missing": missing, "n_swc_interpolated": interp,
    }


def _qc_site_days(site_id: str, days: pd.DataFrame, cfg: QCConfig):
    """(the site's days on its full 365-day-year calendar, SWC gaps of accepted years filled;
    its accepted years; year report rows; site notes) for one site."""
    notes = []
    if not days["date"].is_monotonic_increasing:
        notes.append("dates were not sorted (sorted)")
        days = days.sort_values("date", kind="stable")
    days = days.assign(date=days["date"].dt.normalize())
    days, n_dec31 = drop_leap_dec31(days)
    if n_dec31:
        notes.append(f"dropped 31 Dec of {n_dec31} leap year(s) (365-day years)")
    duplicated = days["date"].duplicated(keep=False)
    dup_per_year = days.loc[duplicated, "date"].dt.year.value_counts().to_dict()
    unique_days = days.loc[~days["date"].duplicated(keep="first")].set_index("date")
    present_per_year = unique_days.index.year.value_counts().to_dict()

    # one reindex of the whole site: year k is rows [365 k, 365 (k + 1))
    years = list(range(int(days["date"].dt.year.min()), int(days["date"].dt.year.max()) + 1))
    full = unique_days.reindex(pd.DatetimeIndex(np.concatenate([year_calendar(y).values for y in years])))
    full["site_id"] = site_id
    for col, dtype in schema.DAILY_FLAG_COLUMNS.items():
        fill = "input" if dtype == "string" else False
        full[col] = full[col].astype(object).where(full[col].notna(), fill).astype(dtype)
    columns = {c: full[c].to_numpy(dtype=float) for c in ("swc", *_FORCING, "lst_c")}
    swc, interpolated = columns["swc"].copy(), full["swc_interpolated"].to_numpy(dtype=bool).copy()

    rows, accepted = [], []
    for k, year in enumerate(years):
        span = slice(k * schema.DAYS_PER_YEAR, (k + 1) * schema.DAYS_PER_YEAR)
        present, n_missing = int(present_per_year.get(year, 0)), int(np.isnan(swc[span]).sum())
        reasons = _year_reasons({c: v[span] for c, v in columns.items()}, int(dup_per_year.get(year, 0)), cfg)
        if reasons:
            rows.append(_report_row(site_id, year, "site-year", REJECTED, "; ".join(reasons), "", present, n_missing, 0))
            continue
        interpolated[span] |= np.isnan(swc[span])
        swc[span] = _interpolate_gaps(swc[span])
        rows.append(_report_row(site_id, year, "site-year", ACCEPTED, "",
                                _no_temperature_note(int(np.isnan(columns["lst_c"][span]).sum())), present, n_missing,
                                int(interpolated[span].sum())))
        accepted.append(year)
    full["swc"], full["swc_interpolated"] = swc, interpolated
    return full.rename_axis("date").reset_index(), accepted, rows, notes


def _sites_needing_no_changes(daily: pd.DataFrame, cfg: QCConfig) -> dict[str, dict[int, tuple[int, int]]]:
    """{site: {year: (flagged SWC days, days without a temperature)}} of the sites whose days QC
    would pass unchanged: sorted, unique, midnight dates on the 365-day calendar, whole years in
    one run of at least `min_consecutive_years`, every SWC and forcing value present and in range,
    no infinite LST. Checked on the whole table at once; `_qc_site_days` (per site, slow) handles
    the rest."""
    if daily.empty:
        return {}
    date = daily["date"]
    site = daily["site_id"].astype(str).to_numpy()
    model_day = date.dt.year.to_numpy(np.int64) * schema.DAYS_PER_YEAR + date.dt.day_of_year.to_numpy(np.int64) - 1
    swc = daily["swc"].to_numpy(float)
    forcing = daily[list(_FORCING)].to_numpy(float)
    day_ok = ((date == date.dt.normalize()).to_numpy() & (date.dt.day_of_year <= schema.DAYS_PER_YEAR).to_numpy()
              & np.isfinite(swc) & (swc >= 0) & (swc <= 1) & np.isfinite(forcing).all(axis=1)
              & (forcing >= 0).all(axis=1) & ~np.isinf(daily["lst_c"].to_numpy(float)))
    same_site = np.r_[False, site[1:] == site[:-1]]
    step_ok = ~same_site | (np.diff(model_day, prepend=0) == 1)
    frame = pd.DataFrame({"site_id": site, "ok": day_ok & step_ok, "day": model_day, "block_start": ~same_site,
                          "flagged": daily["swc_interpolated"].to_numpy(bool),
                          "no_temperature": np.isnan(daily["lst_c"].to_numpy(float))})
    per_site = frame.groupby("site_id", sort=False).agg(ok=("ok", "all"), first=("day", "first"), n=("day", "size"),
                                                       blocks=("block_start", "sum"))
    whole = (per_site["first"] % schema.DAYS_PER_YEAR == 0) & (per_site["n"] % schema.DAYS_PER_YEAR == 0)
    long_enough = per_site["n"] >= cfg.min_consecutive_years * schema.DAYS_PER_YEAR
    clean = per_site.index[per_site["ok"] & whole & long_enough & (per_site["blocks"] == 1)]
    frame = frame[frame["site_id"].isin(clean)]
    counts = frame.groupby(["site_id", frame["day"] // schema.DAYS_PER_YEAR])[["flagged", "no_temperature"]].sum()
    out: dict[str, dict[int, tuple[int, int]]] = {str(sid): {} for sid in clean}
    for (sid, year), flagged, no_temperature in counts.itertuples(name=None):
        out[sid][int(year)] = (int(flagged), int(no_temperature))
    return out


def _unchanged_site_days(site_id: str, days: pd.DataFrame, counts: dict[int, tuple[int, int]]):
    """`_qc_site_days`' result for a site `_sites_needing_no_changes` found clean."""
    rows = [_report_row(site_id, year, "site-year", ACCEPTED, "", _no_temperature_note(n_no_temperature),
                        schema.DAYS_PER_YEAR, 0, n_flagged)
            for year, (n_flagged, n_no_temperature) in sorted(counts.items())]
    return days, sorted(counts), rows, []


def _keep_paired_years(site_id: str, accepted: list[int], rows: list[dict], cfg: QCConfig) -> list[int]:
    """Accepted years inside a run of >= min_consecutive_years; others are rejected in `rows`."""
    kept = [y for run in _consecutive_runs(accepted) if len(run) >= cfg.min_consecutive_years for y in run]
    for row in rows:
        if row["status"] == ACCEPTED and row["year"] not in kept:
            row["status"] = REJECTED
            row["reason"] = (
                f"no run of {cfg.min_consecutive_years} consecutive accepted years contains it "
                "(cannot form a historical/target pair)"
            )
    return kept


# --------------------------------------------------------------------------- public API
def validate_sites(static_df: pd.DataFrame, daily_df: pd.DataFrame, config: QCConfig | dict | None = None):
    """Quality control of a site dataset.

    Returns (clean_static, clean_daily, report_df). clean_daily holds only accepted site-years
    of kept sites, 365 days each, SWC gaps interpolated and flagged; clean_static holds the kept
    sites with `static_missing` naming absent attributes. report_df has one row per site
    (level "site") and per site-year (level "site-year"), each accepted or rejected with a reason.
    Raises ValueError when a required column is missing.
    """
    from sptf_ray.config import load_config

    cfg = load_config(QCConfig, config if config is not None else QCConfig())
    static = normalize_static(static_df)
    daily = normalize_daily(daily_df)

    site_rows, year_rows, kept_static, kept_daily = [], [], [], []
    static_counts = static["site_id"].value_counts()
    daily_groups = {sid: g for sid, g in daily.groupby("site_id", sort=True, observed=True)}
    all_ids = sorted(set(static["site_id"].dropna()) | set(daily_groups))
    if static["site_id"].isna().any() or daily["site_id"].isna().any():
        raise ValueError("site_id must not be missing in the static or the daily table")
    unchanged = _sites_needing_no_changes(daily, cfg)
    unique = static.drop_duplicates("site_id", keep=False)
    static_rows = dict(zip(unique["site_id"], unique.to_dict("records")))  # dicts: Series rows cost ms each

    for sid in all_ids:
        site_reasons, notes = [], []
        n_static = int(static_counts.get(sid, 0))
        static_row = None
        if n_static == 0:
            site_reasons.append("no row in the static table")
        elif n_static > 1:
            site_reasons.append(f"{n_static} rows in the static table (duplicate site_id)")
        else:
            static_row = static_rows[sid]
            reasons, missing = _check_static_row(static_row, cfg)
            site_reasons += reasons
            if missing:
                notes.append(f"static attributes missing: {', '.join(missing)}")
        if sid not in daily_groups:
            site_reasons.append("no rows in the daily table")
            site_rows.append(_report_row(sid, pd.NA, "site", REJECTED, "; ".join(site_reasons), "; ".join(notes)))
            continue

        if sid in unchanged:
            site_days, accepted, rows, day_notes = _unchanged_site_days(sid, daily_groups[sid], unchanged[sid])
        else:
            site_days, accepted, rows, day_notes = _qc_site_days(sid, daily_groups[sid], cfg)
        notes += day_notes
        kept_years = _keep_paired_years(sid, accepted, rows, cfg)
        if site_reasons:
            # Years may be fine, but the site cannot be used: say so on every year too.
            for row in rows:
                if row["status"] == ACCEPTED:
                    row["status"], row["reason"] = REJECTED, SITE_REJECTED
        elif not kept_years:
            n_acc = len(accepted)
            site_reasons.append(
                f"fewer than {cfg.min_consecutive_years} consecutive accepted years "
                f"({n_acc} accepted of {len(rows)})"
            )
        year_rows += rows
        status = REJECTED if site_reasons else ACCEPTED
        site_rows.append(_report_row(sid, pd.NA, "site", status, "; ".join(site_reasons), "; ".join(notes)))
        if status == ACCEPTED:
            kept_static.append({**static_row,
                                "static_missing": ",".join(c for c in STATIC_ATTRIBUTES if pd.isna(static_row[c]))})
            whole_site = sid in unchanged and kept_years == accepted
            kept_daily.append(site_days if whole_site else site_days[site_days["date"].dt.year.isin(kept_years)])

    report = _make_report(site_rows + year_rows)
    clean_static = _finish_static(kept_static, static)
    clean_daily = _finish_daily(kept_daily)
    return clean_static, clean_daily, report


def _make_report(rows: list[dict]) -> pd.DataFrame:
    report = pd.DataFrame(rows, columns=list(REPORT_COLUMNS))
    for col, dtype in REPORT_COLUMNS.items():
        report[col] = report[col].astype(dtype)
    report["reason"] = report["reason"].fillna("")
    report["note"] = report["note"].fillna("")
    level_order = report["level"].map({"site": 0, "site-year": 1})
    report = report.assign(_lvl=level_order).sort_values(["site_id", "_lvl", "year"], kind="stable")
    return report.drop(columns="_lvl").reset_index(drop=True)


def _finish_static(rows: list[dict], template: pd.DataFrame) -> pd.DataFrame:
    cols = list(template.columns)
    if "static_missing" not in cols:
        cols.append("static_missing")
    if rows:
        out = pd.DataFrame(rows).reset_index(drop=True)[cols]
    else:
        out = pd.DataFrame({c: pd.Series(dtype="object") for c in cols})
    dtypes = {**schema.STATIC_COLUMNS, **schema.STATIC_OPTIONAL_COLUMNS, **schema.STATIC_FLAG_COLUMNS}
    return _as_dtypes(out, dtypes, "static").sort_values("site_id").reset_index(drop=True)


def _finish_daily(frames: list[pd.DataFrame]) -> pd.DataFrame:
    cols = list(schema.DAILY_COLUMNS) + list(schema.DAILY_FLAG_COLUMNS)
    if frames:
        out = pd.concat(frames, ignore_index=True)[cols]
    else:
        out = pd.DataFrame({c: pd.Series(dtype="object") for c in cols})
    out = _as_dtypes(out, {**schema.DAILY_COLUMNS, **schema.DAILY_FLAG_COLUMNS}, "daily")
    return out.sort_values(["site_id", "date"]).reset_index(drop=True)


def format_qc_summary(report: pd.DataFrame) -> str:
    """A readable text summary of a QC report: counts, then every rejection with its reason."""
    sites = report[report["level"] == "site"]
    years = report[report["level"] == "site-year"]
    lines = [
        "Site dataset quality control",
        f"sites: {int((sites.status == ACCEPTED).sum())} kept, {int((sites.status == REJECTED).sum())} rejected",
        f"site-years: {int((years.status == ACCEPTED).sum())} accepted, "
        f"{int((years.status == REJECTED).sum())} rejected",
        f"SWC days interpolated in accepted years: "
        f"{int(years.loc[years.status == ACCEPTED, 'n_swc_interpolated'].fillna(0).sum())}",
        "",
        "Rejected sites:",
    ]
    rejected_sites = sites[sites.status == REJECTED]
    lines += [f"  {r.site_id}: {r.reason}" for r in rejected_sites.itertuples()] or ["  (none)"]
    lines += ["", "Rejected site-years:"]
    rejected_years = years[years.status == REJECTED]
    lines += [f"  {r.site_id} {r.year}: {r.reason}" for r in rejected_years.itertuples()] or ["  (none)"]
    noted = sites[sites.note != ""]
    if len(noted):
        lines += ["", "Notes:"] + [f"  {r.site_id}: {r.note}" for r in noted.itertuples()]
    noted_years = years[(years.note != "") & (years.status == ACCEPTED)]
    if len(noted_years):
        lines += ["", "Accepted site-years with notes:"] + [f"  {r.site_id} {r.year}: {r.note}"
                                                           for r in noted_years.itertuples()]
    return "\n".join(lines) + "\n"


def write_qc_report(report: pd.DataFrame, dir_uri) -> list[str]:
    """Write the report as Parquet and a text summary into `dir_uri`; returns the file names."""
    storage.atomic_write_parquet(report, storage.join(dir_uri, schema.QC_REPORT_FILE))
    storage.atomic_write_text(storage.join(dir_uri, schema.QC_SUMMARY_FILE), format_qc_summary(report))
    return [schema.QC_REPORT_FILE, schema.QC_SUMMARY_FILE]


def write_site_dataset(dataset: SiteDataset, dir_uri, extra: dict | None = None) -> dict:
    """Write sites.parquet, daily.parquet (and the QC report) then the manifest, last."""
    storage.atomic_write_parquet(dataset.static, storage.join(dir_uri, schema.STATIC_FILE))
    storage.atomic_write_parquet(dataset.daily, storage.join(dir_uri, schema.DAILY_FILE))
    files = [schema.STATIC_FILE, schema.DAILY_FILE]
    if dataset.report is not None:
        files += write_qc_report(dataset.report, dir_uri)
    return storage.write_manifest(dir_uri, files, {**dataset.extra, **(extra or {})})


def _rejected_years(report: pd.DataFrame) -> dict[str, list[tuple[int, str]]]:
    """{site_id: [(year, reason), ...]} of every site-year QC rejected."""
    out: dict[str, list[tuple[int, str]]] = {}
    for r in report[(report["level"] == "site-year") & (report["status"] != ACCEPTED)].itertuples():
        out.setdefault(str(r.site_id), []).append((int(r.year), str(r.reason)))
    return out


def _site_rows(report: pd.DataFrame, accepted: bool) -> pd.DataFrame:
    """The report's site rows QC accepted (or, with accepted=False, rejected)."""
    rows = report[(report["level"] == "site") & ((report["status"] == ACCEPTED) == accepted)]
    return rows.astype({"site_id": str})


def rejection_reasons(report: pd.DataFrame) -> dict[str, str]:
    """{site_id: why} for each site QC rejected, with its years' own reasons (a unit hint such as
    'looks like percent' is said of a year, not of the site)."""
    years = _rejected_years(report)
    out = {}
    for row in _site_rows(report, accepted=False).itertuples():
        detail = "; ".join(f"{year}: {why}" for year, why in years.get(row.site_id, []) if why and why != SITE_REJECTED)
        out[row.site_id] = f"{row.reason} ({detail})" if detail else str(row.reason)
    return out


def rejected_years_of_kept_sites(report: pd.DataFrame) -> dict[str, list[str]]:
    """{site_id: ["year Y: why", ...]} for the years QC rejected at sites it kept."""
    kept = set(_site_rows(report, accepted=True)["site_id"])
    return {sid: [f"year {year}: {why}" for year, why in years]
            for sid, years in _rejected_years(report).items() if sid in kept}


def require_site_dataset(dir_uri) -> tuple[str, str]:
    """The URIs of a site dataset's site and daily tables; FileNotFoundError naming the one missing."""
    uris = storage.join(dir_uri, schema.STATIC_FILE), storage.join(dir_uri, schema.DAILY_FILE)
    for uri in uris:
        if not storage.exists(uri):
            raise FileNotFoundError(f"site dataset {dir_uri}: missing {uri}")
    return uris


def load_site_dataset(dir_uri, validate: bool = False, config: QCConfig | dict | None = None) -> SiteDataset:
    """Read a site dataset directory (schema.py format).

    Checks required columns (ValueError naming them) and dtypes. A manifest, when present,
    must verify. With `validate=True`, runs `validate_sites` and returns the clean tables
    with the report.
    """
    static_uri, daily_uri = require_site_dataset(dir_uri)
    if storage.exists(storage.join(dir_uri, storage.MANIFEST_NAME)) and not storage.verify_manifest(dir_uri):
        raise ValueError(f"site dataset {dir_uri}: manifest does not verify (incomplete or modified)")
    static = normalize_static(storage.read_parquet(static_uri))
    daily = normalize_daily(storage.read_parquet(daily_uri))
    report_uri = storage.join(dir_uri, schema.QC_REPORT_FILE)
    report = storage.read_parquet(report_uri) if storage.exists(report_uri) else None
    if validate:
        static, daily, report = validate_sites(static, daily, config)
    return SiteDataset(static=static, daily=daily, report=report)
