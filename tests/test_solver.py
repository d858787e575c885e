"""The Richards solver against HYDRUS-1D, analytic steady states, its own mass balance,
random parameter sets from Table 1, and its input contract.

Every reference here is independent of sptf_ray.physics: HYDRUS-1D outputs
(tests/data/hydrus_vgm), the steady-flux ODE dh/dz = q/K(h) - 1 integrated with scipy on
hydraulic functions typed in below, and DESIGN.md section 0's balance formula.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.integrate import solve_ivp
from scipy.optimize import brentq

from sptf_ray.physics import SolverConfig, parameter_space, simulate

DATA = Path(__file__).parent / "data" / "hydrus_vgm"
CASES = pd.read_csv(DATA / "cases.csv")
FORCING = pd.read_csv(DATA / "forcing.csv")
THETA5 = pd.read_csv(DATA / "theta5.csv")
VGM_COLS = ["theta_r", "theta_s", "alpha", "n", "Ks", "h50"]
THETA_TOL = SolverConfig().theta_tol

LOAM_VGM = (0.078, 0.43, 0.036, 1.56, 24.96, -800.0)
LOAM_FXW = (0.43, 0.02, 1.8, 1.0, 24.96, -800.0)  # theta_s, alpha, n, m, Ks, H50

def climate_forcing(climate: str):
    """(P, PET, LAI) for 'humid' or concatenated years such as 'humid+semiarid+temperate'."""
    parts = [FORCING[FORCING.climate == c].sort_values("day") for c in climate.split("+")]
    f = pd.concat(parts)
    return f.precip_cm.to_numpy(), f.pet_cm.to_numpy(), f.lai.to_numpy()


# ------------------------------------------------------------------ independent hydraulics
def vgm_k(p, h):
    tr, ts, a, n, ks = p[:5]
    h = np.minimum(np.asarray(h, float), 0.0)
    m = 1 - 1 / n
    se = (1 + (a * np.abs(h)) ** n) ** (-m)
    return ks * np.sqrt(se) * (1 - (1 - se ** (1 / m)) ** m) ** 2


def vgm_theta(p, h):
    tr, ts, a, n = p[:4]
    h = np.minimum(np.asarray(h, float), 0.0)
    return tr + (ts - tr) * (1 + (a * np.abs(h)) ** n) ** (-(1 - 1 / n))


def _gamma(a, n, m, h):
    return np.log(np.e + (a * np.abs(h)) ** n) ** (-m)


def _bracket(a, n, m, h):
    return 1 - (1 - _gamma(a, n, m, h) ** (1 / m)) ** (1 - 1 / n)


def fxw_k(p, h):
    """Paper eqs 7-8 (naive float64 is fine for loam-like parameters)."""
    ts, a, n, m, ks = p[:5]
    h0, ha, hm, l_, b = -6.3e6, -16.0, -1e5, 3.5, 2.693e-6
    h = np.minimum(np.asarray(h, float), 0.0)
    g0, ga, gm = (_gamma(a, n, m, x) for x in (h0, ha, hm))
    k_ha = min(ts * b * gm * ((ga - g0) / (gm - g0)) ** l_ * (_bracket(a, n, m, ha) / _bracket(a, n, m, hm)) ** 2, ks)
    g = _gamma(a, n, m, h)
    structure = ks * g ** (np.log(k_ha / ks) / np.log(ga))
    texture = k_ha * ((g - g0) / (ga - g0)) ** l_ * (_bracket(a, n, m, h) / _bracket(a, n, m, ha)) ** 2
    return np.where(h >= ha, structure, texture)


def fxw_theta(p, h):
    ts, a, n, m = p[:4]
    h = np.minimum(np.asarray(h, float), 0.0)
    return ts * (1 - np.log(1 + h / -1.5e4) / np.log(1 + -6.3e6 / -1.5e4)) * _gamma(a, n, m, h)


K_REF = {"vgm": vgm_k, "fxw": fxw_k}
THETA_REF = {"vgm": vgm_theta, "fxw": fxw_theta}


def bounds(model, params):
    params = np.atleast_2d(params)
    if model == "vgm":
        return params[:, 0], params[:, 1]
    return np.zeros(len(params)), params[:, 0]


# ------------------------------------------------------------------------ HYDRUS reference
@pytest.fixture(scope="module")
def reference_runs():
    """All reference cases, one batched simulate() per climate group."""
    runs = {}
    for climate, group in CASES.groupby("climate"):
        precip, pet, lai = climate_forcing(climate)
        assert len(precip) == group.days.iloc[0]
        b = len(group)
        result = simulate("vgm", group[VGM_COLS].to_numpy(), np.tile(precip, (b, 1)), np.tile(pet, (b, 1)),
                          np.tile(lai, (b, 1)), raise_on_failure=False)
        for i, case_id in enumerate(group.case_id):
            runs[case_id] = (result, i)
    return runs


def test_hydrus_reference_theta5(reference_runs):
    valid = CASES[CASES.hydrus_valid]
    rmse = {}
    for case in valid.itertuples():
        result, i = reference_runs[case.case_id]
        ref = THETA5[THETA5.case_id == case.case_id].sort_values("day")
        assert len(ref) == case.days and (ref.day.to_numpy() == np.arange(1, case.days + 1)).all()
        assert result.ok[i], f"{case.case_id}: {result.messages}"
        rmse[case.case_id] = float(np.sqrt(np.mean((result.swc[i] - ref.theta5.to_numpy()) ** 2)))
    print("\nRMSE of theta(5 cm) vs HYDRUS-1D:", {k: round(v, 4) for k, v in sorted(rmse.items())})
    assert len(rmse) == len(valid) == 19
    worst = max(rmse, key=rmse.get)
    assert rmse[worst] <= 0.008, f"{worst}: RMSE {rmse[worst]:.4f}"
    assert np.median(list(rmse.values())) <= 0.003


def _case_params():
    out = []
    for case in CASES.itertuples():
        out.append(pytest.param(case.case_id, id=case.case_id))
    return out


@pytest.mark.parametrize("case_id", _case_params())
def test_reference_case_completes_conserving_mass(reference_runs, case_id):
    result, i = reference_runs[case_id]
    case = CASES.set_index("case_id").loc[case_id]
    assert result.ok[i], result.messages
    swc = result.swc[i]
    assert np.isfinite(swc).all() and np.isfinite(result.daily_fluxes[i]).all()
    tol = 1e-6  # SWC is theta(h), so it lies within the retention curve's range
    assert swc.min() >= case.theta_r - tol and swc.max() <= case.theta_s + tol, (swc.min(), swc.max())
    assert abs(result.balance_error[i]) <= 1e-4


def test_bulk_budget_cuts_a_crawling_run(reference_runs):
    """The bulk stages' budget cuts a crawler and says so.

    With K's cusp at saturation left sharp (k_linear_head at its 1e-3 cm minimum), the clay
    under the humid year crawls (~230,000 steps); with the default 1 cm band every reference
    case, this one included, completes well within the bulk budget.
    """
    from sptf_ray.physics import BULK_STEPS_PER_DAY, STATUS_STEP_LIMIT, bulk_config

    case = CASES.set_index("case_id").loc["clay__humid__h800"]
    precip, pet, lai = climate_forcing(case.climate)
    cut = simulate("vgm", case[VGM_COLS].to_numpy(float), precip, pet, lai,
                   config=bulk_config(k_linear_head=1e-3), raise_on_failure=False)
    assert not cut.ok[0] and cut.status[0] & STATUS_STEP_LIMIT
    message = " ".join(cut.messages)  # the step or the iteration budget, whichever it meets first
    assert ("time steps" in message or "solver iterations" in message) and np.isnan(cut.swc[0, -1])
    assert SolverConfig().max_steps_per_day > BULK_STEPS_PER_DAY == bulk_config().max_steps_per_day
    steps = {c.case_id: int(reference_runs[c.case_id][0].n_steps[reference_runs[c.case_id][1]]) for c in CASES.itertuples()}
    days = CASES.set_index("case_id").days
    over = {k: v for k, v in steps.items() if v > BULK_STEPS_PER_DAY * days[k]}
    assert not over, over


def test_reference_swc_strictly_within_bounds(reference_runs):
    outside = []
    for case in CASES.itertuples():
        result, i = reference_runs[case.case_id]
        swc = result.swc[i]
        below, above = case.theta_r - swc.min(), swc.max() - case.theta_s
        if below > 1e-6 or above > 1e-6:
            outside.append((case.case_id, below, above))
    assert not outside, outside


# ------------------------------------------------------------------------ random parameters
RANDOM_CLIMATES = ("humid", "semiarid", "temperate")


def _random_batch(model, n, seed):
    rng = np.random.default_rng(seed)
    params = parameter_space(model).from_unit(rng.random((n, 6)))
    which = rng.integers(0, len(RANDOM_CLIMATES), n)
    forcing = [climate_forcing(c) for c in RANDOM_CLIMATES]
    precip, pet, lai = (np.stack([forcing[c][j] for c in which]) for j in range(3))
    return params, which, precip, pet, lai


# HYDRUS takes 2,000-9,400 steps per year; a run still crawling at 50,000 counts as failed
# (uncapped, a few crawl at dt < dt_min for many minutes).
RANDOM_CONFIG = SolverConfig(max_steps=50_000)


def _check_random(model, n, seed, max_failures):
    params, which, precip, pet, lai = _random_batch(model, n, seed)
    t0 = time.perf_counter()
    result = simulate(model, params, precip, pet, lai, config=RANDOM_CONFIG, raise_on_failure=False)
    wall = time.perf_counter() - t0
    ok = result.ok
    names = parameter_space(model).names
    n_col = params[:, names.index("n")]
    print(f"\n{model}: {ok.sum()}/{n} complete ({ok.mean():.1%}) in {wall:.1f} s; "
          f"{int((result.status & 1).sum())} needed steps below dt_min, "
          f"{int(((result.status & 4) > 0).sum())} hit the step limit")
    edges = [1.0, 1.2, 1.5, 2, 3, 4, 5, 6, 8, 13.5]
    fails = np.histogram(n_col[~ok], edges)[0]
    counts = np.histogram(n_col, edges)[0]
    print("  failures by n:", {f"{a}-{b}": f"{f}/{c}" for a, b, f, c in zip(edges, edges[1:], fails, counts) if c})
    for b in np.flatnonzero(~ok):
        print("  failed:", RANDOM_CLIMATES[which[b]], f"day {result.failed_day[b] + 1}",
              dict(zip(names, np.round(params[b], 4))))
    lo, hi = bounds(model, params)
    swc = result.swc[ok]
    assert np.isfinite(swc).all()
    # Within the bounds up to theta_tol (see test_reference_swc_strictly_within_bounds).
    assert (swc.min(axis=1) >= lo[ok] - 1e-6).all()
    assert (swc.max(axis=1) <= hi[ok] + 1e-6).all()
    assert np.abs(result.balance_error[ok]).max() <= 1e-4
    assert (~ok).sum() <= max_failures, f"{(~ok).sum()} of {n} {model} simulations failed"


# Failure thresholds: measured on these seeds, plus a margin, so that a regression shows.
# Measured (max_steps 50,000), 2026-12-04: 1,000 sets: VGM 0 and FXW-M3 0 failed (VGM 5, all
# n < 1.12, before K's last centimetre below saturation was linearized; 9 with Picard only).
@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("SPTF_RUN_SLOW") != "1", reason="~90 s per model on 2 cores: SPTF_RUN_SLOW=1")
@pytest.mark.parametrize("model, max_failures", [("vgm", 2), ("fxw", 2)])
def test_random_parameters_1000(model, max_failures):
    _check_random(model, 1000, seed=20260, max_failures=max_failures)


@pytest.mark.parametrize("model, max_failures", [("vgm", 1), ("fxw", 1)])
def test_random_parameters_200(model, max_failures):
    _check_random(model, 200, seed=7, max_failures=max_failures)


# ------------------------------------------------------------------------------ mass balance
def test_balance_error_matches_design_formula():
    precip, pet, lai = climate_forcing("humid")
    params = np.array([LOAM_VGM, (0.045, 0.43, 0.145, 2.68, 712.8, -800.0), (0.095, 0.41, 0.019, 1.31, 6.24, -800.0)])
    config = SolverConfig()
    result = simulate("vgm", params, precip, pet, lai, config=config)
    cum = result.cumulative
    # Daily fluxes add up to the totals.
    for j, name in enumerate(("infiltration", "runoff", "evaporation", "transpiration", "drainage")):
        np.testing.assert_allclose(result.daily_fluxes[:, :, j].sum(axis=1), cum[name], rtol=1e-12, atol=1e-12)
    # W0: h = -100 cm everywhere over control volumes summing to 50 cm.
    # rtol 1e-8: theta comes from the solver's per-simulation tables (Hermite, 1,024 points)
    np.testing.assert_allclose(result.storage_initial, 50.0 * vgm_theta(params.T, -100.0), rtol=1e-8)
    # W1 agrees with theta(final head) within the water-content tolerance.
    depths = config.node_depths()
    vol = np.gradient(depths) * 1.0
    vol[0], vol[-1] = 0.5 * (depths[1] - depths[0]), 0.5 * (depths[-1] - depths[-2])
    w1_from_h = np.array([(vgm_theta(p, h) * vol).sum() for p, h in zip(params, result.final_head)])
    assert np.all(np.abs(result.storage_final - w1_from_h) <= THETA_TOL * 50.0)
    assert (cum["drainage"] >= 0).all()  # free drainage: |sum q_bottom| = sum |q_bottom|
    d_w = result.storage_final - result.storage_initial
    net = cum["infiltration"] - cum["evaporation"] - cum["drainage"] - cum["transpiration"]
    scale = np.maximum(np.abs(d_w), cum["infiltration"] + cum["evaporation"] + cum["drainage"] + cum["transpiration"])
    np.testing.assert_allclose(result.balance_error, (d_w - net) / scale, atol=1e-12)
    assert np.abs(result.balance_error).max() <= 1e-4
    # Applied fluxes never exceed the potential ones; rain either infiltrates or runs off.
    assert (cum["evaporation"] <= cum["potential_evaporation"] + 1e-9).all()
    assert (cum["transpiration"] <= cum["potential_transpiration"] + 1e-9).all()
    cover = np.exp(-0.39 * lai)
    np.testing.assert_allclose(cum["potential_evaporation"], (pet * cover).sum(), rtol=1e-12)
    assert (cum["infiltration"] + cum["runoff"] <= precip.sum() + 1e-9).all()


def test_balance_error_detects_a_corrupted_storage():
    # The recomputed formula is sensitive: 1 mm of missing water is a clear error.
    precip, pet, lai = climate_forcing("semiarid")
    r = simulate("vgm", LOAM_VGM, precip, pet, lai)
    cum = r.cumulative
    d_w = r.storage_final - r.storage_initial - 0.1
    net = cum["infiltration"] - cum["evaporation"] - cum["drainage"] - cum["transpiration"]
    scale = np.maximum(np.abs(d_w), cum["infiltration"] + cum["evaporation"] + cum["drainage"] + cum["transpiration"])
    assert np.abs((d_w - net) / scale).min() > 1e-4


# --------------------------------------------------------------------------- grid refinement
@pytest.mark.parametrize("model, params", [("vgm", LOAM_VGM), ("fxw", LOAM_FXW)])
def test_grid_refinement_converges(model, params):
    precip, pet, lai = (x[:180] for x in climate_forcing("humid"))
    swc = {}
    # Steps of up to 0.05 d keep the time-stepping error (~5e-4 in theta at the default dt_max of
    # 1 d) below the spatial error, which is what refinement must show shrinking.
    for dz in (1.0, 0.5, 0.25):
        swc[dz] = simulate(model, params, precip, pet, lai, config=SolverConfig(node_spacing=dz, dt_max=0.05)).swc[0]
    coarse = np.sqrt(np.mean((swc[1.0] - swc[0.25]) ** 2))
    medium = np.sqrt(np.mean((swc[0.5] - swc[0.25]) ** 2))
    print(f"\n{model}: RMSE vs 0.25 cm grid: 1 cm {coarse:.5f}, 0.5 cm {medium:.5f}")
    assert medium < coarse
    assert coarse < 0.005


# ---------------------------------------------------------------------- analytic steady states
def steady_profile(model, params, q, bottom_head, heights):
    """Heads at `heights` above the bottom for a steady downward flux q (cm/d; < 0 upward):
    dh/dz = q/K(h) - 1 from h(0) = bottom_head (z up), i.e. dz = dh / (q/K - 1)."""
    k = K_REF[model]

    def rhs(z, h):
        return q / k(params, h) - 1.0

    sol = solve_ivp(rhs, (0.0, heights.max()), [bottom_head], t_eval=heights, rtol=1e-10, atol=1e-8, method="LSODA")
    assert sol.success
    return sol.y[0]


STEADY_CASES = [
    # model, params, P, PET, bottom head
    pytest.param("vgm", LOAM_VGM, 2.0, 0.0, 0.0, id="vgm-infiltration-water-table"),
    pytest.param("vgm", LOAM_VGM, 0.5, 0.0, -50.0, id="vgm-infiltration-h-50"),
    pytest.param("fxw", LOAM_FXW, 2.0, 0.0, 0.0, id="fxw-infiltration-water-table"),
    pytest.param("fxw", LOAM_FXW, 0.5, 0.0, -50.0, id="fxw-infiltration-h-50"),
    pytest.param("vgm", LOAM_VGM, 0.0, 0.2, 0.0, id="vgm-evaporation-water-table"),
    pytest.param("fxw", LOAM_FXW, 0.0, 0.2, 0.0, id="fxw-evaporation-water-table"),
]


@pytest.mark.parametrize("model, params, p_rate, pet_rate, bottom_head", STEADY_CASES)
def test_steady_flux_profile_matches_quadrature(model, params, p_rate, pet_rate, bottom_head):
    days = 200
    config = SolverConfig(bottom="head", bottom_head=bottom_head)
    result = simulate(model, params, np.full(days, p_rate), np.full(days, pet_rate), np.zeros(days), config=config)
    daily = result.daily_fluxes[0]
    q = p_rate - pet_rate  # net downward flux at the surface (LAI = 0: all PET is evaporation)
    top_flux = daily[-1, 0] - daily[-1, 2]
    assert top_flux == pytest.approx(q, rel=1e-3, abs=1e-6), "not in flux mode or not steady"
    assert daily[-1, 1] == pytest.approx(0.0, abs=1e-9) and daily[-1, 3] == pytest.approx(0.0, abs=1e-12)
    depths = config.node_depths()
    heights = config.column_depth - depths[::-1]  # ascending from the bottom
    h_ref = steady_profile(model, params, q, bottom_head, heights)[::-1]  # back to depth order
    h = result.final_head[0]
    err = np.abs(h - h_ref)
    print(f"\n{model} q={q}: max |h - h_ref| = {err.max():.3f} cm (h_top {h[0]:.2f}, ref {h_ref[0]:.2f})")
    assert err.max() <= 0.5 + 0.01 * np.abs(h_ref).max()
    # Water content at 5 cm from the analytic head.
    np.testing.assert_allclose(result.swc[0, -1], THETA_REF[model](params, h_ref[5]), atol=2e-3)


@pytest.mark.parametrize("model, params", [("vgm", LOAM_VGM), ("fxw", LOAM_FXW)])
@pytest.mark.parametrize("q", [0.3, 5.0])
def test_free_drainage_steady_state_is_unit_gradient(model, params, q):
    h_star = brentq(lambda h: K_REF[model](params, h) - q, -1e5, -1e-9, xtol=1e-12, rtol=1e-14)
    days = 150
    # A tight theta_tol: with the default 1e-3 the iterate may sit anywhere within the
    # tolerance of the steady state, ~0.1 cm of head where the curve is flat.
    result = simulate(model, params, np.full(days, q), np.zeros(days), np.zeros(days),
                      config=SolverConfig(theta_tol=1e-5))
    h = result.final_head[0]
    np.testing.assert_allclose(h, h_star, rtol=1e-3, atol=0.05)
    # Drainage = q. With theta_tol = 1e-3 the state wobbles around the steady state (daily
    # drainage +-0.5 % at q = 5); storage is conserved, so the 20-day mean is exact.
    np.testing.assert_allclose(result.daily_fluxes[0, -20:, 4].mean(), q, rtol=1e-3)
    np.testing.assert_allclose(result.daily_fluxes[0, -20:, 4], q, rtol=2e-2)
    np.testing.assert_allclose(result.swc[0, -1], THETA_REF[model](params, h_star), atol=1e-4)


# ------------------------------------------------------------------------- input validation
def _forcing(t=10):
    return np.full(t, 0.1), np.full(t, 0.3), np.full(t, 1.0)


@pytest.mark.parametrize("which, value, match", [
    (0, np.nan, "precip.*finite"),
    (1, np.inf, "pet.*finite"),
    (2, np.nan, "lai.*finite"),
    (0, -0.1, "precip.*negative"),
    (1, -1.0, "pet.*negative"),
])
def test_bad_forcing_values(which, value, match):
    forcing = list(_forcing())
    forcing[which] = forcing[which].copy()
    forcing[which][3] = value
    with pytest.raises(ValueError, match=match):
        simulate("vgm", LOAM_VGM, *forcing)


def test_forcing_shape_mismatch():
    p, e, l_ = _forcing()
    with pytest.raises(ValueError, match="same days"):
        simulate("vgm", LOAM_VGM, p, e[:9], l_)
    with pytest.raises(ValueError, match="rows"):
        simulate("vgm", np.array([LOAM_VGM] * 2), np.tile(p, (3, 1)), e, l_)
    with pytest.raises(ValueError, match="shape"):
        simulate("vgm", LOAM_VGM, p.reshape(2, 5, 1), e, l_)
    with pytest.raises(ValueError, match="params must have shape"):
        simulate("vgm", LOAM_VGM[:5], p, e, l_)


@pytest.mark.parametrize("model, index, value, match", [
    ("vgm", 0, 0.43, "theta_r"),  # theta_r >= theta_s
    ("vgm", 0, 0.5, "theta_r"),
    ("vgm", 3, 1.0, r"\bn\b"),
    ("vgm", 3, 0.9, r"\bn\b"),
    ("vgm", 4, 0.0, "Ks"),
    ("vgm", 4, -1.0, "Ks"),
    ("vgm", 5, 0.0, "H50"),
    ("vgm", 5, 10.0, "H50"),
    ("vgm", 2, 0.0, "alpha"),
    ("vgm", 1, np.nan, "theta_s"),
    ("fxw", 2, 1.0, r"\bn\b"),
    ("fxw", 3, 0.0, r"\bm\b"),
    ("fxw", 4, 0.0, "Ks"),
    ("fxw", 5, 0.0, "H50"),
    ("fxw", 0, 1.2, "theta_s"),
])
def test_unphysical_parameters_rejected(model, index, value, match):
    params = np.array([LOAM_VGM if model == "vgm" else LOAM_FXW] * 3)
    params[1, index] = value
    with pytest.raises(ValueError, match=match):
        simulate(model, params, *_forcing())


def test_unknown_model_rejected():
    with pytest.raises(ValueError, match="unknown hydraulic model"):
        simulate("brooks_corey", LOAM_VGM, *_forcing())


# ----------------------------------------------------------------------------- days contract
def test_swc_index_is_end_of_day():
    t = 20
    precip = np.zeros(t)
    pet = np.full(t, 0.3)
    lai = np.full(t, 1.0)
    wet = precip.copy()
    wet[9] = 3.0  # rain on day 10, i.e. during (9, 10]
    r = simulate("vgm", np.array([LOAM_VGM] * 2), np.stack([precip, wet]), pet, lai)
    # Identical up to the end of day 9 (index 8), wetter from the end of day 10 (index 9).
    np.testing.assert_array_equal(r.swc[0, :9], r.swc[1, :9])
    assert r.swc[1, 9] > r.swc[0, 9] + 0.01
    # Causality: a run cut at day 12 reproduces the first 12 days.
    short = simulate("vgm", LOAM_VGM, wet[:12], pet[:12], lai[:12])
    np.testing.assert_allclose(short.swc[0], r.swc[1, :12], rtol=0, atol=1e-12)


def test_single_day_and_single_parameter_set():
    p, e, l_ = _forcing(30)
    one = simulate("vgm", LOAM_VGM, p[:1], e[:1], l_[:1])
    assert one.swc.shape == (1, 1) and np.isfinite(one.swc).all()
    full = simulate("vgm", np.array([LOAM_VGM, LOAM_VGM]), np.tile(p, (2, 1)), e, l_)
    single = simulate("vgm", np.array(LOAM_VGM), p, e, l_)  # (6,) params, (T,) forcing
    assert single.swc.shape == (1, 30) and full.swc.shape == (2, 30)
    np.testing.assert_allclose(single.swc[0], full.swc[1], atol=1e-12)
    np.testing.assert_allclose(one.swc[0, 0], full.swc[0, 0], atol=1e-12)
    # Day 1 starts from h = -100 cm: the 5 cm SWC moves away from theta(-100) but not far.
    assert abs(one.swc[0, 0] - vgm_theta(LOAM_VGM, -100.0)) < 0.05


def test_spill_moves_water_above_saturation_to_the_front_conserving_it():
    from sptf_ray.physics.solver import _spill_excess

    vol = np.array([0.5, 1.0, 1.0, 1.0, 0.5])
    th = np.array([0.40, 0.4003, 0.4002, 0.30, 0.30])
    before = float(th @ vol)
    left = _spill_excess(th, vol, 0.40)
    assert left == 0.0 and np.isclose(th @ vol, before, rtol=0, atol=1e-15)
    assert (th <= 0.40 + 1e-15).all() and np.isclose(th[3], 0.3005) and th[4] == 0.30
    full = np.array([0.4001, 0.40, 0.40])
    assert np.isclose(_spill_excess(full, np.array([0.5, 1.0, 0.5]), 0.40), 0.0001 * 0.5)
    assert (full == 0.40).all()


# Two VGM sets with a near-step retention curve (n ~ 7) from the benchmark run's surrogate set,
# forced by virtual sites' years (full precision: rounded to 6 digits, the bad path was not taken).
# A Newton-to-Picard switch inside an attempt (tried 2026-12-04) drove both below dt_min until
# the bulk budget cut them, ten minutes each.
NEAR_STEP_VGM = {
    "dataset_sim2336": (0.11727834492921829, 0.5381425619125366, 0.08315087109804153, 7.391828536987305,
                        117.5848617553711, -1593.5286865234375),
    "dataset_sim3468": (0.0938800498843193, 0.6173099875450134, 0.006324263755232096, 6.945164680480957,
                        99.19957733154297, -1427.257568359375),
}


# Built by a 24,576-set VGM surrogate set (seed 1, shard 10, row 77, site-forced): below dt_min,
# 2,314 steps but over 1 M iterations in 285 days; before the iteration budget it held its shard
# for more than 17 minutes under the step budget alone.
ITERATION_CRAWLER_VGM = (0.12117137014865875, 0.47508421540260315, 0.007261073216795921, 6.082269668579102,
                         2.8698623180389404, -1457.762939453125)


def test_bulk_iteration_budget_cuts_a_run_that_crawls_within_the_step_budget():
    from sptf_ray.physics import BULK_ITERATIONS_PER_DAY, BULK_STEPS_PER_DAY, STATUS_STEP_LIMIT, bulk_config

    forcing = pd.read_csv(DATA.parent / "near_step_vgm_forcing.csv")
    year = forcing[forcing.case == "dataset_seed1_sim2637"].sort_values("day")
    days = len(year)
    cut = simulate("vgm", np.array(ITERATION_CRAWLER_VGM), year.precip_cm.to_numpy(), year.pet_cm.to_numpy(),
                   year.lai.to_numpy(), config=bulk_config(), raise_on_failure=False)
    assert cut.status[0] & STATUS_STEP_LIMIT and not cut.ok[0]
    assert "solver iterations" in " ".join(cut.messages)
    assert cut.n_steps[0] < BULK_STEPS_PER_DAY * days  # the step budget alone would not have cut it
    # one step's retries may overrun the budget, but not by more than a step's worth
    assert BULK_ITERATIONS_PER_DAY * days <= cut.n_iterations[0] < BULK_ITERATIONS_PER_DAY * days + 20_000
    last = int(np.flatnonzero(np.isfinite(cut.swc[0]))[-1])
    assert last < days - 1 and np.isnan(cut.swc[0, last + 1:]).all()
    assert SolverConfig().max_iterations_per_day > BULK_ITERATIONS_PER_DAY == bulk_config().max_iterations_per_day


def test_near_step_vgm_sets_complete_without_going_below_dt_min():
    from sptf_ray.physics import STATUS_OK, bulk_config

    forcing = pd.read_csv(DATA.parent / "near_step_vgm_forcing.csv")
    names = list(NEAR_STEP_VGM)
    f = {k: np.stack([forcing[forcing.case == c].sort_values("day")[k].to_numpy() for c in names])
         for k in ("precip_cm", "pet_cm", "lai")}
    params = np.array([NEAR_STEP_VGM[c] for c in names])
    result = simulate("vgm", params, f["precip_cm"], f["pet_cm"], f["lai"],
                      config=bulk_config(max_steps=30_000), raise_on_failure=False)
    assert (result.status == STATUS_OK).all(), (result.status, result.messages)
    assert np.isfinite(result.swc).all() and np.abs(result.balance_error).max() <= 1e-4


def test_chunked_simulation_is_one_call_cut_in_pieces():
    from sptf_ray.physics import simulate_swc_in_chunks

    rng = np.random.default_rng(5)
    space = parameter_space("fxw")
    params = space.lower + rng.random((5, 6)) * (space.upper - space.lower)
    precip, pet, lai = rng.gamma(0.3, 0.5, (5, 60)), np.full((5, 60), 0.4), np.full((5, 60), 2.0)
    whole = simulate("fxw", params, precip, pet, lai, raise_on_failure=False)
    seen = []
    swc, status = simulate_swc_in_chunks("fxw", params, precip, pet, lai, chunk=2,
                                         on_chunk=lambda done, n: seen.append((done, n)))
    np.testing.assert_array_equal(swc, whole.swc)
    np.testing.assert_array_equal(status, whole.status)
    assert seen == [(2, 5), (4, 5), (5, 5)]
    with pytest.raises(ValueError, match="chunk"):
        simulate_swc_in_chunks("fxw", params, precip, pet, lai, chunk=0)
