"""Soil hydraulic models: van Genuchten-Mualem (VGM) and FXW-M3 (paper eqs 5-8).

Each simulation's six parameters are first turned into a small array of derived
constants (`derive`), so the solver's inner loop evaluates theta(h), K(h) and
C(h) = dtheta/dh with no repeated setup. Units: cm, days, cm3/cm3; h < 0 unsaturated.

Numerics follow DESIGN.md section 1: every power is taken in log space with
log1p/expm1 so that the Table 1 corners (n up to 13.5, alpha down to 0.0015) neither
overflow nor lose the tiny differences that K depends on.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from .parameters import check_model

VGM = 0
FXW = 1
MODEL_CODES = {"vgm": VGM, "fxw": FXW}

# VGM pore-connectivity parameter.
VGM_L = 0.5
# FXW-M3 constants (paper eq. 6-8; Wang et al. 2023).
FXW_HR = -1.5e4  # shape head (cm); the paper's value, some codes use -1.5e3
FXW_H0 = -6.3e6  # head at zero water content (cm)
FXW_HA = -16.0  # structure/texture domain boundary (cm)
FXW_HM = -1.0e5  # head where film flow dominates (cm)
FXW_L = 3.5
FXW_B_HM = 2.693e-6  # film-flow factor b(hm), cm/d

N_DERIVED = 16
_E = math.e
_LOG_1P_H0_HR = math.log1p(FXW_H0 / FXW_HR)
# Below this head the FXW water content is zero; the solver never goes there.
FXW_H_FLOOR = FXW_H0 * (1.0 - 1e-9)


# ----------------------------------------------------------------------------- FXW pieces
@njit(cache=True, inline="always")
def _fxw_log_term(alpha, n, h):
    """log1p(|alpha h|^n / e) = ln(e + |alpha h|^n) - 1, safe for tiny and huge |alpha h|^n."""
    ah = alpha * abs(h)
    if ah <= 0.0:
        return 0.0, 0.0
    y = math.exp(n * math.log(ah))
    return math.log1p(y / _E), y


@njit(cache=True, inline="always")
def _fxw_bracket(lg, n):
    """1 - (1 - Gamma^(1/m))^(1 - 1/n), with 1 - Gamma^(1/m) = lg / (1 + lg)."""
    if lg <= 0.0:
        return 1.0
    return -math.expm1((1.0 - 1.0 / n) * math.log(lg / (1.0 + lg)))


@njit(cache=True)
def _fxw_gamma(alpha, n, m, h):
    lg, _ = _fxw_log_term(alpha, n, h)
    return math.exp(-m * math.log1p(lg))


@njit(cache=True)
def _derive_fxw(p, out):
    theta_s, alpha, n, m, ks = p[0], p[1], p[2], p[3], p[4]
    g0 = _fxw_gamma(alpha, n, m, FXW_H0)
    lg_a, _ = _fxw_log_term(alpha, n, FXW_HA)
    ln_g_a = -m * math.log1p(lg_a)
    g_a = math.exp(ln_g_a)
    lg_m, _ = _fxw_log_term(alpha, n, FXW_HM)
    g_m = math.exp(-m * math.log1p(lg_m))
    br_a = _fxw_bracket(lg_a, n)
    br_m = _fxw_bracket(lg_m, n)
    # eq. 8: the capillary curve anchored to film conductivity at hm, capped by Ks.
    k_ha = theta_s * FXW_B_HM * g_m * ((g_a - g0) / (g_m - g0)) ** FXW_L * (br_a / br_m) ** 2
    k_ha = min(k_ha, ks)
    out[6] = g0
    out[7] = g_a - g0
    out[8] = br_a
    out[9] = k_ha
    out[10] = math.log1p(lg_a)  # -ln Gamma(ha) / m, > 0
    out[11] = math.log(k_ha / ks)  # <= 0


@njit(cache=True)
def derive_one(code, p, out):
    """Fill `out` (N_DERIVED,) with the constants one simulation needs."""
    for i in range(N_DERIVED):
        out[i] = 0.0
    for i in range(6):
        out[i] = p[i]
    if code == VGM:
        out[6] = 1.0 - 1.0 / p[3]  # m
    else:
        _derive_fxw(p, out)


@njit(cache=True, inline="always")
def _vgm_state(d, h):
    theta_r, theta_s, alpha, n, ks, m = d[0], d[1], d[2], d[3], d[4], d[6]
    if h >= 0.0:
        return theta_s, ks, 0.0
    log_x = n * math.log(alpha * -h)
    # log(1 + x) and log(x / (1 + x)) without forming x where it overflows (dry heads: x = inf
    # made inf * 0 = NaN in C and K) or x / (1 + x) where it rounds to 1.
    if log_x > 0.0:
        log_ratio = -math.log1p(math.exp(-log_x))
        log1p_x = log_x - log_ratio
    else:
        log1p_x = math.log1p(math.exp(log_x))
        log_ratio = log_x - log1p_x
    se = math.exp(-m * log1p_x)
    theta = theta_r + (theta_s - theta_r) * se
    cap = (theta_s - theta_r) * m * n * math.exp(log_ratio) * se / -h
    # 1 - (1 - Se^(1/m))^m with 1 - Se^(1/m) = x / (1 + x), in log space.
    mualem = -math.expm1(m * log_ratio)
    k = ks * math.sqrt(se) * mualem * mualem
    return theta, k, cap


@njit(cache=True, inline="always")
def _fxw_state(d, h):
    theta_s, alpha, n, m, ks = d[0], d[1], d[2], d[3], d[4]
    if h >= 0.0:
        return theta_s, ks, 0.0
    if h <= FXW_H0:
        return 0.0, 0.0, 0.0
    lg, y = _fxw_log_term(alpha, n, h)
    ln_e_y = 1.0 + lg  # ln(e + y)
    log1p_lg = math.log1p(lg)
    gamma = math.exp(-m * log1p_lg)
    a_h = 1.0 - math.log1p(h / FXW_HR) / _LOG_1P_H0_HR
    theta = theta_s * a_h * gamma
    dlngamma_dh = m * n * y / (-h * _E * (1.0 + y / _E) * ln_e_y)
    da_dh = 1.0 / (_LOG_1P_H0_HR * (-FXW_HR - h))
    cap = theta_s * gamma * (da_dh + a_h * dlngamma_dh)
    if h >= FXW_HA:
        # Structure domain: K = Ks Gamma^(ln(K(ha)/Ks)/ln Gamma(ha)), written as a ratio
        # of logs so that a tiny ln Gamma(ha) (alpha 0.0015, n 13.5) stays exact.
        denom = d[10]
        if denom > 1e-300:
            ratio = log1p_lg / denom
        else:
            ratio = (h / FXW_HA) ** n
        k = ks * math.exp(d[11] * ratio)
    else:
        g0, dg_a, br_a, k_ha = d[6], d[7], d[8], d[9]
        rel = (gamma - g0) / dg_a
        if rel < 0.0:
            rel = 0.0
        br = _fxw_bracket(lg, n) / br_a
        k = k_ha * rel**FXW_L * br * br
    return theta, k, cap


@njit(cache=True, inline="always")
def hydraulic_state(code, d, h):
    """(theta, K, C) at head h for one simulation's derived constants d."""
    if code == VGM:
        return _vgm_state(d, h)
    return _fxw_state(d, h)


@njit(cache=True, inline="always")
def uptake_stress(h, h50, p):
    """S-shaped stress factor (paper eq. 10); 1 at and above saturation."""
    if h >= 0.0:
        return 1.0
    r = h / h50
    if p == 3.0:  # the paper's exponent; a plain product is several times cheaper than pow
        return 1.0 / (1.0 + r * r * r)
    return 1.0 / (1.0 + r**p)


@njit(cache=True, parallel=True)
def _evaluate(code, derived, heads, out_theta, out_k, out_c):
    n_sets, n_heads = heads.shape
    for b in prange(n_sets):
        for j in range(n_heads):
            th, k, c = hydraulic_state(code, derived[b], heads[b, j])
            out_theta[b, j] = th
            out_k[b, j] = k
            out_c[b, j] = c


@njit(cache=True)
def _derive_all(code, params, out):
    for b in range(params.shape[0]):
        derive_one(code, params[b], out[b])


def derive(model: str, params: np.ndarray) -> np.ndarray:
    """Derived constants for a (B, 6) parameter array -> (B, N_DERIVED)."""
    code = MODEL_CODES[check_model(model)]
    params = np.ascontiguousarray(np.atleast_2d(params), dtype=np.float64)
    out = np.empty((params.shape[0], N_DERIVED), dtype=np.float64)
    _derive_all(code, params, out)
    return out


def hydraulic_functions(model: str, params, h):
    """theta(h), K(h), C(h) for parameter set(s) `params` ((6,) or (B, 6)) at heads `h`.

    `h` broadcasts against the batch: (H,) is evaluated for every set, (B, H) row by row.
    Returns three arrays of shape (B, H), or (H,) when params is (6,).
    """
    params = np.asarray(params, dtype=np.float64)
    single = params.ndim == 1
    derived = derive(model, params)
    heads = np.asarray(h, dtype=np.float64)
    heads = np.ascontiguousarray(np.broadcast_to(np.atleast_2d(heads), (derived.shape[0], heads.shape[-1])))
    theta, k, c = (np.empty_like(heads) for _ in range(3))
    _evaluate(MODEL_CODES[check_model(model)], derived, heads, theta, k, c)
    if single:
        return theta[0], k[0], c[0]
    return theta, k, c


def water_content(model, params, h):
    return hydraulic_functions(model, params, h)[0]


def conductivity(model, params, h):
    return hydraulic_functions(model, params, h)[1]


def capacity(model, params, h):
    return hydraulic_functions(model, params, h)[2]
