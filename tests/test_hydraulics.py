"""Hydraulic functions (paper eqs 5-8) against independent references written here.

The references are the paper's formulas typed in directly and evaluated with mpmath at
80 significant digits, so no cancellation or overflow in them can mask an error in the
library's log-space float64 implementation.
"""
from __future__ import annotations

import math

import mpmath as mp
import numpy as np
import pytest

from sptf_ray.physics import hydraulic_functions, parameter_space, theta_s_upper

mp.mp.dps = 80

# FXW-M3 constants from the paper (section 2.2.1), typed in independently of hydraulics.py.
HR, H0, HA, HM, L_FXW, B_HM = -1.5e4, -6.3e6, -16.0, -1.0e5, 3.5, 2.693e-6

# VGM: theta_r, theta_s, alpha, n, Ks, H50. Table 1 corners of (alpha, n) and typical soils.
VGM_SETS = {
    "loam": (0.078, 0.43, 0.036, 1.56, 24.96, -800.0),
    "clay": (0.068, 0.38, 0.008, 1.09, 4.8, -800.0),
    "a_lo_n_lo": (0.0, 0.32, 0.0015, 1.05, 0.3, -50.0),
    "a_lo_n_hi": (0.15, 0.41, 0.0015, 8.0, 8000.0, -2000.0),
    "a_hi_n_lo": (0.15, 0.41, 0.23, 1.05, 8000.0, -2000.0),
    "a_hi_n_hi": (0.0, 0.32, 0.23, 8.0, 0.3, -50.0),
}
# FXW-M3: theta_s, alpha, n, m, Ks, H50. The paper's Fig. 2 set and Table 1 corners.
FXW_SETS = {
    "fig2": (0.4, 0.006, 1.1, 0.66, 100.0, -800.0),
    "corner_ha": (0.41, 0.0015, 13.5, 0.2, 100.0, -800.0),  # DESIGN §1: naive form jumps at ha
    "a_lo_n_lo_m_hi": (0.32, 0.0015, 1.05, 1.6, 8000.0, -50.0),
    "a_hi_n_hi_m_lo": (0.41, 0.2, 13.5, 0.2, 0.5, -2000.0),
    "a_hi_n_lo_m_lo": (0.41, 0.2, 1.05, 0.2, 8000.0, -2000.0),
    "a_hi_n_hi_m_hi": (0.32, 0.2, 13.5, 1.6, 8000.0, -50.0),
    "a_lo_n_hi_m_hi_lowKs": (0.32, 0.0015, 13.5, 1.6, 0.5, -50.0),
}

VGM_HEADS = -np.logspace(-2, 5, 43)  # -0.01 .. -1e5 cm
FXW_HEADS = np.concatenate([-np.logspace(-2, 6.6, 53), [HA * (1 + 1e-6), HA * (1 - 1e-6), HM, -5e6]])


# ------------------------------------------------------------------------ mpmath references
def vgm_ref(p, h):
    """Paper eq. 5 (l = 0.5, m = 1 - 1/n), evaluated in high precision: (theta, K)."""
    tr, ts, a, n, ks = (mp.mpf(x) for x in p[:5])
    h = mp.mpf(h)
    if h >= 0:
        return ts, ks
    m = 1 - 1 / n
    se = (1 + (a * abs(h)) ** n) ** (-m)
    theta = tr + (ts - tr) * se
    k = ks * mp.sqrt(se) * (1 - (1 - se ** (1 / m)) ** m) ** 2
    return theta, k


def _fxw_gamma(a, n, m, h):
    return mp.log(mp.e + (a * abs(h)) ** n) ** (-m)


def _fxw_bracket(a, n, m, h):
    return 1 - (1 - _fxw_gamma(a, n, m, h) ** (1 / m)) ** (1 - 1 / n)


def fxw_ref(p, h):
    """Paper eqs 6-8, evaluated in high precision: (theta, K)."""
    ts, a, n, m, ks = (mp.mpf(x) for x in p[:5])
    h = mp.mpf(h)
    if h >= 0:
        return ts, ks
    hr, h0, ha, hm, l_, b = (mp.mpf(x) for x in (HR, H0, HA, HM, L_FXW, B_HM))
    theta = ts * (1 - mp.log(1 + h / hr) / mp.log(1 + h0 / hr)) * _fxw_gamma(a, n, m, h)
    g0, ga, gm = (_fxw_gamma(a, n, m, x) for x in (h0, ha, hm))
    k_ha = ts * b * gm * ((ga - g0) / (gm - g0)) ** l_ * (_fxw_bracket(a, n, m, ha) / _fxw_bracket(a, n, m, hm)) ** 2
    k_ha = min(k_ha, ks)
    if h >= ha:
        k = ks * _fxw_gamma(a, n, m, h) ** (mp.log(k_ha / ks) / mp.log(ga))
    else:
        g = _fxw_gamma(a, n, m, h)
        k = k_ha * ((g - g0) / (ga - g0)) ** l_ * (_fxw_bracket(a, n, m, h) / _fxw_bracket(a, n, m, ha)) ** 2
    return theta, k


REFS = {"vgm": vgm_ref, "fxw": fxw_ref}


def ref_arrays(model, p, heads):
    pairs = [REFS[model](p, h) for h in heads]
    return np.array([float(t) for t, _ in pairs]), np.array([float(k) for _, k in pairs])


def ref_capacity(model, p, heads, rel_step=1e-12):
    """Central finite difference of the high-precision theta: exact to ~1e-24 relative."""
    out = []
    for h in heads:
        h = mp.mpf(h)
        dh = abs(h) * rel_step
        out.append(float((REFS[model](p, h + dh)[0] - REFS[model](p, h - dh)[0]) / (2 * dh)))
    return np.array(out)


def _rel_err(a, b, floor=1e-300):
    return np.abs(a - b) / np.maximum(np.abs(b), floor)


# ------------------------------------------------------------------------------------ VGM
@pytest.mark.parametrize("name", list(VGM_SETS))
def test_vgm_saturation_values(name):
    p = VGM_SETS[name]
    theta, k, c = hydraulic_functions("vgm", p, [0.0, 5.0, -1e-12])
    assert theta[0] == pytest.approx(p[1], rel=1e-14) and theta[1] == pytest.approx(p[1], rel=1e-14)
    assert k[0] == pytest.approx(p[4], rel=1e-14) and k[1] == pytest.approx(p[4], rel=1e-14)
    assert c[0] == 0.0 and c[1] == 0.0
    # Continuous from below at h = 0.
    assert theta[2] == pytest.approx(p[1], rel=1e-9)
    # (K is not: with n < 2 the Mualem term drops steeply within a micron of h = 0.)
    assert k[2] <= p[4] and k[2] == pytest.approx(float(vgm_ref(p, -1e-12)[1]), rel=1e-9)


@pytest.mark.parametrize("name", ["loam", "a_lo_n_hi", "a_hi_n_hi"])
def test_vgm_dry_limit_is_theta_r(name):
    p = VGM_SETS[name]
    theta, k, _ = hydraulic_functions("vgm", p, [-1e8, -1e20])
    # Se ~ |alpha h|^(1-n): for these n it is below 1e-6 at -1e20 cm.
    assert theta[1] == pytest.approx(p[0], abs=1e-6 * (p[1] - p[0]))
    assert theta[0] >= theta[1] >= p[0]
    assert 0.0 <= k[1] < 1e-12 * p[4]


def test_vgm_low_n_dry_limit_follows_asymptote():
    # With n = 1.05 theta approaches theta_r only as |alpha h|^-(n-1): check the asymptote.
    p = VGM_SETS["a_hi_n_lo"]
    tr, ts, a, n = p[:4]
    h = np.array([-1e10, -1e20, -1e30])
    theta = hydraulic_functions("vgm", p, h)[0]
    se = (theta - tr) / (ts - tr)
    expected = (a * np.abs(h)) ** (-(n - 1.0) / n * n)  # Se ~ x^-m with x = |alpha h|^n, m n = n - 1
    np.testing.assert_allclose(se, expected, rtol=1e-6)
    assert np.all(np.diff(theta) < 0)


@pytest.mark.parametrize("name", list(VGM_SETS))
def test_vgm_matches_eq5_reference(name):
    p = VGM_SETS[name]
    theta, k, _ = hydraulic_functions("vgm", p, VGM_HEADS)
    theta_ref, k_ref = ref_arrays("vgm", p, VGM_HEADS)
    assert _rel_err(theta, theta_ref).max() < 1e-12
    # K to 1e-9 wherever it can matter (K > 1e-10 Ks); the far-dry tail of high-n soils,
    # where 1 - (1 - Se^(1/m))^m ~ m/x is computed as a difference of logs, to 1e-3, and
    # below 1e-25 Ks only absolutely.
    ks = p[4]
    tier1, tier2 = k_ref > 1e-10 * ks, (k_ref > 1e-25 * ks) & (k_ref <= 1e-10 * ks)
    assert _rel_err(k[tier1], k_ref[tier1]).max() < 1e-9
    if tier2.any():
        assert _rel_err(k[tier2], k_ref[tier2]).max() < 1e-3
    assert np.all(np.abs(k - k_ref) <= np.maximum(1e-3 * k_ref, 1e-25 * ks))


@pytest.mark.parametrize("name", list(VGM_SETS))
def test_vgm_conductivity_monotone(name):
    heads = np.sort(-np.logspace(-4, 8, 2000))  # ascending: driest first
    k = hydraulic_functions("vgm", VGM_SETS[name], heads)[1]
    assert np.all(np.isfinite(k)) and np.all(k >= 0)
    assert np.all(np.diff(k) >= 0), "K(h) must not decrease as h rises"
    assert np.all(np.diff(hydraulic_functions("vgm", VGM_SETS[name], heads)[0]) >= 0)


@pytest.mark.parametrize("name", list(VGM_SETS))
def test_vgm_capacity_is_dtheta_dh(name):
    p = VGM_SETS[name]
    c = hydraulic_functions("vgm", p, VGM_HEADS)[2]
    c_ref = ref_capacity("vgm", p, VGM_HEADS)
    assert np.all(c >= 0)
    assert _rel_err(c, c_ref).max() < 1e-9
    # And consistent with the library's own theta (float64 central differences) where
    # the theta difference over the step is well above round-off.
    dh = 1e-5 * np.abs(VGM_HEADS)
    t_plus = hydraulic_functions("vgm", p, VGM_HEADS + dh)[0]
    t_minus = hydraulic_functions("vgm", p, VGM_HEADS - dh)[0]
    fd = (t_plus - t_minus) / (2 * dh)
    ok = c * dh > 1e-9 * p[1]
    assert ok.sum() >= 5
    np.testing.assert_allclose(c[ok], fd[ok], rtol=1e-4)


# ------------------------------------------------------------------------------------ FXW
@pytest.mark.parametrize("name", list(FXW_SETS))
def test_fxw_end_points(name):
    p = FXW_SETS[name]
    theta, k, c = hydraulic_functions("fxw", p, [0.0, 3.0, H0, H0 * 1.01])
    assert theta[0] == pytest.approx(p[0], rel=1e-14) and theta[1] == pytest.approx(p[0], rel=1e-14)
    assert k[0] == pytest.approx(p[4], rel=1e-14) and k[1] == pytest.approx(p[4], rel=1e-14)
    assert c[0] == 0.0 and c[1] == 0.0
    assert theta[2] == pytest.approx(0.0, abs=1e-14) and theta[3] == pytest.approx(0.0, abs=1e-14)
    assert k[2] == pytest.approx(0.0, abs=1e-30)
    # theta(h) -> 0 continuously at h0 (the log factor vanishes linearly there).
    t_near = hydraulic_functions("fxw", p, [H0 * (1 - 1e-6)])[0][0]
    assert 0.0 < t_near < 1e-5 * p[0]


@pytest.mark.parametrize("name", list(FXW_SETS))
def test_fxw_matches_eqs_6_to_8_reference(name):
    p = FXW_SETS[name]
    theta, k, _ = hydraulic_functions("fxw", p, FXW_HEADS)
    theta_ref, k_ref = ref_arrays("fxw", p, FXW_HEADS)
    assert _rel_err(theta, theta_ref).max() < 1e-10
    # K spans up to 30 decades; within -1e6 cm it is computed from well-separated Gammas.
    wet = FXW_HEADS >= -1e6
    assert _rel_err(k[wet], k_ref[wet]).max() < 1e-8
    # Close to h0, Gamma(h) - Gamma(h0) cancels in float64: a looser bound there.
    assert _rel_err(k[~wet], k_ref[~wet]).max() < 1e-4


@pytest.mark.parametrize("name", list(FXW_SETS))
def test_fxw_conductivity_continuous_at_ha(name):
    p = FXW_SETS[name]
    eps = 1e-12
    heads = [HA * (1 + eps), HA, HA * (1 - eps)]  # left (drier), at, right (wetter)
    _, k, _ = hydraulic_functions("fxw", p, heads)
    assert k[0] == pytest.approx(k[1], rel=1e-9)
    assert k[2] == pytest.approx(k[1], rel=1e-9)
    # Both branches equal K(ha) of eq. 8 there.
    assert k[1] == pytest.approx(float(fxw_ref(p, HA)[1]), rel=1e-9)


def test_fxw_corner_has_no_jump_at_ha():
    """alpha 0.0015, n 13.5, m 0.2: |alpha ha|^n ~ 1e-22, ln Gamma(ha) ~ 1e-23 (DESIGN §1)."""
    p = FXW_SETS["corner_ha"]
    heads = HA + np.array([-1e-3, -1e-6, -1e-9, 0.0, 1e-9, 1e-6, 1e-3, 1.0, 8.0, 15.0])
    theta, k, _ = hydraulic_functions("fxw", p, heads)
    _, k_ref = ref_arrays("fxw", p, heads)
    np.testing.assert_allclose(k, k_ref, rtol=1e-9)
    ratio = k[1:] / k[:-1]
    assert np.all(ratio >= 1.0)
    # Within 1e-3 cm of ha, K changes by at most its smooth slope (d ln K/dh ~ 1.5 /cm here).
    assert np.all(ratio[:6] < 1.01), ratio
    # K(ha) is far below Ks here, so a naive 0/0 in the exponent would show as a big jump.
    assert k[3] < 0.5 * p[4]


@pytest.mark.parametrize("name", list(FXW_SETS))
def test_fxw_monotone(name):
    p = FXW_SETS[name]
    heads = np.sort(np.concatenate([-np.logspace(-4, np.log10(6.29e6), 3000), HA + np.linspace(-0.5, 0.5, 201)]))
    theta, k, c = hydraulic_functions("fxw", p, heads)
    assert np.all(np.isfinite(theta)) and np.all(np.isfinite(k)) and np.all(np.isfinite(c))
    assert np.all(np.diff(k) >= 0), "K(h) must not decrease as h rises"
    assert np.all(np.diff(theta) >= 0)
    assert np.all(c >= 0)
    assert np.all((theta >= 0) & (theta <= p[0]))


@pytest.mark.parametrize("name", list(FXW_SETS))
def test_fxw_capacity_is_dtheta_dh(name):
    p = FXW_SETS[name]
    heads = FXW_HEADS[FXW_HEADS >= -1e6]
    c = hydraulic_functions("fxw", p, heads)[2]
    c_ref = ref_capacity("fxw", p, heads)
    assert _rel_err(c, c_ref).max() < 1e-8
    dh = 1e-5 * np.abs(heads)
    fd = (hydraulic_functions("fxw", p, heads + dh)[0] - hydraulic_functions("fxw", p, heads - dh)[0]) / (2 * dh)
    ok = c * dh > 1e-9 * p[0]
    assert ok.sum() >= 5
    np.testing.assert_allclose(c[ok], fd[ok], rtol=1e-4)


def test_fxw_ks_cap_makes_structure_domain_flat():
    # With a tiny Ks the eq. 8 value exceeds it, K(ha) = Ks, and K = Ks for every h >= ha.
    p = (0.41, 0.2, 1.5, 1.0, 1e-12, -800.0)
    assert float(fxw_ref(p, HA)[1]) == pytest.approx(1e-12, rel=1e-12)
    k = hydraulic_functions("fxw", p, [-15.9, -8.0, -0.1])[1]
    np.testing.assert_allclose(k, 1e-12, rtol=1e-12)


def test_batched_evaluation_matches_single():
    ps = np.array(list(VGM_SETS.values()))
    heads = np.tile(VGM_HEADS, (len(ps), 1)) * np.linspace(0.5, 2.0, len(ps))[:, None]
    theta, k, c = hydraulic_functions("vgm", ps, heads)
    for i, p in enumerate(ps):
        t1, k1, c1 = hydraulic_functions("vgm", p, heads[i])
        np.testing.assert_array_equal(theta[i], t1)
        np.testing.assert_array_equal(k[i], k1)
        np.testing.assert_array_equal(c[i], c1)


def test_vgm_finite_at_extreme_heads():
    # |alpha h|^n overflows to inf here; C and K once came out NaN (inf * 0).
    p = VGM_SETS["a_hi_n_hi"]
    theta, k, c = hydraulic_functions("vgm", p, [-1e45, -1e300])
    assert np.all(np.isfinite(theta)) and np.all(np.isfinite(k)) and np.all(np.isfinite(c))
    np.testing.assert_allclose(theta, p[0], rtol=0, atol=1e-12)  # the dry limit: theta_r, K = C = 0
    assert np.all((k >= 0) & (k < 1e-300)) and np.all((c >= 0) & (c < 1e-300))


# ------------------------------------------------------------------------ parameter space
TABLE1 = {  # paper Table 1, typed in: (lower, upper) in column order
    "vgm": [(0.0, 0.15), (0.32, 0.41), (0.0015, 0.23), (1.05, 8.0), (0.3, 8000.0), (-2000.0, -50.0)],
    "fxw": [(0.32, 0.41), (0.0015, 0.2), (1.05, 13.5), (0.2, 1.6), (0.5, 8000.0), (-2000.0, -50.0)],
}
LOG_COLS = {"vgm": (2, 4), "fxw": (1, 4)}  # alpha and Ks


@pytest.mark.parametrize("model", ["vgm", "fxw"])
def test_parameter_space_bounds_are_table1(model):
    space = parameter_space(model)
    np.testing.assert_allclose(space.lower, [b[0] for b in TABLE1[model]])
    np.testing.assert_allclose(space.upper, [b[1] for b in TABLE1[model]])
    np.testing.assert_allclose(space.from_unit(np.zeros(6)), space.lower, rtol=1e-12)
    np.testing.assert_allclose(space.from_unit(np.ones(6)), space.upper, rtol=1e-12)


@pytest.mark.parametrize("model", ["vgm", "fxw"])
def test_parameter_space_round_trip_and_log_scaling(model):
    space = parameter_space(model)
    u = np.random.default_rng(7).random((500, 6))
    p = space.from_unit(u)
    lo, hi = np.array(TABLE1[model]).T
    assert np.all((p >= lo - 1e-12) & (p <= hi + 1e-12))
    np.testing.assert_allclose(space.to_unit(p), u, atol=1e-12)
    np.testing.assert_allclose(space.from_unit(space.to_unit(p)), p, rtol=1e-12)
    mid = space.from_unit(np.full(6, 0.5))
    for j in range(6):
        expected = math.sqrt(lo[j] * hi[j]) if j in LOG_COLS[model] else 0.5 * (lo[j] + hi[j])
        assert mid[j] == pytest.approx(expected, rel=1e-12), space.names[j]
    # Equal unit steps are equal ratios for log-scaled parameters.
    j = LOG_COLS[model][1]
    ks = space.from_unit(np.array([[0.5] * 4 + [x, 0.5] for x in (0.2, 0.4, 0.6)]))[:, j]
    assert ks[1] / ks[0] == pytest.approx(ks[2] / ks[1], rel=1e-12)


@pytest.mark.parametrize("model", ["vgm", "fxw"])
def test_theta_s_upper_override(model):
    space = parameter_space(model, theta_s_upper=0.55)
    i = space.names.index("theta_s")
    assert space.upper[i] == 0.55 and space.lower[i] == 0.32
    assert space.from_unit(np.ones(6))[i] == pytest.approx(0.55)
    assert parameter_space(model).upper[i] == 0.41  # the default is untouched
    assert theta_s_upper(0.47) == 0.47
    assert theta_s_upper(0.30) == 0.41
    assert theta_s_upper(float("nan")) == 0.41


def test_parameter_space_rejects_unknown_model():
    with pytest.raises(ValueError, match="unknown hydraulic model"):
        parameter_space("brooks-corey")
