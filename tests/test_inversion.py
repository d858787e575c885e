"""Site inversion (paper 2.3) and the `invert` stage: recovery, mask, resume, actor failure, errors."""
from __future__ import annotations

import json
import os
import signal

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sptf_ray import storage
from sptf_ray.inverse.job import InvertConfig, run_inversion, site_file
from sptf_ray.inverse.site import (SCEUASettings, SiteYear, SolverForward, frozen_mask, invert_site, invert_sites,
                                   invert_year,
                                   make_forward, masked_mse, nse, rmse, score_on_eval_year, site_years,
                                   validate_site)
from sptf_ray.inverse.synthetic import synthetic_dataset, synthetic_site
from sptf_ray.physics.parameters import PARAM_NAMES

TRUE_FXW = np.array([0.39, 0.02, 2.2, 0.9, 60.0, -600.0])  # theta_s, alpha, n, m, Ks, H50


@pytest.fixture(scope="module")
def known_site():
    rng = np.random.default_rng(3)
    _, daily = synthetic_site("K", "fxw", TRUE_FXW, rng)
    return site_years(daily, "K")


def _write_dataset(path, static, daily):
    storage.atomic_write_parquet(static, os.path.join(path, "sites.parquet"))
    storage.atomic_write_parquet(daily, os.path.join(path, "daily.parquet"))
    return str(path)


@pytest.fixture(scope="module")
def small_dataset(tmp_path_factory):
    static, daily = synthetic_dataset(3, seed=7, models=("fxw",))
    return _write_dataset(tmp_path_factory.mktemp("sites"), static, daily)


FAST = {"max_evals": 16, "n_complexes": 1}  # one initial population: cheap, for plumbing tests


# ------------------------------------------------------------------------------ objective
def test_frozen_mask_and_metrics():
    lst = np.array([-1.0, 0.0, np.nan, 5.0])
    assert frozen_mask(lst).tolist() == [False, True, True, True]
    obs = np.array([0.9, 0.2, 0.3, 0.4])
    sim = np.array([[0.0, 0.2, 0.3, 0.4], [0.0, 0.3, 0.3, 0.4], [np.nan, 0.2, 0.3, 0.4], [0.1, np.nan, 0.3, 0.4]])
    mse = masked_mse(sim, obs, frozen_mask(lst))
    assert mse[0] == 0.0  # the frozen day's error is ignored
    assert mse[1] == pytest.approx(0.01 / 3)
    assert mse[2] == 0.0  # NaN on a frozen day does not matter
    assert mse[3] == np.inf  # a failed counted day does
    assert rmse(sim[1], obs, frozen_mask(lst)) == pytest.approx(np.sqrt(0.01 / 3))
    assert nse(sim[0], obs, frozen_mask(lst)) == 1.0


def test_inversion_recovers_known_site_and_ignores_frozen_days(known_site):
    calib, target = known_site[2001], known_site[2002]
    frozen = ~calib.mask
    assert 20 < frozen.sum() < 200  # the synthetic winter freezes
    # Corrupt the frozen days: eq. 17 must not see them.
    corrupted = SiteYear(calib.site_id, calib.year, np.where(frozen, 0.05, calib.swc), calib.precip, calib.pet,
                         calib.lai, calib.lst_c)
    forward = SolverForward()
    truth_sim = forward.simulate_batch("fxw", TRUE_FXW[None], calib.precip, calib.pet, calib.lai)
    assert masked_mse(truth_sim, corrupted.swc, corrupted.mask)[0] < 1e-20
    # 500 evaluations: with 200-300 the search ends at calib RMSE 0.005-0.006 depending on the solver's
    # last digits (0.0058 / 0.0051 after the Newton iteration), which tests the budget, not eq. 17.
    res = invert_year("fxw", corrupted, target, forward, SCEUASettings(max_evals=500, n_complexes=2, seed=0))
    assert res.calib_rmse <= 0.005, res
    assert res.objective == pytest.approx(res.calib_rmse ** 2, rel=1e-6)
    assert res.rmse < 0.02 and res.nse > 0.8  # scored on the following year, started cold
    assert res.n_evals <= 500 and res.reason == "max_evals"
    assert res.theta_s_upper == pytest.approx(max(0.41, calib.swc.max()))
    assert res.params[0] <= res.theta_s_upper


def test_non_converging_simulations_score_inf_and_are_counted(known_site):
    class Flaky:
        name = "flaky"

        def simulate_batch(self, model, params, precip, pet, lai):
            out = np.full((params.shape[0], 365), 0.3)
            out[::2] = np.nan  # every other simulation "fails"
            return out

    res = invert_year("vgm", known_site[2001], known_site[2002], Flaky(), SCEUASettings(**FAST))
    assert 7 <= res.n_failed <= res.n_evals // 2 + 2 and np.isfinite(res.objective)


def test_rescoring_with_another_forward_model(known_site):
    # What the benchmark does for surrogate-calibrated parameters: re-simulate the eval year.
    table = invert_site("K", known_site, SolverForward(), models=("fxw", "vgm"), settings=SCEUASettings(**FAST))
    same = score_on_eval_year(table, {"K": known_site}, SolverForward())
    np.testing.assert_allclose(same[["nse", "rmse"]], table[["nse", "rmse"]], rtol=1e-12)

    class Offset:  # the solver plus a constant bias of 0.01 on every day
        name = "offset"

        def simulate_batch(self, model, params, precip, pet, lai):
            return SolverForward().simulate_batch(model, params, precip, pet, lai) + 0.01

    biased = score_on_eval_year(table, {"K": known_site}, Offset())
    target = known_site[2002]
    sim = SolverForward().simulate_batch("fxw", table.loc[[0], list(PARAM_NAMES["fxw"])].to_numpy(), target.precip,
                                         target.pet, target.lai)[0] + 0.01
    assert biased.loc[0, "rmse"] == pytest.approx(rmse(sim, target.swc, target.mask))
    assert (biased["nse"] != table["nse"]).all() and table["forward"].eq("solver").all()


class CountingSolver(SolverForward):
    """The solver, counting forward calls and the rows they carry."""

    def __init__(self):
        super().__init__()
        self.calls, self.rows = 0, 0

    def simulate_batch(self, model, params, precip, pet, lai):
        self.calls += 1
        self.rows += len(params)
        return super().simulate_batch(model, params, precip, pet, lai)


def test_sites_in_lockstep_share_forward_calls_and_get_their_lone_results(small_dataset):
    daily = storage.read_parquet(os.path.join(small_dataset, "daily.parquet"))
    sites = {sid: site_years(g, sid) for sid, g in daily.groupby(daily["site_id"].astype(str))}
    settings = SCEUASettings(max_evals=60, n_complexes=1, seed=3)  # a few CCE rounds beyond the population
    alone_forward, together_forward = CountingSolver(), CountingSolver()
    alone = pd.concat([invert_site(sid, years, alone_forward, models=("fxw", "vgm"), settings=settings)
                       for sid, years in sites.items()], ignore_index=True)
    together = invert_sites(sites, together_forward, models=("fxw", "vgm"), settings=settings)
    pd.testing.assert_frame_equal(together.drop(columns="seconds"), alone.drop(columns="seconds"))
    assert together_forward.rows == alone_forward.rows  # the same simulations ...
    assert together_forward.calls < alone_forward.calls / 2  # ... in far fewer, bigger calls
    assert (together["seconds"] > 0).all()


# ------------------------------------------------------------------------------ input errors
def test_bad_inputs_raise_clear_errors(known_site, tmp_path):
    y = known_site[2001]
    nan_swc = SiteYear("B", 2001, np.where(np.arange(365) == 10, np.nan, y.swc), y.precip, y.pet, y.lai, y.lst_c)
    with pytest.raises(ValueError, match="swc has 1 missing"):
        nan_swc.validate()
    frozen = SiteYear("B", 2001, y.swc, y.precip, y.pet, y.lai, np.full(365, -5.0))
    with pytest.raises(ValueError, match="unfrozen"):
        frozen.validate()
    short = SiteYear("B", 2001, y.swc[:300], y.precip[:300], y.pet[:300], y.lai[:300], y.lst_c[:300])
    with pytest.raises(ValueError, match="no two consecutive"):
        validate_site("B", {2001: short, 2002: known_site[2002]})
    with pytest.raises(ValueError, match="no two consecutive"):
        validate_site("B", {2001: y})
    with pytest.raises(FileNotFoundError, match="no model bundle"):
        make_forward(str(Path("/nonexistent") / "surrogate"))
    with pytest.raises(ValueError, match="unknown config key"):
        InvertConfig and run_inversion({"data": "x", "out": "y", "max_evalz": 3})
    with pytest.raises(ValueError, match="modes"):
        run_inversion({"data": "x", "out": "y", "modes": ["tomorrow"]})

    # A dataset with one good site and one QC rejects (a third of a year's SWC missing): asked for
    # by name, the stage names it and why, before any work.
    static, daily = synthetic_dataset(1, seed=1, models=("fxw",))
    bad = daily.assign(site_id="BAD")
    bad.loc[bad.index[100:220], "swc"] = np.nan
    static = pd.concat([static, static.assign(site_id="BAD")], ignore_index=True)
    data = _write_dataset(tmp_path / "d", static, pd.concat([daily, bad], ignore_index=True))
    with pytest.raises(ValueError, match=r"1 site\(s\) asked for were rejected by QC: BAD: .*2001: .*missing"):
        run_inversion({"data": data, "out": str(tmp_path / "o"), "sites": ["BAD"], "ray": {"enabled": False}})
    with pytest.raises(ValueError, match=r"site\(s\) not in the dataset: \['NOPE'\]"):
        run_inversion({"data": data, "out": str(tmp_path / "o"), "sites": ["NOPE"], "ray": {"enabled": False}})
    assert not os.path.exists(tmp_path / "o" / "sites")  # nothing ran


def test_inversion_reads_the_data_through_qc(tmp_path, capsys):
    """As training and predict do: a short SWC gap is interpolated (the site is inverted, not
    refused), a site QC rejects is left out and named, a year QC rejects leaves the site's others."""
    static, daily = synthetic_dataset(1, seed=1, models=("fxw",), n_years=3)
    gappy = daily.copy()
    gappy.loc[gappy.index[100:103], "swc"] = np.nan  # 3 days of 2001: interpolated
    bad = daily.assign(site_id="BAD")
    bad.loc[bad.index[365 + 50:365 + 200], "swc"] = np.nan  # 2002 rejected: no two consecutive years
    short = daily.assign(site_id="YEAR")
    short.loc[short.index[730 + 10:730 + 150], "swc"] = np.nan  # 2003 rejected, 2001-2002 kept
    static = pd.concat([static, static.assign(site_id="BAD"), static.assign(site_id="YEAR")], ignore_index=True)
    data = _write_dataset(tmp_path / "d", static, pd.concat([gappy, bad, short], ignore_index=True))
    out = str(tmp_path / "o")
    table = run_inversion({"data": data, "out": out, "models": ["fxw"], "sceua": FAST, "ray": {"enabled": False}})
    pairs = table.groupby("site_id")[["calib_year", "eval_year"]].apply(lambda g: g.values.tolist()).to_dict()
    assert pairs == {"S0000": [[2001, 2002], [2002, 2003]], "YEAR": [[2001, 2002]]}
    extra = storage.read_manifest(out)["extra"]
    assert list(extra["qc_rejected_sites"]) == ["BAD"] and "2002" in extra["qc_rejected_sites"]["BAD"]
    assert list(extra["left_out_years"]) == ["YEAR"]
    assert "year 2003" in extra["left_out_years"]["YEAR"][0] and "rejected by QC" in extra["left_out_years"]["YEAR"][0]
    err = capsys.readouterr().err
    assert "1 site(s) rejected by QC are left out: BAD" in err and "1 site-year(s) left out" in err


# ------------------------------------------------------------------------------ the stage
def test_stage_without_ray_resumes_and_refuses_other_configs(small_dataset, tmp_path):
    out = str(tmp_path / "inv")
    cfg = {"data": small_dataset, "out": out, "models": ["fxw"], "modes": ["historical", "same_year"],
           "sceua": FAST, "ray": {"enabled": False}, "progress": False}
    ran = []
    table = run_inversion(cfg, on_site_done=lambda s, st: ran.append(s["site_id"]))
    assert sorted(ran) == ["S0000", "S0001", "S0002"]
    assert len(table) == 6 and set(table["mode"]) == {"historical", "same_year"}
    hist = table[table["mode"] == "historical"]
    assert (hist["calib_year"] == 2001).all() and (hist["eval_year"] == 2002).all()
    same = table[table["mode"] == "same_year"]
    assert (same["calib_year"] == 2002).all()
    assert np.allclose(same["calib_rmse"], same["rmse"])  # same-year scores where it calibrated
    assert (table["evaluations"] <= 16).all() and table["theta_s"].notna().all() and table["theta_r"].isna().all()
    saved = storage.read_parquet(os.path.join(out, "inversion.parquet"))
    pd.testing.assert_frame_equal(saved.reset_index(drop=True), table.reset_index(drop=True))
    assert storage.verify_manifest(out) and os.path.exists(os.path.join(out, "config.yaml"))
    from sptf_ray.provenance import host_info

    hosts = json.loads(storage.read_text(os.path.join(out, "hosts.json")))
    assert hosts == {sid: host_info() for sid in ("S0000", "S0001", "S0002")}  # who inverted each site

    # Resume: finished sites are skipped; a removed site file is redone. A site file from before
    # hosts were kept (no Parquet metadata) resumes too, its host unknown.
    storage.atomic_write_parquet(storage.read_parquet(site_file(out, "S0001")), site_file(out, "S0001"))
    os.remove(site_file(out, "S0002"))
    ran.clear()
    again = run_inversion(cfg, on_site_done=lambda s, st: ran.append(s["site_id"]))
    assert ran == ["S0002"]
    pd.testing.assert_frame_equal(again.drop(columns="seconds"), table.drop(columns="seconds"))
    hosts = json.loads(storage.read_text(os.path.join(out, "hosts.json")))
    assert hosts["S0001"] is None and hosts["S0002"] == host_info()

    with pytest.raises(ValueError, match="different inversion config"):
        run_inversion({**cfg, "sceua": {"max_evals": 60, "n_complexes": 3}})

    # Sites in batches of two (lockstep): the same results, one file per site, every site reported.
    ran.clear()
    batched = run_inversion({**cfg, "out": str(tmp_path / "batched"), "sites_per_batch": 2},
                            on_site_done=lambda s, st: ran.append(s["site_id"]))
    assert sorted(ran) == ["S0000", "S0001", "S0002"]
    pd.testing.assert_frame_equal(batched.drop(columns="seconds"), table.drop(columns="seconds"))
    assert all(os.path.exists(site_file(str(tmp_path / "batched"), sid)) for sid in ran)
    with pytest.raises(ValueError, match="sites_per_batch"):
        run_inversion({**cfg, "sites_per_batch": 0})


def test_resume_inverts_again_a_site_whose_data_changed(small_dataset, tmp_path, capsys):
    """A re-run into the same out with the same settings keeps a finished site only when it would
    read the same data: a site whose SWC changed since is inverted again, the others are kept."""
    out = str(tmp_path / "inv")
    cfg = {"data": small_dataset, "out": out, "models": ["fxw"], "sceua": FAST, "ray": {"enabled": False}}
    first = run_inversion(cfg)
    static = storage.read_parquet(os.path.join(small_dataset, "sites.parquet"))
    daily = storage.read_parquet(os.path.join(small_dataset, "daily.parquet"))
    daily.loc[daily["site_id"] == "S0001", "swc"] *= 0.6
    shifted = _write_dataset(tmp_path / "shifted", static, daily)
    ran = []
    again = run_inversion({**cfg, "data": shifted}, on_site_done=lambda s, st: ran.append(s["site_id"]))
    assert ran == ["S0001"]
    assert "1 finished site(s) were inverted from other data" in capsys.readouterr().err
    fresh = run_inversion({**cfg, "data": shifted, "out": str(tmp_path / "fresh")})
    cols = ["site_id", "nse", "rmse", "theta_s", "Ks"]
    pd.testing.assert_frame_equal(again[cols], fresh[cols])  # as if inverted from scratch
    kept = again["site_id"] != "S0001"
    pd.testing.assert_frame_equal(again.loc[kept, cols].reset_index(drop=True),
                                  first.loc[first["site_id"] != "S0001", cols].reset_index(drop=True))
    assert not np.allclose(again.loc[~kept, "rmse"], first.loc[first["site_id"] == "S0001", "rmse"])


def test_a_year_that_cannot_be_inverted_leaves_the_sites_other_pairs(tmp_path, capsys):
    """A frozen third year is left out (named in the manifest); the site's first pair is inverted."""
    static, daily = synthetic_dataset(1, seed=1, models=("fxw",), n_years=3)
    daily.loc[daily["date"].dt.year == 2003, "lst_c"] = -5.0
    data = _write_dataset(tmp_path / "d", static, daily)
    out = str(tmp_path / "o")
    table = run_inversion({"data": data, "out": out, "models": ["fxw"], "sceua": FAST, "ray": {"enabled": False}})
    assert table[["calib_year", "eval_year"]].values.tolist() == [[2001, 2002]]
    left_out = storage.read_manifest(out)["extra"]["left_out_years"]
    assert list(left_out) == ["S0000"] and "year 2003: only 0 unfrozen day(s)" in left_out["S0000"][0]
    assert "1 site-year(s) left out" in capsys.readouterr().err


def test_a_site_whose_every_simulation_fails_does_not_take_its_batch_down(small_dataset, tmp_path, monkeypatch):
    """Lockstep neighbours of a site the forward model cannot run are kept; the site is named."""
    import sptf_ray.inverse.job as job

    daily = storage.read_parquet(os.path.join(small_dataset, "daily.parquet"))
    bad_precip = daily[daily["site_id"] == "S0001"]["precip_cm"].to_numpy()[:365]

    class FailsOneSite(SolverForward):
        def simulate_batch(self, model, params, precip, pet, lai):
            swc = super().simulate_batch(model, params, precip, pet, lai)
            return np.where(np.all(np.atleast_2d(precip) == bad_precip, axis=-1)[:, None], np.nan, swc)

    monkeypatch.setattr(job, "make_forward", lambda spec, num_threads=None: FailsOneSite())
    out = str(tmp_path / "inv")
    cfg = {"data": small_dataset, "out": out, "models": ["fxw"], "sceua": FAST, "ray": {"enabled": False},
           "progress": False, "sites_per_batch": 3}
    ran = []
    with pytest.raises(RuntimeError, match=r"1 batch\(es\).*every simulation failed.*'S0001' fxw"):
        run_inversion(cfg, on_site_done=lambda s, st: ran.append(s["site_id"]))
    assert ran == ["S0000", "S0002"]
    assert [os.path.exists(site_file(out, sid)) for sid in ("S0000", "S0001", "S0002")] == [True, False, True]
    kept = storage.read_parquet(site_file(out, "S0002"))
    alone = run_inversion({**cfg, "out": str(tmp_path / "alone"), "sites_per_batch": 1,
                           "sites": ["S0002"]}).drop(columns="seconds")
    pd.testing.assert_frame_equal(kept.drop(columns="seconds"), alone)  # what it gets alone


def test_cli_reports_a_failed_batch_without_a_traceback(small_dataset, tmp_path, monkeypatch, capsys):
    """The user reads what failed and that a re-run retries it; exit 1 (not 2: the input was fine)."""
    import sptf_ray.inverse.job as job
    from sptf_ray.cli import main

    class FailsEverySite(SolverForward):
        def simulate_batch(self, model, params, precip, pet, lai):
            return np.full_like(super().simulate_batch(model, params, precip, pet, lai), np.nan)

    monkeypatch.setattr(job, "make_forward", lambda spec, num_threads=None: FailsEverySite())
    rc = main(["invert", small_dataset, "--out", str(tmp_path / "inv"), "--models", "fxw", "--max-sites", "1",
               "--max-evals", "16", "--n-complexes", "1", "--no-ray"])
    err = capsys.readouterr().err
    assert rc == 1
    assert "sptf invert: failed: 1 batch(es) of sites failed (re-run to retry them" in err
    assert "Traceback" not in err


def test_a_failed_batch_carries_its_finished_sites_across_ray(ray_session):
    from sptf_ray.inverse.job import BatchFailed

    @ray_session.remote
    def fails():
        raise BatchFailed("site 'B' failed", [{"site_id": "A"}])

    with pytest.raises(Exception) as caught:
        ray_session.get(fails.remote())
    assert caught.value.cause.summaries == [{"site_id": "A"}] and "site 'B'" in str(caught.value.cause)


def test_cli_invert_no_ray(small_dataset, tmp_path, capsys):
    from sptf_ray.cli import main

    out = str(tmp_path / "cli")
    rc = main(["invert", small_dataset, "--out", out, "--models", "fxw", "--max-sites", "1", "--max-evals", "16",
               "--n-complexes", "1", "--no-ray", "--sites-per-batch", "2"])
    assert rc == 0
    assert "inverted 1 site(s)" in capsys.readouterr().out
    from sptf_ray.config import load_config

    saved = load_config(InvertConfig, os.path.join(out, "config.yaml"))
    assert saved.sceua.max_evals == 16 and saved.ray.enabled is False and saved.sites_per_batch == 2

    # jobs/invert.py: the same stage from a config file (resumes: the site is already done).
    import importlib.util

    spec = importlib.util.spec_from_file_location("job_invert", os.path.join(os.path.dirname(__file__), "..",
                                                                           "jobs", "invert.py"))
    job = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(job)
    assert job.main([os.path.join(out, "config.yaml")]) == 0
    assert "inverted 1 site(s)" in capsys.readouterr().out
    # ... taking sptf invert's flags over the config, and its one-line errors (exit 2)
    assert job.main([os.path.join(out, "config.yaml"), "--max-sites", "0"]) == 2
    assert "max_sites" in capsys.readouterr().err


def test_ray_actors_survive_a_killed_actor(ray_session, small_dataset, tmp_path):
    ray = ray_session
    out = str(tmp_path / "ray")
    killed = []

    def kill_actors(summary, state):
        # After the first site: SIGKILL both actors, the idle one about to get the next site and
        # (most likely) the one still busy with its site, whose task must then be retried.
        if not killed:
            for pid in state["pids"].values():
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)

    cfg = {"data": small_dataset, "out": out, "models": ["fxw"], "sceua": FAST, "progress": False,
           "ray": {"num_actors": 2, "cpus_per_actor": 1.0, "max_restarts": 2, "max_task_retries": 2}}
    seen = []
    table = run_inversion(cfg, on_site_done=lambda s, st: (seen.append(s), kill_actors(s, st)))
    assert len(killed) == 2
    later_pids = {s["pid"] for s in seen[1:]}
    assert later_pids and not later_pids & set(killed)  # restarted actors did the rest
    assert sorted(table["site_id"]) == ["S0000", "S0001", "S0002"]
    assert len({s["site_id"] for s in seen}) == 3
    hosts = json.loads(storage.read_text(os.path.join(out, "hosts.json")))
    assert {h["node"] for h in hosts.values()} == {os.uname().nodename}  # the actors' own record
    assert ray.is_initialized()


def test_actors_the_local_ray_cannot_hold_are_refused_not_awaited(ray_session, small_dataset, tmp_path):
    cfg = {"data": small_dataset, "out": str(tmp_path / "wide"), "models": ["fxw"], "sceua": FAST,
           "progress": False, "ray": {"cpus_per_actor": 4.0}}  # the session's instance has 2 CPUs
    with pytest.raises(ValueError, match=r"inversion actors: 1 x \(4 CPU\) needs 4 CPU in all \(the cluster "
                                         r"has 2\); 4 CPU on one node .*cannot grow: lower ray.num_actors"):
        run_inversion(cfg)
    cfg["ray"] = {"num_actors": 3, "cpus_per_actor": 1.0}
    with pytest.raises(ValueError, match=r"3 x \(1 CPU\) needs 3 CPU in all"):
        run_inversion(cfg)


def test_all_site_years_cuts_every_site_as_one_site_alone(small_dataset):
    from sptf_ray.inverse.site import all_site_years

    daily = storage.read_parquet(os.path.join(small_dataset, "daily.parquet"))
    daily = daily.drop(index=daily.index[-3:])  # the last site's last year incomplete: kept, 362 days
    every = all_site_years(daily.sample(frac=1.0, random_state=2))  # row order does not matter
    assert sorted(every) == sorted(daily["site_id"].astype(str).unique())
    for sid, years in every.items():
        alone = site_years(daily, sid)
        assert sorted(years) == sorted(alone)
        for year, site_year in years.items():
            for name in ("swc", "precip", "pet", "lai", "lst_c"):
                np.testing.assert_array_equal(getattr(site_year, name), getattr(alone[year], name))
    last = daily["site_id"].astype(str).iloc[-1]
    assert min(len(y.swc) for y in every[last].values()) == 362
