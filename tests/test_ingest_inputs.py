"""Bad or mismatched ingest inputs: each must fail (or warn) with a message naming file or site."""
from __future__ import annotations

import argparse
import json

import numpy as np
import pandas as pd
import pytest

from sptf_ray import storage
from sptf_ray.data import cli as data_cli
from sptf_ray.data import schema
from sptf_ray.data.forcing import check_station_inputs
from sptf_ray.data.ingest import StationRecord, ingest, read_ismn, read_uscrn, stations_to_frames
from uscrn_synthetic import uscrn_daily_frame, write_uscrn_csv


def run_cli(argv) -> int:
    parser = argparse.ArgumentParser()
    data_cli.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.func(args)


def _uscrn(tmp_path, name="a.csv", **changes):
    """A 2-year synthetic USCRN CSV with whole columns replaced (kwargs: column=value)."""
    df = uscrn_daily_frame(years=(2019, 2020))
    for col, value in changes.items():
        df[col] = value(df[col]) if callable(value) else value
    path = tmp_path / name
    df.to_csv(path, index=False)
    return path


def _write_ismn_station(root, variables, header=True, days=60):
    """NETWORK/STATION/*.stm in ISMN's header+values format, 6-hourly, for {short_var: (depth, values_fn)}."""
    station = root / "NET" / "ST"
    station.mkdir(parents=True)
    times = pd.date_range("2019-01-01", periods=days * 4, freq="6h")
    for var, (depth, values) in variables.items():
        body = "".join(f"{t:%Y/%m/%d %H:%M} {v:.4f} G M\n" for t, v in zip(times, values(len(times))))
        head = f"NET NET ST 43.15000 2.95670 112.00 {depth:.2f} {depth:.2f} Sensor\n" if header else ""
        name = f"NET_NET_ST_{var}_{depth:.6f}_{depth:.6f}_Sensor_20190101_20190301.stm"
        (station / name).write_text(head + body)
    return station


SM = (0.05, lambda n: np.full(n, 0.25))


# --------------------------------------------------------------------------- 1. nothing passes QC
@pytest.mark.parametrize("column, why", [("SOIL_MOISTURE_5_DAILY", "swc missing"),
                                         ("P_DAILY_CALC", "precip_cm missing")])
def test_no_site_passing_qc_writes_only_the_report(tmp_path, column, why):
    out = tmp_path / "out"
    with pytest.raises(ValueError, match=rf"no site passed QC \(0 of 1 kept\).*qc_summary.txt.*{why}"):
        ingest({"source": "uscrn", "path": str(_uscrn(tmp_path, **{column: -9999.0})), "out": str(out)})
    assert sorted(p.name for p in out.iterdir()) == [schema.QC_REPORT_FILE, schema.QC_SUMMARY_FILE]
    assert why in (out / schema.QC_SUMMARY_FILE).read_text()


def test_no_site_passing_qc_over_an_earlier_dataset_leaves_no_dataset(tmp_path):
    """The earlier dataset's tables and manifest go: they no longer match the QC report beside them."""
    out = tmp_path / "out"
    for sub in ("good", "bad"):
        (tmp_path / sub).mkdir()
    ingest({"source": "uscrn", "path": str(_uscrn(tmp_path / "good")), "out": str(out)})
    assert (out / schema.STATIC_FILE).exists() and storage.verify_manifest(str(out))
    with pytest.raises(ValueError, match="no site passed QC"):
        ingest({"source": "uscrn", "path": str(_uscrn(tmp_path / "bad", SOIL_MOISTURE_5_DAILY=-9999.0)),
                "out": str(out)})
    for name in (schema.STATIC_FILE, schema.DAILY_FILE, storage.MANIFEST_NAME):
        assert not (out / name).exists(), name


# --------------------------------------------------------------------------- 2. units, latitude
def test_uscrn_kelvin_is_named_before_pyet(tmp_path):
    kelvin = {c: (lambda s: s + 273.15) for c in ("T_DAILY_MAX", "T_DAILY_MIN", "T_DAILY_AVG", "T_DAILY_MEAN")}
    with pytest.raises(ValueError, match=r"site uscrn:03047: tmax_c median 2\d\d\.\d .*kelvin or fahrenheit"):
        ingest({"source": "uscrn", "path": str(_uscrn(tmp_path, **kelvin)), "out": str(tmp_path / "o")})


def test_ismn_kelvin_air_temperature_is_rejected(tmp_path):
    """Without the check this was accepted silently (Hargreaves PET ~34 mm/d, lst_c ~285)."""
    air = (-2.0, lambda n: 285 + 8 * np.sin(np.arange(n) / 40))
    _write_ismn_station(tmp_path / "src", {"sm": SM, "ta": air})
    with pytest.raises(ValueError, match=r"site NET:ST: tm\w+_c median 28\d\.\d .*kelvin"):
        ingest({"source": "ismn", "path": str(tmp_path / "src"), "out": str(tmp_path / "o")})


def test_uscrn_missing_latitude_names_the_site(tmp_path):
    with pytest.raises(ValueError, match=r"site uscrn:03047: latitude nan .*\[-90, 90\]"):
        ingest({"source": "uscrn", "path": str(_uscrn(tmp_path, LATITUDE=-9999.0)), "out": str(tmp_path / "o")})


@pytest.mark.parametrize("column, values, match", [
    ("tmin_c", np.full(40, 60.0), "is it in kelvin or fahrenheit"),  # e.g. a hot site in F
    ("surface_temp_c", np.full(40, 290.0), "is it in kelvin"),
    ("rh_pct", np.full(40, 0.6), "looks like a fraction; give percent"),
    ("rs_mj_m2", np.full(40, 200.0), "is it W/m2"),
    ("wind_ms", np.full(40, 70.0), "median 70.0 is above 50: is it km/h"),
    ("lai", np.full(40, 25.0), "median 25.0 is above 15: is it scaled"),
])
def test_unit_checks(column, values, match):
    met = pd.DataFrame({column: values}, index=pd.date_range("2019-01-01", periods=len(values)))
    with pytest.raises(ValueError, match=f"site X:1: {column} .*{match}"):
        check_station_inputs(met, 40.0, "X:1")


def test_unit_checks_accept_plausible_and_sparse_values():
    dates = pd.date_range("2019-01-01", periods=40)
    met = pd.DataFrame({"tmean_c": -5.0, "rh_pct": 70.0, "rs_mj_m2": 25.0, "wind_ms": 3.0, "lai": 2.0}, index=dates)
    check_station_inputs(met, -45.0, "X:1")
    few = pd.DataFrame({"rh_pct": [0.9] * 5 + [np.nan] * 35}, index=dates)  # too few values to judge
    check_station_inputs(few, 45.0, "X:1")


def test_stations_to_frames_checks_units_per_station():
    dates = pd.date_range("2019-01-01", periods=60)
    rec = StationRecord("N:S", 45.0, 2.0, 100.0, pd.DataFrame({"swc": 0.2, "tmean_c": 285.0}, index=dates))
    with pytest.raises(ValueError, match="site N:S: tmean_c"):
        stations_to_frames([rec])


# --------------------------------------------------------------------------- 3. pyet errors
def test_pyet_error_names_the_site(tmp_path):
    one_bad_day = (lambda s: s.where(s.index != 5, 150.0))  # median fine, pyet rejects max > 100
    with pytest.raises(ValueError, match="site uscrn:03047: forcing/PET computation failed: .*radiation"):
        ingest({"source": "uscrn", "path": str(_uscrn(tmp_path, SOLARAD_DAILY=one_bad_day)), "out": str(tmp_path / "o")})


# --------------------------------------------------------------------------- 4, 7. file encodings
def test_uscrn_csv_with_bom(tmp_path):
    write_uscrn_csv(tmp_path / "plain.csv", years=(2019,))
    (tmp_path / "bom.csv").write_bytes(b"\xef\xbb\xbf" + (tmp_path / "plain.csv").read_bytes())
    (rec,) = read_uscrn(str(tmp_path / "bom.csv"))
    assert rec.site_id == "uscrn:03047" and len(rec.daily) == 365


def test_uscrn_latin1_and_empty_files_name_the_path(tmp_path):
    write_uscrn_csv(tmp_path / "a.csv", years=(2019,))
    text = (tmp_path / "a.csv").read_text().replace("2.422", "2.422\u00b0", 3)
    (tmp_path / "latin1.csv").write_bytes(text.encode("latin-1"))
    with pytest.raises(ValueError, match=r"latin1\.csv: not UTF-8"):
        read_uscrn(str(tmp_path / "latin1.csv"))
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(ValueError, match=r"empty\.txt: empty file"):
        read_uscrn(str(tmp_path / "empty.txt"))


# --------------------------------------------------------------------------- 5. unmatched site ids
def test_unmatched_user_site_ids_are_recorded_and_warned(tmp_path, capsys):
    src = _uscrn(tmp_path)
    statics = tmp_path / "statics.csv"
    statics.write_text("site_id,sand,silt,clay,bulk_density\nuscrn:03047,40,40,20,1.4\n3047,40,40,20,1.4\n"
                       + "".join(f"x{i},40,40,20,1.4\n" for i in range(6)))
    lai = tmp_path / "lai.csv"
    lai.write_text("site_id,date,lai\nuscrn:9,2019-01-01,1.0\n")
    out = tmp_path / "out"
    assert run_cli(["ingest", "uscrn", str(src), "--out", str(out), "--statics", str(statics),
                    "--lai", str(lai)]) == 0
    extra = json.loads((out / storage.MANIFEST_NAME).read_text())["extra"]
    assert extra["unmatched_user_site_ids"] == {
        "statics": ["3047", "x0", "x1", "x2", "x3", "x4", "x5"], "lai": ["uscrn:9"]}
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 2
    assert "--statics" in warnings[0] and "7 site_id(s)" in warnings[0] and "'x3'" in warnings[0]
    assert "'x4'" not in warnings[0] and "(+2 more)" in warnings[0] and "'uscrn:03047'" in warnings[0]
    assert "--lai" in warnings[1] and "'uscrn:9'" in warnings[1]


# --------------------------------------------------------------------------- 6. ISMN paths
def test_ismn_single_file_is_a_clear_error(tmp_path):
    station = _write_ismn_station(tmp_path / "src", {"sm": SM})
    (stm,) = station.glob("*.stm")
    with pytest.raises(ValueError, match="must be the ISMN download folder .*or its zip"):
        read_ismn(str(stm))


def test_ismn_file_without_header_is_a_clear_error(tmp_path):
    _write_ismn_station(tmp_path / "src", {"sm": SM}, header=False)
    with pytest.raises(ValueError, match=r"no readable ISMN station file under .*src.*header\+values"):
        read_ismn(str(tmp_path / "src"))


# --------------------------------------------------------------------------- your own tables
def _own_tables(tmp_path, fmt="csv"):
    """Two sites x 3 years in the schema.py format; site B's 2021 LST missing, air temperature given."""
    dates = pd.date_range("2019-01-01", "2021-12-31", freq="D")
    daily = pd.concat([pd.DataFrame({"site_id": sid, "date": dates, "swc": 0.2 + 0.01 * k,
                                     "precip_cm": np.where(np.arange(len(dates)) % 5 == 0, 0.8, 0.0),
                                     "pet_cm": 0.25, "lai": 1.2, "lst_c": 8.0, "tair_c": -1.0})
                       for k, sid in enumerate(("A", "B"))], ignore_index=True)
    daily.loc[(daily.site_id == "B") & (daily.date.dt.year == 2021), "lst_c"] = np.nan
    static = pd.DataFrame({"site_id": ["A", "B"], "lat": [45.0, 46.0], "lon": [7.0, 8.0], "sand": [40.0, 60.0],
                           "silt": [40.0, 30.0], "clay": [20.0, 10.0], "bulk_density": [1.4, 1.5],
                           "land_cover": ["GRA", "CRO"]})
    paths = tmp_path / f"daily.{fmt}", tmp_path / f"sites.{fmt}"
    for frame, path in zip((daily, static), paths):
        frame.to_csv(path, index=False) if fmt == "csv" else frame.to_parquet(path)
    return [str(p) for p in paths]


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_own_tables_are_ingested_through_qc(tmp_path, capsys, fmt):
    from sptf_ray.data.validate import load_site_dataset

    daily_path, static_path = _own_tables(tmp_path, fmt)
    out = tmp_path / "ds"
    assert run_cli(["ingest", "tables", daily_path, "--statics", static_path, "--out", str(out)]) == 0
    assert "sites: 2 kept" in capsys.readouterr().out
    ds = load_site_dataset(str(out))
    assert storage.verify_manifest(str(out)) and ds.static.site_id.tolist() == ["A", "B"]
    assert len(ds.daily) == 2 * 3 * 365 and ds.static.land_cover.tolist() == ["GRA", "CRO"]
    b2021 = ds.daily[(ds.daily.site_id == "B") & (ds.daily.date.dt.year == 2021)]
    assert (b2021.lst_c == -1.0).all() and b2021.lst_from_air_temperature.all()  # frozen by air temperature
    assert not ds.daily[ds.daily.site_id == "A"].lst_from_air_temperature.any()


def test_own_tables_bad_inputs_are_named(tmp_path):
    daily_path, static_path = _own_tables(tmp_path)
    out = str(tmp_path / "ds")
    with pytest.raises(ValueError, match="needs the static table"):
        ingest({"source": "tables", "path": daily_path, "out": out})
    with pytest.raises(ValueError, match="forcing_csv do not apply"):
        ingest({"source": "tables", "path": daily_path, "statics_csv": static_path, "forcing_csv": daily_path,
                "out": out})
    with pytest.raises(FileNotFoundError, match="daily table .*nope.csv"):
        ingest({"source": "tables", "path": str(tmp_path / "nope.csv"), "statics_csv": static_path, "out": out})
    pd.read_csv(daily_path).drop(columns="pet_cm").to_csv(tmp_path / "no_pet.csv", index=False)
    with pytest.raises(ValueError, match="pet_cm"):
        ingest({"source": "tables", "path": str(tmp_path / "no_pet.csv"), "statics_csv": static_path, "out": out})
    pd.read_csv(daily_path).assign(swc=25.0).to_csv(tmp_path / "percent.csv", index=False)
    with pytest.raises(ValueError, match="no site passed QC.*percent"):
        ingest({"source": "tables", "path": str(tmp_path / "percent.csv"), "statics_csv": static_path, "out": out})
    assert (tmp_path / "ds" / schema.QC_SUMMARY_FILE).exists() and not (tmp_path / "ds" / schema.DAILY_FILE).exists()
    bad_date = pd.read_csv(daily_path)
    bad_date.loc[1100, "date"], bad_date.loc[1200, "date"] = "2019-13-45", "soon"
    bad_date.to_csv(tmp_path / "bad_date.csv", index=False)
    with pytest.raises(ValueError, match=r"column 'date'.*'2019-13-45' \(row 1101, site B\) is not a date; 2 such"):
        ingest({"source": "tables", "path": str(tmp_path / "bad_date.csv"), "statics_csv": static_path, "out": out})
    # a site rejected for its statics: its reason, not its fine years' "site rejected"; units hinted
    pd.read_csv(static_path).assign(bulk_density=[1400.0, 1500.0]).to_csv(tmp_path / "kg.csv", index=False)
    with pytest.raises(ValueError, match=r"reasons: A: bulk_density 1400.0 g/cm3 outside \(0, 2.65\] \(kg/m3\? give "
                                         r"g/cm3\) \| B: bulk_density 1500.0"):
        ingest({"source": "tables", "path": daily_path, "statics_csv": str(tmp_path / "kg.csv"), "out": out})


def test_a_site_rejected_for_its_statics_is_not_explained_by_its_fine_years():
    from sptf_ray.data.validate import rejection_reasons, validate_sites

    dates = pd.date_range("2019-01-01", "2020-12-31", freq="D")
    daily = pd.DataFrame({"site_id": "A", "date": dates, "swc": 0.2, "precip_cm": 0.1, "pet_cm": 0.2, "lai": 1.0,
                          "lst_c": 10.0})
    static = pd.DataFrame({"site_id": ["A"], "lat": [45.0], "lon": [7.0], "sand": [0.4], "silt": [0.4],
                           "clay": [0.2], "bulk_density": [1.4]})
    _, _, report = validate_sites(static, daily)
    assert rejection_reasons(report) == {"A": "texture sums to 1.0 % (sand+silt+clay must be 100 +- 2) "
                                              "(fractions? give percent)"}
