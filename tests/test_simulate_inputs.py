"""`sptf simulate` input checks: each audit finding gets a clear error or warning."""
from __future__ import annotations

import dataclasses
import json

import pandas as pd
import pytest

from sptf_ray.cli import main
from sptf_ray.physics.cli import EXAMPLE_PARAMS, _bounds_warnings, _read_params

LOAM = EXAMPLE_PARAMS["vgm"]


def _forcing(tmp_path, n=5, name="forcing.csv", **columns):
    df = pd.DataFrame({"date": pd.date_range("2001-01-01", periods=n).strftime("%Y-%m-%d"),
                       "precip_cm": [0.5] + [0.0] * (n - 1), "pet_cm": 0.3, "lai": 1.0})
    for key, value in columns.items():
        df[key] = value
    path = tmp_path / name
    if name.lower().endswith(".parquet"):
        df.to_parquet(path)
    else:
        df.to_csv(path, index=False)
    return str(path)


def _run(tmp_path, *extra, forcing=None, params=LOAM):
    argv = ["simulate", "--out", str(tmp_path / "out"), "--no-plot"]
    argv += ["--forcing", forcing] if forcing else []
    argv += ["--params", params] if params else []
    return main(argv + list(extra))


def _error(capsys) -> str:
    return capsys.readouterr().err


# 1. dates must be one row per consecutive day
@pytest.mark.parametrize("dates, expected", [
    (["2001-01-01", "2001-01-08", "2001-01-15"], "row 2 (2001-01-08) follows 2001-01-01"),
    (["2001-01-01", "2001-01-02", "2001-01-04"], "row 3 (2001-01-04) follows 2001-01-02"),
    (["2001-01-02", "2001-01-01", "2001-01-03"], "row 2 (2001-01-01) follows 2001-01-02"),
    (["2001-01-01", "2001-01-01", "2001-01-02"], "same date repeated"),
])
def test_non_consecutive_dates_rejected(tmp_path, capsys, dates, expected):
    assert _run(tmp_path, forcing=_forcing(tmp_path, n=3, date=dates)) == 2
    err = _error(capsys)
    assert "forcing dates must be consecutive days" in err and expected in err


def test_hourly_stamps_rejected(tmp_path, capsys):
    dates = ["2001-01-01 00:00", "2001-01-01 01:00", "2001-01-01 02:00"]
    assert _run(tmp_path, forcing=_forcing(tmp_path, n=3, date=dates)) == 2
    assert "must be daily: row 2 has a time of day" in _error(capsys)


# 2. blank or unreadable dates name the row; no pandas format warnings
@pytest.mark.filterwarnings("error")
@pytest.mark.parametrize("cell, expected", [
    ("", "forcing date in row 2 is missing"),
    ("15/01/2001", "row 2 ('15/01/2001') is not readable; expected format YYYY-MM-DD"),
])
def test_bad_date_cell_names_row(tmp_path, capsys, cell, expected):
    dates = ["2001-01-01", cell, "2001-01-03"]
    assert _run(tmp_path, forcing=_forcing(tmp_path, n=3, date=dates)) == 2
    assert expected in _error(capsys)


# 3. conflicting or repeated options
def test_example_with_forcing_rejected(tmp_path, capsys):
    assert _run(tmp_path, "--example", forcing=_forcing(tmp_path)) == 2
    assert "give either --example or --forcing" in _error(capsys)


def test_params_with_params_file_rejected(tmp_path, capsys):
    pfile = tmp_path / "p.csv"
    pfile.write_text("theta_r,theta_s,alpha,n,Ks,H50\n0.078,0.43,0.036,1.56,24.96,-800\n")
    assert _run(tmp_path, "--params-file", str(pfile), forcing=_forcing(tmp_path)) == 2
    assert "give either --params or --params-file" in _error(capsys)


def test_duplicate_params_key_rejected(tmp_path, capsys):
    assert _run(tmp_path, forcing=_forcing(tmp_path), params=LOAM + ",Ks=2") == 2
    assert "--params gives Ks more than once" in _error(capsys)


def test_duplicate_obs_depth_rejected(tmp_path, capsys):
    assert _run(tmp_path, "--obs-depths", "5,5", forcing=_forcing(tmp_path)) == 2
    assert "--obs-depths lists 5 cm more than once" in _error(capsys)


# 4. non-numeric forcing cell names column and row
def test_non_numeric_forcing_cell_names_column_and_row(tmp_path, capsys):
    forcing = _forcing(tmp_path, n=4, pet_cm=["0.3", "0.3", "abc", "0.3"])
    assert _run(tmp_path, forcing=forcing) == 2
    assert "forcing column pet_cm: row 3 is not a number ('abc')" in _error(capsys)


# 5. upper-case .PARQUET is Parquet
def test_upper_case_parquet_suffix(tmp_path):
    assert _run(tmp_path, forcing=_forcing(tmp_path, name="forcing.PARQUET")) == 0
    table = pd.read_csv(tmp_path / "out" / "simulation.csv")
    assert table["date"].tolist()[:2] == ["2001-01-01", "2001-01-02"]


# 6. --out that is a file fails before simulating
def test_out_is_a_file_rejected_before_simulating(tmp_path, capsys, monkeypatch):
    from sptf_ray import physics

    monkeypatch.setattr(physics, "simulate", lambda *a, **k: pytest.fail("simulated before checking --out"))
    (tmp_path / "out").write_text("not a directory")
    assert _run(tmp_path, forcing=_forcing(tmp_path)) == 2
    assert "is a file, not a directory" in _error(capsys)


# 7. a failed set has no totals and names its failed day
def test_failed_set_summary_has_no_totals(tmp_path, monkeypatch):
    from sptf_ray import physics

    real = physics.simulate

    def starved(*args, config, **kwargs):  # a real solver failure: too few time steps
        return real(*args, config=dataclasses.replace(config, max_steps=3), **kwargs)

    monkeypatch.setattr(physics, "simulate", starved)
    assert _run(tmp_path, forcing=_forcing(tmp_path, n=5)) == 1
    (entry,) = json.loads((tmp_path / "out" / "summary.json").read_text())["sets"]
    assert entry["cumulative_cm"] is None and isinstance(entry["failed_day"], int)
    assert entry["storage_final_cm"] is None and entry["balance_error"] is None


def test_ok_set_summary_has_totals(tmp_path):
    assert _run(tmp_path, forcing=_forcing(tmp_path)) == 0
    (entry,) = json.loads((tmp_path / "out" / "summary.json").read_text())["sets"]
    assert entry["failed_day"] is None and entry["cumulative_cm"]["infiltration"] > 0


# 8. --no-plot removes a stale plot
def test_no_plot_removes_stale_png(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "simulation.png").write_bytes(b"old")
    assert _run(tmp_path, forcing=_forcing(tmp_path)) == 0
    assert not (out / "simulation.png").exists() and (out / "simulation.csv").exists()


# 9. implausible inputs warn but still run
def test_implausible_inputs_warn_and_run(tmp_path, capsys):
    forcing = _forcing(tmp_path, n=4, precip_cm=[0.5, 120.0, 0.0, 0.0], pet_cm=3.0, lai=16.0)
    params = LOAM.replace("Ks=24.96", "Ks=10000")
    assert _run(tmp_path, forcing=forcing, params=params) == 0
    out = capsys.readouterr().out
    assert "warning: pet_cm reaches 3 (> 2.5 cm/d; is it in mm?)" in out
    assert "warning: precip_cm reaches 120 (> 100 cm/d; is it in mm?)" in out
    assert "warning: lai reaches 16 (> 15" in out
    assert "warning: set0: Ks = 10000 lies outside the Table 1 bounds [0.3, 8000]" in out


@pytest.mark.parametrize("model", ["vgm", "fxw"])
def test_example_params_raise_no_bounds_warning(model):
    args = type("Args", (), {"model": model, "params": None, "params_file": None, "example": True})()
    ids, params = _read_params(args)
    assert _bounds_warnings(model, ids, params) == []
