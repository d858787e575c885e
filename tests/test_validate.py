"""Site data QC: one small dataset that is wrong in exactly one way per test."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from sptf_ray import storage
from sptf_ray.data import schema
from sptf_ray.data.validate import (
    SiteDataset, format_qc_summary, frozen_mask, load_site_dataset, site_year_blocks, validate_sites,
    write_site_dataset,
)


def make_static(ids=("A", "B")) -> pd.DataFrame:
    return pd.DataFrame({
        "site_id": list(ids), "lat": 40.0, "lon": -100.0,
        "sand": 40.0, "silt": 40.0, "clay": 20.0, "bulk_density": 1.4,
    })


def make_daily(ids=("A", "B"), years=(2019, 2020, 2021)) -> pd.DataFrame:
    frames = []
    for k, sid in enumerate(ids):
        dates = pd.date_range(f"{years[0]}-01-01", f"{years[-1]}-12-31", freq="D")
        t = np.arange(len(dates))
        frames.append(pd.DataFrame({
            "site_id": sid, "date": dates,
            "swc": 0.25 + 0.05 * np.sin(t / 30.0 + k),
            "precip_cm": np.where(t % 7 == 0, 1.0, 0.0),
            "pet_cm": 0.3, "lai": 1.5, "lst_c": 10.0,
        }))
    return pd.concat(frames, ignore_index=True)


def year_row(report, sid, year):
    r = report[(report.site_id == sid) & (report.year == year)]
    assert len(r) == 1
    return r.iloc[0]


def site_row(report, sid):
    r = report[(report.site_id == sid) & (report.level == "site")]
    assert len(r) == 1
    return r.iloc[0]


def test_clean_dataset_passes_with_365_day_years():
    static, daily, report = validate_sites(make_static(), make_daily())
    assert static.site_id.tolist() == ["A", "B"]
    assert len(daily) == 2 * 3 * 365
    assert not ((daily.date.dt.year == 2020) & (daily.date.dt.month == 12) & (daily.date.dt.day == 31)).any()
    assert (report.status == "accepted").all()
    assert set(daily.columns) >= set(schema.DAILY_COLUMNS) | set(schema.DAILY_FLAG_COLUMNS)
    assert static.static_missing.tolist() == ["", ""]


def test_missing_columns_named():
    with pytest.raises(ValueError, match="pet_cm"):
        validate_sites(make_static(), make_daily().drop(columns="pet_cm"))
    with pytest.raises(ValueError, match="lat"):
        validate_sites(make_static().drop(columns="lat"), make_daily())


def test_duplicate_dates_reject_that_year():
    daily = make_daily()
    dup = daily[(daily.site_id == "A") & (daily.date == "2021-03-01")]
    _, clean, report = validate_sites(make_static(), pd.concat([daily, dup]))
    assert "duplicate dates" in year_row(report, "A", 2021).reason
    assert year_row(report, "A", 2020).status == "accepted"
    assert 2021 not in clean[clean.site_id == "A"].date.dt.year.unique()


def test_unsorted_dates_sorted_and_noted():
    daily = make_daily().sample(frac=1.0, random_state=0)
    _, clean, report = validate_sites(make_static(), daily)
    assert (report.status == "accepted").all()
    assert "not sorted" in site_row(report, "A").note
    assert clean.groupby("site_id").date.apply(lambda d: d.is_monotonic_increasing).all()


def test_swc_in_percent_rejected_with_hint():
    daily = make_daily()
    daily.loc[daily.site_id == "B", "swc"] *= 100
    static, _, report = validate_sites(make_static(), daily)
    reason = year_row(report, "B", 2019).reason
    assert "outside [0, 1]" in reason and "percent" in reason
    assert site_row(report, "B").status == "rejected"
    assert static.site_id.tolist() == ["A"]


def test_negative_forcing_rejects_year():
    daily = make_daily()
    daily.loc[(daily.site_id == "A") & (daily.date == "2019-05-05"), "precip_cm"] = -0.1
    daily.loc[(daily.site_id == "A") & (daily.date == "2021-05-05"), "pet_cm"] = -0.1
    _, _, report = validate_sites(make_static(), daily)
    assert "negative precip_cm" in year_row(report, "A", 2019).reason
    assert "negative pet_cm" in year_row(report, "A", 2021).reason
    # 2020 alone cannot form a pair: rejected too, with that reason; the site goes
    assert "consecutive" in year_row(report, "A", 2020).reason
    assert site_row(report, "A").status == "rejected"


def test_infinite_values_reject_that_year():
    daily = make_daily()
    daily.loc[(daily.site_id == "A") & (daily.date == "2019-05-05"), "pet_cm"] = np.inf
    daily.loc[(daily.site_id == "B") & (daily.date == "2021-05-05"), "lst_c"] = -np.inf
    _, clean, report = validate_sites(make_static(), daily)
    assert "pet_cm infinite on 1 day" in year_row(report, "A", 2019).reason
    assert "lst_c infinite on 1 day" in year_row(report, "B", 2021).reason
    assert year_row(report, "B", 2020).status == "accepted" and year_row(report, "A", 2020).status == "accepted"
    assert np.isfinite(clean[["precip_cm", "pet_cm", "lai", "lst_c"]].to_numpy()).all()


def test_texture_not_summing_to_100_rejects_site():
    static = make_static()
    static.loc[static.site_id == "A", "clay"] = 30.0  # sums to 110 %
    clean, _, report = validate_sites(static, make_daily())
    assert "texture sums to 110.0" in site_row(report, "A").reason
    assert clean.site_id.tolist() == ["B"]
    assert (report[(report.site_id == "A") & (report.level == "site-year")].status == "rejected").all()


def test_texture_within_tolerance_accepted():
    static = make_static()
    static.loc[static.site_id == "A", "clay"] = 21.5
    _, _, report = validate_sites(static, make_daily())
    assert site_row(report, "A").status == "accepted"


def test_too_many_missing_swc_days_reject_year_short_gaps_interpolated():
    daily = make_daily()
    a = daily.site_id == "A"
    daily.loc[a & (daily.date >= "2019-01-01") & (daily.date < "2019-04-01"), "swc"] = np.nan  # 90 d > 20 %
    daily.loc[a & (daily.date >= "2020-06-01") & (daily.date < "2020-06-11"), "swc"] = np.nan  # 10 d
    _, clean, report = validate_sites(make_static(), daily)
    assert "swc missing on 90/365 days" in year_row(report, "A", 2019).reason
    r2020 = year_row(report, "A", 2020)
    assert r2020.status == "accepted" and r2020.n_swc_interpolated == 10
    a2020 = clean[(clean.site_id == "A") & (clean.date.dt.year == 2020)]
    gap = a2020[a2020.swc_interpolated]
    assert len(gap) == 10 and gap.swc.notna().all()
    before = a2020.loc[a2020.date == "2020-05-31", "swc"].item()
    after = a2020.loc[a2020.date == "2020-06-11", "swc"].item()
    assert gap.swc.between(min(before, after), max(before, after)).all()  # linear, not extrapolated
    assert site_row(report, "A").status == "accepted"  # 2020-2021 still form a pair


def test_absent_rows_count_as_missing_days():
    daily = make_daily()
    drop = (daily.site_id == "B") & (daily.date >= "2021-07-01")  # 184 d absent
    _, _, report = validate_sites(make_static(), daily[~drop])
    assert "swc missing" in year_row(report, "B", 2021).reason
    assert site_row(report, "B").status == "accepted"


def test_site_needs_two_consecutive_accepted_years():
    daily = make_daily(years=(2019, 2020, 2021))
    mid = (daily.site_id == "B") & (daily.date.dt.year == 2020)
    daily.loc[mid, "swc"] = np.nan
    static, clean, report = validate_sites(make_static(), daily)
    row = site_row(report, "B")
    assert row.status == "rejected" and "consecutive" in row.reason
    assert "B" not in set(clean.site_id) and "B" not in set(static.site_id)
    # every year of B is in the report with a reason
    years = report[(report.site_id == "B") & (report.level == "site-year")]
    assert len(years) == 3 and (years.reason != "").all()


def test_missing_statics_are_nan_and_flagged_not_rejected():
    static = make_static().drop(columns=["bulk_density"])
    static.loc[static.site_id == "A", ["sand", "silt", "clay"]] = np.nan
    clean, _, report = validate_sites(static, make_daily())
    assert clean.set_index("site_id").static_missing.to_dict() == {
        "A": "sand,silt,clay,bulk_density", "B": "bulk_density"}
    assert "static attributes missing" in site_row(report, "A").note
    assert site_row(report, "A").status == "accepted"


def test_orphan_sites_reported():
    _, _, report = validate_sites(make_static(("A", "B", "C")), make_daily(("A", "D")))
    assert "no rows in the daily table" in site_row(report, "C").reason
    assert "no row in the static table" in site_row(report, "D").reason
    assert site_row(report, "B").status == "rejected"


def test_write_load_roundtrip_with_report(tmp_path):
    static, daily, report = validate_sites(make_static(), make_daily())
    out = str(tmp_path / "ds")
    write_site_dataset(SiteDataset(static, daily, report), out, {"source": "test"})
    assert storage.verify_manifest(out)
    assert "Rejected sites:" in (tmp_path / "ds" / schema.QC_SUMMARY_FILE).read_text()
    ds = load_site_dataset(out)
    assert len(ds.daily) == len(daily) and ds.report is not None
    ds2 = load_site_dataset(out, validate=True)
    assert len(ds2.daily) == len(daily)
    (tmp_path / "ds" / schema.DAILY_FILE).write_bytes(b"garbage")
    with pytest.raises(ValueError, match="manifest"):
        load_site_dataset(out)


def _daily_with_air_temperature() -> pd.DataFrame:
    """Site A with LST missing on days 10-19 of 2019: air -5 C on 10-14, no air temperature on 15-19;
    and LST -2 C on days 30-34 (frozen by its own LST)."""
    daily = make_daily(ids=("A",)).assign(tair_c=3.0)
    first = daily.index[:365]
    daily.loc[first[10:20], "lst_c"] = np.nan
    daily.loc[first[10:15], "tair_c"] = -5.0
    daily.loc[first[15:20], "tair_c"] = np.nan
    daily.loc[first[30:35], "lst_c"] = -2.0
    return daily


def test_missing_lst_takes_air_temperature_flagged():
    _, daily, report = validate_sites(make_static(ids=("A",)), _daily_with_air_temperature())
    year = daily[daily.date.dt.year == 2019]
    lst, flag = year.lst_c.to_numpy(), year.lst_from_air_temperature.to_numpy()
    assert lst[10:15].tolist() == [-5.0] * 5 and flag[10:15].all()
    assert np.isnan(lst[15:20]).all() and not flag[15:20].any()  # nothing to fall back on: counts
    assert flag.sum() == 5 and "tair_c" not in daily.columns
    expected = np.ones(365, bool)
    expected[10:15] = expected[30:35] = False
    assert (frozen_mask(lst) == expected).all()
    assert year_row(report, "A", 2019).note == "no LST or air temperature on 5 days: counted as unfrozen"
    assert year_row(report, "A", 2020).note == ""
    assert "A 2019: no LST or air temperature on 5 days" in format_qc_summary(report)


def test_training_inversion_and_report_count_the_same_days(tmp_path):
    """The loss, the inversion's objective and the scores all mask with one rule."""
    from sptf_ray.evaluate.report import _site_years
    from sptf_ray.inverse.site import site_years
    from sptf_ray.training.data import build_sptf_arrays, load_site_samples

    write_site_dataset(SiteDataset(make_static(ids=("A",)), _daily_with_air_temperature()), str(tmp_path / "ds"))
    static, daily, _ = load_site_samples(str(tmp_path / "ds"))
    samples = pd.DataFrame({"site_id": ["A"], "hist_year": [2018], "target_year": [2019]})
    daily_2018 = daily.assign(date=daily.date - pd.DateOffset(years=1))  # 2019 becomes a target year
    arrays = build_sptf_arrays(static, pd.concat([daily_2018[daily_2018.date.dt.year == 2018], daily]), samples)
    training = arrays.target_mask[0].astype(bool)
    inversion = site_years(daily, "A")[2019].mask
    report = _site_years(daily)["A"][2019]["counted"]
    assert training.sum() == 365 - 10
    assert (training == inversion).all() and (inversion == report).all()


def test_site_year_blocks_cut_365_day_years():
    daily = make_daily(ids=("A",), years=(2019, 2020, 2021)).iloc[:-1]  # 2021 misses 31 Dec
    blocks = site_year_blocks(daily.sample(frac=1.0, random_state=0), ["swc"])["A"]  # any row order
    assert sorted(blocks) == [2019, 2020]
    leap = daily[daily.date.dt.year == 2020]
    assert np.array_equal(blocks[2020][:, 0], leap.swc.to_numpy()[:365])  # 31 Dec 2020 left out
    assert len(site_year_blocks(daily, ["swc"], complete_only=False)["A"][2021]) == 364
    two = pd.concat([make_daily(ids=("B",), years=(2018, 2019)), daily]).sample(frac=1.0, random_state=1)
    by_site = site_year_blocks(two, ["swc", "lst_c"])
    assert {k: sorted(v) for k, v in by_site.items()} == {"A": [2019, 2020], "B": [2018, 2019]}
    assert np.array_equal(by_site["A"][2020][:, 0], blocks[2020][:, 0]) and (by_site["A"][2020][:, 1] == 10.0).all()
    assert site_year_blocks(two)["B"][2018].shape == (365, 5)  # the default: swc, forcing, LST


def _messy_daily() -> pd.DataFrame:
    """Eleven sites, two clean, each other one wrong in one way QC repairs or rejects."""
    ids = [f"S{k}" for k in range(10)]
    daily = make_daily(ids=ids, years=(2019, 2020, 2021)).assign(tair_c=4.0, swc_interpolated=False)
    daily = daily[~((daily.date.dt.year == 2020) & (daily.date.dt.month == 12) & (daily.date.dt.day == 31))]
    site = daily.site_id
    daily.loc[daily.index[(site == "S0").to_numpy()][3:5], "swc_interpolated"] = True  # clean, flags kept
    daily.loc[daily.index[(site == "S0").to_numpy()][7:11], ["lst_c", "tair_c"]] = np.nan  # no temperature
    daily.loc[daily.index[(site == "S2").to_numpy()][7:9], ["lst_c", "tair_c"]] = np.nan
    daily.loc[daily.index[(site == "S2").to_numpy()][40:43], "swc"] = np.nan  # a gap to interpolate
    daily = daily.drop(daily.index[(site == "S3").to_numpy()][800])  # a missing day (forcing too: 2021 rejected)
    s4 = daily.index[(daily.site_id == "S4").to_numpy()]
    daily.loc[s4[100], "pet_cm"] = -1.0  # a bad year
    s5 = daily.index[(daily.site_id == "S5").to_numpy()]
    daily = pd.concat([daily, daily.loc[s5[:1]]])  # a duplicate date, at the end: also unsorted
    s6 = daily.index[(daily.site_id == "S6").to_numpy()]
    daily = daily.drop(s6[365:730])  # a hole between two years: no pair
    s7 = daily.index[(daily.site_id == "S7").to_numpy()]
    daily.loc[s7[10], "date"] = daily.loc[s7[10], "date"] + pd.Timedelta(hours=6)
    extra = make_daily(ids=("S1",), years=(2020, 2020)).iloc[365:]  # 31 Dec 2020 of clean S1
    daily.loc[daily.index[(daily.site_id == "S9").to_numpy()][900], "swc"] = 1.2  # 2021 out of range
    s8_first_year = (daily.site_id == "S8") & (daily.date.dt.year == 2019)
    daily = pd.concat([daily[~s8_first_year], daily[s8_first_year]])  # whole years, out of order
    one_year = make_daily(ids=("S10",), years=(2019, 2019))  # complete, but no year pair
    extra, one_year = extra.assign(tair_c=4.0), one_year.assign(tair_c=4.0)
    return pd.concat([daily, extra, one_year], ignore_index=True).fillna({"swc_interpolated": False})


def test_the_fast_path_for_clean_sites_gives_the_per_site_result(monkeypatch):
    """Sites QC passes unchanged skip the per-site calendar work; the result must not differ."""
    import sptf_ray.data.validate as validate

    static, daily = make_static(ids=[f"S{k}" for k in range(11)]), _messy_daily()
    fast = validate_sites(static, daily)
    unchanged = validate._sites_needing_no_changes(validate.normalize_daily(daily), validate.QCConfig())
    assert sorted(unchanged) == ["S0"] and unchanged["S0"] == {2019: (2, 4), 2020: (0, 0), 2021: (0, 0)}
    monkeypatch.setattr(validate, "_sites_needing_no_changes", lambda daily, cfg: {})
    slow = validate_sites(static, daily)
    for a, b in zip(fast, slow):
        pd.testing.assert_frame_equal(a, b)
    assert set(fast[0].site_id) == {"S0", "S1", "S2", "S3", "S4", "S5", "S7", "S8", "S9"}
