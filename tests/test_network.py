"""Virtual soils, truth and the network build (layout, resume, re-simulation from truth)."""
from __future__ import annotations

import argparse
import types

import numpy as np
import pandas as pd
import pytest

from sptf_ray import storage
from sptf_ray.data import schema
from sptf_ray.data.network import (NetworkConfig, build_network, draw_sites, load_network,
                                   resimulate_site, year_dates)
from sptf_ray.data.soils import (FXW_CLASS_PRIOR, RandomEffectConfig, derive_fxw_class_priors,
                                 sample_texture, texture_class, true_parameters)
from sptf_ray.physics.parameters import PARAM_NAMES, parameter_space


# --------------------------------------------------------------------------- soils
def test_texture_sums_to_100_and_classes_cover_the_triangle():
    texture = sample_texture(3000, np.random.default_rng(0))
    np.testing.assert_allclose(texture.sum(axis=1), 100.0, atol=1e-9)
    assert texture.min() >= 0
    classes = texture_class(*texture.T)
    shares = pd.Series(classes).value_counts(normalize=True)
    assert set(shares.index[:3]) == {"loam", "sandy loam", "silt loam"}  # as in the ISMN
    assert len(shares) >= 10


@pytest.mark.parametrize("sand, silt, clay, expected", [
    (92, 5, 3, "sand"), (82, 12, 6, "loamy sand"), (65, 25, 10, "sandy loam"), (40, 40, 20, "loam"),
    (20, 65, 15, "silt loam"), (5, 88, 7, "silt"), (60, 10, 30, "sandy clay loam"),
    (33, 34, 33, "clay loam"), (10, 55, 35, "silty clay loam"), (50, 5, 45, "sandy clay"),
    (5, 45, 50, "silty clay"), (20, 20, 60, "clay"),
])
def test_usda_texture_class(sand, silt, clay, expected):
    assert texture_class([sand], [silt], [clay])[0] == expected


def test_texture_class_rejects_fractions_not_summing_to_100():
    with pytest.raises(ValueError, match="summing to 100"):
        texture_class([50], [30], [30])


def test_truth_inside_table1_bounds_even_with_large_random_effects():
    rng = np.random.default_rng(1)
    texture = sample_texture(2000, rng)
    classes = texture_class(*texture.T)
    bulk_density = rng.uniform(1.0, 1.75, 2000)
    land_cover = rng.choice(["GRA", "CRO", "DBF", "ENF", "OSH", "SAV"], 2000)
    wild = RandomEffectConfig(**{k: 3.0 for k in vars(RandomEffectConfig())})
    for effects in (RandomEffectConfig(), wild):
        truth = true_parameters(classes, bulk_density, land_cover, rng, effects)
        for model in ("vgm", "fxw"):
            space = parameter_space(model)
            assert truth[model].shape == (2000, 6)
            assert np.all(truth[model] > space.lower) and np.all(truth[model] < space.upper), model


def test_same_texture_gets_different_parameters_random_effect():
    classes = np.array(["loam"] * 50, dtype=object)
    truth = true_parameters(classes, np.full(50, 1.4), np.array(["GRA"] * 50), np.random.default_rng(2))
    for model in ("vgm", "fxw"):
        p = truth[model]
        assert np.all(np.std(p, axis=0) > 0), model
        assert not np.allclose(p[0], p[1])
        # ... yet centred on the class prior: Ks spreads about a decade around Carsel's 25 cm/d.
        ks = p[:, PARAM_NAMES[model].index("Ks")]
        assert 8 < np.exp(np.log(ks).mean()) < 80
    no_effect = RandomEffectConfig(**{k: 0.0 for k in vars(RandomEffectConfig())})
    flat = true_parameters(classes, np.full(50, 1.4), np.array(["GRA"] * 50), np.random.default_rng(2), no_effect)
    assert np.allclose(flat["vgm"], flat["vgm"][0])


def test_fxw_prior_table_is_the_documented_fit():
    derived = derive_fxw_class_priors()
    for name, values in FXW_CLASS_PRIOR.items():
        np.testing.assert_allclose(derived[name], values, rtol=1e-4, err_msg=name)


def test_network_config_validates():
    with pytest.raises(ValueError, match="n_years"):
        NetworkConfig(n_years=2)
    with pytest.raises(ValueError, match="vgm_fraction"):
        NetworkConfig(vgm_fraction=1.5)
    with pytest.raises(ValueError, match="sensor_noise_sd"):
        NetworkConfig(sensor_noise_sd_min=0.03, sensor_noise_sd_max=0.02)
    with pytest.raises(ValueError, match="sensor_bias_sd"):
        NetworkConfig(sensor_bias_sd=1.0)  # every reading of a site would clip to 0 or 1
    with pytest.raises(ValueError, match="seed must be >= 0"):
        NetworkConfig(seed=-1)


def test_build_network_cli_refuses_a_negative_seed_before_making_out(tmp_path, capsys):
    from sptf_ray.cli import main

    assert main(["build-network", "--sites", "2", "--seed", "-1", "--out", str(tmp_path / "net")]) == 2
    assert "seed must be >= 0" in capsys.readouterr().err and not (tmp_path / "net").exists()


def test_draw_sites_half_vgm_half_fxw_and_deterministic():
    config = NetworkConfig(n_sites=40, seed=5)
    a, b = draw_sites(config), draw_sites(config)
    pd.testing.assert_frame_equal(a.truth, b.truth)
    assert (a.truth["truth_model"] == "vgm").sum() == 20
    assert list(a.sites.columns[:7]) == list(schema.STATIC_COLUMNS)
    assert (a.sites["source"] == "virtual").all()
    other = draw_sites(NetworkConfig(n_sites=40, seed=6))
    assert not np.allclose(other.truth["vgm_Ks"], a.truth["vgm_Ks"])


def test_years_have_365_days_dropping_31_december_of_leap_years():
    dates = year_dates(2015, 3)
    assert len(dates) == 3 * 365
    assert pd.Timestamp("2016-12-31") not in dates and pd.Timestamp("2016-02-29") in dates
    assert dates[365] == pd.Timestamp("2016-01-01") and dates[730] == pd.Timestamp("2017-01-01")


# --------------------------------------------------------------------------- build (fake solver)
def _fake_simulate(calls=None, fail_on_call=None):
    """A stand-in solver: deterministic SWC from forcing and parameters, per row."""
    def simulate(model, params, precip, pet, lai, config=None, **options):
        if calls is not None:
            calls.append(len(params))
            if fail_on_call is not None and len(calls) == fail_on_call:
                raise RuntimeError("simulated crash")
        wetness = np.tanh(np.cumsum(precip - pet, axis=1) * 0.01) ** 2
        swc = 0.05 + 0.25 * wetness + 0.1 * params[:, :1]
        return types.SimpleNamespace(swc=swc, status=np.zeros(len(params), dtype=int))
    return simulate


def test_build_layout_schema_and_idempotence(tmp_path, monkeypatch):
    monkeypatch.setattr("sptf_ray.physics.simulate", _fake_simulate(), raising=False)
    out = str(tmp_path / "net")
    config = NetworkConfig(n_sites=12, n_years=3, seed=1, sites_per_task=5)
    manifest = build_network(config, out, executor="local", progress=lambda m: None)
    assert storage.verify_manifest(out)
    assert manifest["extra"]["n_sites"] == 12
    assert {"sites.parquet", "daily.parquet", "truth.parquet", "config.yaml",
            "network_report.md", "network_report.png"} <= set(manifest["files"])
    assert not storage.exists(storage.join(out, "_shards"))
    net = load_network(out)
    daily = net["daily"]
    assert list(daily.columns[:7]) == list(schema.DAILY_COLUMNS)
    assert len(daily) == 12 * 3 * 365 and daily["swc"].between(0, 1).all()
    assert not np.allclose(daily["swc"], daily["swc_true"])  # noise is there ...
    assert np.abs(daily["swc"] - daily["swc_true"]).mean() < 0.05  # ... and small
    report = storage.read_text(storage.join(out, "network_report.md"))
    assert "mean_swc" in report and "loam" in report
    # A second call finds the finished network and changes nothing.
    before = storage.read_manifest(out)["files"]
    build_network(config, out, executor="local", progress=lambda m: None)
    assert storage.read_manifest(out)["files"] == before
    with pytest.raises(ValueError, match="different virtual network"):
        build_network(NetworkConfig(n_sites=12, n_years=3, seed=2, sites_per_task=5), out, executor="local")


def test_build_resumes_after_a_crash_with_the_same_result(tmp_path, monkeypatch):
    config = NetworkConfig(n_sites=12, n_years=3, seed=3, sites_per_task=5)
    calls = []
    monkeypatch.setattr("sptf_ray.physics.simulate", _fake_simulate(calls, fail_on_call=3), raising=False)
    crashed = str(tmp_path / "crashed")
    with pytest.raises(RuntimeError, match="simulated crash"):
        build_network(config, crashed, executor="local", progress=lambda m: None)
    assert not storage.verify_manifest(crashed)

    calls.clear()
    monkeypatch.setattr("sptf_ray.physics.simulate", _fake_simulate(calls), raising=False)
    messages = []
    build_network(config, crashed, executor="local", progress=messages.append)
    assert any("resuming" in m for m in messages)
    assert len(calls) < 2 * 3  # batches already on disk were not simulated again

    clean = str(tmp_path / "clean")
    build_network(config, clean, executor="local", progress=lambda m: None)
    pd.testing.assert_frame_equal(load_network(crashed)["daily"], load_network(clean)["daily"])


def test_cli_build_network(tmp_path, monkeypatch, capsys):
    from sptf_ray.data import network_cli

    monkeypatch.setattr("sptf_ray.physics.simulate", _fake_simulate(), raising=False)
    parser = argparse.ArgumentParser()
    network_cli.add_parser(parser.add_subparsers(dest="command"))
    out = tmp_path / "cli"
    args = parser.parse_args(["build-network", "--sites", "4", "--years", "3", "--seed", "9", "--out", str(out),
                              "--executor", "local"])
    assert args.func(args) == 0
    assert "done in" in capsys.readouterr().out
    saved = (out / "config.yaml").read_text()
    assert "n_sites: 4" in saved and "seed: 9" in saved


# --------------------------------------------------------------------------- build (real solver)
def _solver_or_skip():
    physics = pytest.importorskip("sptf_ray.physics.solver", reason="physics solver not merged yet")
    return physics


SMALL = dict(n_sites=6, n_years=3, seed=0, sites_per_task=3)


@pytest.fixture(scope="module")
def small_network(tmp_path_factory):
    """6 sites x 3 years simulated by the real solver, in this process."""
    _solver_or_skip()
    out = str(tmp_path_factory.mktemp("small") / "net")
    build_network(NetworkConfig(**SMALL), out, executor="local", progress=lambda m: None)
    return out


def test_resimulating_from_stored_truth_reproduces_noise_free_swc_exactly(small_network):
    net = load_network(small_network)
    truth = net["truth"]
    assert set(truth["truth_model"]) == {"vgm", "fxw"}
    for site_id in truth["site_id"]:
        stored = net["daily"].loc[net["daily"]["site_id"] == site_id].sort_values("date")["swc_true"]
        np.testing.assert_array_equal(resimulate_site(net, site_id), stored.to_numpy(), err_msg=site_id)


def test_simulated_swc_is_physical(small_network):
    net = load_network(small_network)
    daily = net["daily"].merge(net["truth"], on="site_id")
    ok = daily["solver_status"] & 6 == 0
    assert ok.all(), daily.loc[~ok, "site_id"].unique()
    theta_s = np.where(daily["truth_model"] == "vgm", daily["vgm_theta_s"], daily["fxw_theta_s"])
    assert (daily["swc_true"] > 0).all() and (daily["swc_true"] <= theta_s + 1e-9).all()
    # Each year starts cold (h = -100 cm): year 2 simulated on its own gives the stored year 2.
    from sptf_ray.data.network import simulate_years, truth_parameters

    row = net["truth"].iloc[[0]]
    days = net["daily"][net["daily"]["site_id"] == row["site_id"].iloc[0]].sort_values("date")
    year2 = slice(365, 730)
    alone, _ = simulate_years(row["truth_model"].to_numpy(), truth_parameters(row),
                              *(days[c].to_numpy()[None, year2] for c in ("precip_cm", "pet_cm", "lai")))
    np.testing.assert_array_equal(alone[0], days["swc_true"].to_numpy()[year2])


def test_ray_tasks_build_the_same_network(small_network, ray_session, tmp_path):
    out = str(tmp_path / "ray")
    build_network(NetworkConfig(**SMALL), out, executor="ray", progress=lambda m: None)
    pd.testing.assert_frame_equal(load_network(out)["daily"], load_network(small_network)["daily"])
    with pytest.raises(ValueError, match=r"network tasks: 1 x \(3 CPU\) needs 3 CPU in all"):
        build_network(NetworkConfig(**{**SMALL, "cpus_per_task": 3}), str(tmp_path / "wide"), executor="ray",
                      progress=lambda m: None)


def test_site_dataset_qc_accepts_the_virtual_network(small_network):
    from sptf_ray.data.validate import validate_sites

    net = load_network(small_network)
    clean_static, clean_daily, report = validate_sites(net["sites"], net["daily"])
    assert set(clean_static["site_id"]) == set(net["sites"]["site_id"])
    assert len(clean_daily) == len(net["daily"])
