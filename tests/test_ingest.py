"""Station ingestion: USCRN (generated files) and ISMN (the ismn package's own test data)."""
from __future__ import annotations

import argparse
import subprocess
import sys
import tarfile

import numpy as np
import pandas as pd
import pytest

from sptf_ray import storage
from sptf_ray.data import cli as data_cli
from sptf_ray.data import schema
from sptf_ray.data.forcing import lai_climatology, land_cover_class
from sptf_ray.data.ingest import ingest, is_point_sensor_at_depth, read_uscrn
from sptf_ray.data.validate import load_site_dataset
from uscrn_synthetic import write_uscrn_csv, write_uscrn_txt


def run_cli(argv) -> int:
    parser = argparse.ArgumentParser()
    data_cli.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.func(args)


def test_uscrn_txt_and_csv_read_the_same(tmp_path):
    write_uscrn_txt(tmp_path / "a.txt", years=(2019,))
    write_uscrn_csv(tmp_path / "b.csv", years=(2019,))
    a = read_uscrn(str(tmp_path / "a.txt"))[0].daily
    b = read_uscrn(str(tmp_path / "b.csv"))[0].daily
    pd.testing.assert_frame_equal(a, b, check_dtype=False)
    assert a["rh_pct"].isna().sum() == 3  # -9999 read as missing


def test_uscrn_cli_end_to_end(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    write_uscrn_txt(src / "CRND0103-2019-2021.txt", years=(2019, 2020, 2021), missing_swc_days=20)
    write_uscrn_txt(src / "other.txt", wbanno="99999", years=(2019,))  # one year only: rejected
    statics = tmp_path / "statics.csv"
    statics.write_text("site_id,sand,silt,clay,bulk_density,land_cover\nuscrn:03047,40,40,20,1.45,GRA\n")
    out = tmp_path / "out"
    assert run_cli(["ingest", "uscrn", str(src), "--out", str(out), "--statics", str(statics)]) == 0
    assert storage.verify_manifest(str(out))
    ds = load_site_dataset(str(out))
    assert ds.static.site_id.tolist() == ["uscrn:03047"]
    d = ds.daily
    assert list(d.columns[:7]) == ["site_id", "date", "swc", "precip_cm", "pet_cm", "lai", "lst_c"]
    assert len(d) == 3 * 365
    assert d.swc_interpolated.sum() == 20
    assert d.lai_from_climatology.all()  # no LAI file given
    raw = read_uscrn(str(src / "CRND0103-2019-2021.txt"))[0].daily.reindex(pd.DatetimeIndex(d.date))
    assert (d.lst_from_air_temperature.to_numpy() == raw.surface_temp_c.isna().to_numpy()).all()
    assert d.lst_from_air_temperature.any()
    hargreaves = (d.pet_method == "hargreaves").to_numpy()
    assert hargreaves.any() and (hargreaves == raw.rh_pct.isna().to_numpy()).all()
    assert (d.pet_method[~hargreaves] == "fao56_wind2").all()  # USCRN has no wind
    assert d.pet_cm.between(0, 1.5).all() and d.precip_cm.max() < 20
    assert ds.static.static_missing.tolist() == [""]
    rejected = ds.report[(ds.report.level == "site") & (ds.report.status == "rejected")]
    assert rejected.site_id.tolist() == ["uscrn:99999"]
    assert (out / schema.QC_SUMMARY_FILE).exists() and (out / "ingest_config.yaml").exists()


def test_uscrn_without_statics_flags_them(tmp_path):
    write_uscrn_csv(tmp_path / "a.csv", years=(2019, 2020))
    ds = ingest({"source": "uscrn", "path": str(tmp_path / "a.csv"), "out": str(tmp_path / "o")})
    assert ds.static.static_missing.tolist() == ["sand,silt,clay,bulk_density"]
    assert np.isnan(ds.static.sand.iloc[0])


def test_uscrn_bad_file_is_a_clear_error(tmp_path):
    (tmp_path / "bad.txt").write_text("1 2 3\n")
    with pytest.raises(ValueError, match="columns"):
        read_uscrn(str(tmp_path / "bad.txt"))


def test_depth_rule_and_area_sensors():
    assert is_point_sensor_at_depth("ThetaProbe", "SMOSMANIA", 0.05, 0.05)
    assert is_point_sensor_at_depth("5TM", "RSMN", 0.0, 0.05)
    assert not is_point_sensor_at_depth("5TM", "X", 0.0, 0.30)  # spans more than 10 cm
    assert not is_point_sensor_at_depth("5TM", "X", 0.10, 0.10)
    assert not is_point_sensor_at_depth("Cosmic-ray-Probe", "X", 0.0, 0.1)
    assert not is_point_sensor_at_depth("x", "COSMOS", 0.0, 0.1)


def test_lai_climatology_shape():
    dates = pd.date_range("2020-01-01", periods=365)
    north = lai_climatology(dates, "DBF", 45.0)
    south = lai_climatology(dates, "DBF", -45.0)
    assert north[200] > north[15] and south[15] > south[200]
    assert land_cover_class(130) == "GRA" and land_cover_class("cro") == "CRO" and land_cover_class(None) is None


@pytest.fixture(scope="module")
def ismn_test_data(tmp_path_factory):
    """The ismn sdist's own test data, fetched at test time (ISMN terms forbid redistributing it)."""
    tmp = tmp_path_factory.mktemp("ismn_sdist")
    try:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-binary", ":all:", "--no-deps",
             "ismn==1.5.4", "-d", str(tmp), "-q"],
            check=True, capture_output=True, timeout=120,
        )
        (sdist,) = tmp.glob("ismn-*.tar.gz")
        with tarfile.open(sdist) as tar:
            members = [m for m in tar.getmembers() if "/tests/test_data/" in m.name]
            tar.extractall(tmp, members=members, filter="data")
    except Exception as exc:  # offline or registry unavailable
        pytest.skip(f"could not fetch the ismn sdist test data: {exc}")
    return next(tmp.glob("ismn-*/tests/test_data"))


@pytest.mark.parametrize("layout", ["Data_seperate_files_20170810_20180809",
                                    "Data_seperate_files_header_20170810_20180809"])
def test_ismn_real_files(ismn_test_data, tmp_path, layout):
    """ceop and header+values layouts: the COSMOS cosmic-ray stations are excluded by rule."""
    import shutil

    src = tmp_path / "src"
    shutil.copytree(ismn_test_data / layout, src)
    out = tmp_path / "out"
    if layout.startswith("Data_seperate_files_header"):
        # Only COSMOS (area sensors) there: nothing usable, and the error says why.
        with pytest.raises(ValueError, match="cosmic-ray"):
            ingest({"source": "ismn", "path": str(src), "out": str(out)})
        return
    # no station passes QC: only the QC report is written, and the error points at it
    with pytest.raises(ValueError, match="no site passed QC.*qc_summary.txt.*precip_cm missing"):
        ingest({"source": "ismn", "path": str(src), "out": str(out)})
    assert not (out / storage.MANIFEST_NAME).exists() and not (out / schema.STATIC_FILE).exists()
    report = pd.read_parquet(out / schema.QC_REPORT_FILE)
    rep = report[report.level == "site"].set_index("site_id")
    assert "cosmic-ray" in rep.loc["COSMOS:ARM-1", "reason"]
    # fraye has a 5 cm ThetaProbe but no precipitation: its years are rejected, with the reason
    assert "FR_Aqui:fraye" in rep.index
    years = report[(report.site_id == "FR_Aqui:fraye") & (report.level == "site-year")]
    assert len(years) > 3 and years.reason.str.contains("precip_cm missing").any()
    assert not list(src.glob("python_metadata"))  # ISMN's cache kept out of the user's folder


@pytest.mark.parametrize("layout", ["format_header_values", "format_ceop_sep"])
def test_ismn_5cm_station_both_layouts(ismn_test_data, tmp_path, layout):
    """SMOSMANIA Narbonne, a 5 cm ThetaProbe: read hourly, averaged daily; one month is too short."""
    import shutil

    from sptf_ray.data.ingest import read_ismn

    # a download is NETWORK/STATION/files: the sdist keeps these without the station folder
    shutil.copytree(ismn_test_data / layout / "SMOSMANIA", tmp_path / "src" / "SMOSMANIA" / "Narbonne")
    stations, skipped = read_ismn(str(tmp_path / "src"))
    assert skipped == [] and [s.site_id for s in stations] == ["SMOSMANIA:Narbonne"]
    swc = stations[0].daily["swc"]
    assert len(swc) == 31 and swc.between(0, 1).all()
    with pytest.raises(ValueError, match="no site passed QC.*swc missing"):
        ingest({"source": "ismn", "path": str(tmp_path / "src"), "out": str(tmp_path / "o")})


def test_ismn_empty_folder_is_a_clear_error(tmp_path):
    from sptf_ray.data.ingest import read_ismn

    (tmp_path / "NET").mkdir()
    with pytest.raises(ValueError, match="no ISMN station files"):
        read_ismn(str(tmp_path))


def test_ismn_with_user_forcing(ismn_test_data, tmp_path):
    """A 5 cm station completed with user precipitation/temperature and statics is kept."""
    import shutil

    src = tmp_path / "src"
    shutil.copytree(ismn_test_data / "Data_seperate_files_20170810_20180809", src)
    dates = pd.date_range("2014-01-01", "2019-12-31", freq="D")
    doy = dates.day_of_year.to_numpy()
    forcing = pd.DataFrame({
        "site_id": "FR_Aqui:fraye", "date": dates.strftime("%Y-%m-%d"),
        "precip_mm": np.where(doy % 4 == 0, 6.0, 0.0),
        "tmax_c": 18 + 8 * np.sin(2 * np.pi * (doy - 105) / 365), "tmin_c": 8 + 6 * np.sin(2 * np.pi * (doy - 105) / 365),
    })
    forcing.to_csv(tmp_path / "f.csv", index=False)
    (tmp_path / "s.csv").write_text("site_id,bulk_density\nFR_Aqui:fraye,1.5\n")
    ds = ingest({"source": "ismn", "path": str(src), "out": str(tmp_path / "o"),
                 "forcing_csv": str(tmp_path / "f.csv"), "statics_csv": str(tmp_path / "s.csv")})
    fraye = ds.static.set_index("site_id").loc["FR_Aqui:fraye"]
    assert fraye.sand == 87.0 and fraye.bulk_density == 1.5 and fraye.static_missing == ""
    d = ds.daily
    assert (d.pet_method == "hargreaves").all() and d.lst_from_air_temperature.all()
    assert d.swc.between(0, 1).all() and len(d) % 365 == 0
