"""1-D Richards equation for a batch of soil columns (paper 2.2.1, DESIGN.md section 1).

Mixed-form, mass-conservative iteration on a node grid with a tridiagonal solve, as
HYDRUS-1D does: modified Picard (Celia et al. 1990) whose system gains the dK/dh terms of
the internode and free-drainage fluxes, i.e. Newton (`newton_after` Picard iterates first;
a step whose Newton iterates fail is retried once with Picard only before dt is cut), with:

- an atmospheric top boundary that takes the potential net flux while the surface head
  stays in [hA, hS] and otherwise holds the head at the violated limit (runoff at hS,
  soil-limited evaporation at hA), switching back when the soil could carry more;
- free drainage at the bottom (or a fixed head, for analytic checks);
- S-shaped root water uptake over the root zone, lagged by one Picard iterate;
- HYDRUS's step control (x1.3 after few iterations, x0.7 after many, dt/3 on failure,
  no step across a day of forcing) plus a limit on the water-content change per step;
- a conserved water content carried from step to step (old storage plus the fluxes
  actually applied), with theta(h) required to agree with it within theta_tol: the
  balance closes to round-off while the state stays consistent to the tolerance.
  Reported SWC is theta(h) (always within [theta_r, theta_s]); storage and the
  balance use the conserved water content, which differs by at most theta_tol.

A simulation that still fails at the minimum step continues below it (flagged in
`status`) instead of giving up; only one that fails even there is reported as failed,
with its days left NaN. Every simulation has its own adaptive step; the batch runs in
parallel over cores with numba `prange`.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Callable, Optional

import numpy as np
from numba import njit, prange

from .hydraulics import FXW, FXW_H_FLOOR, MODEL_CODES, N_DERIVED, derive_one, hydraulic_state, uptake_stress
from .parameters import check_model

# Top boundary modes.
_FLUX = 0
_HEAD_SAT = 1  # surface held at hS: rain beyond infiltration capacity runs off
_HEAD_DRY = 2  # surface held at hA: evaporation is limited by the soil

# Status bits per simulation.
STATUS_OK = 0
STATUS_BELOW_DT_MIN = 1  # needed steps below dt_min to converge (result valid)
STATUS_FAILED = 2  # no convergence even at the step floor: days after the failure are NaN
STATUS_STEP_LIMIT = 4  # work budget (steps or iterations per simulated day) exhausted: days after that are NaN

# Indices into the per-day flux output.
DAILY_FLUXES = ("infiltration", "runoff", "evaporation", "transpiration", "drainage")

# Per-simulation statistics.
_ST_BALANCE, _ST_W0, _ST_W1, _ST_STEPS, _ST_ITERS, _ST_RETRIES, _ST_STATUS, _ST_FAIL_DAY, _ST_MIN_DT = range(9)
_N_STATS = 9

_DT_FLOOR = 1e-10  # below dt_min, the last resort before a simulation is declared failed
_H_FLOOR_VGM = -1e8


@dataclass(frozen=True)
class SolverConfig:
    """Numerics and geometry; defaults are paper Table 2 and DESIGN.md section 1."""

    column_depth: float = 50.0  # cm
    node_spacing: float = 1.0  # cm
    obs_depths: tuple = (5.0,)  # cm below the surface; the first is `swc`
    initial_head: float = -100.0  # cm, every node at t = 0
    root_depth: float = 40.0  # cm
    extinction_coef: float = 0.39  # k in Tp = PET(1 - exp(-k LAI))
    uptake_exponent: float = 3.0  # p in the S-shaped stress function
    surface_head_max: float = 0.0  # hS, cm
    surface_head_min: float = -1.0e5  # hA, cm
    bottom: str = "free_drainage"  # or "head" (fixed `bottom_head`, for analytic checks)
    bottom_head: float = 0.0
    theta_tol: float = 1e-3
    head_tol: float = 1.0  # cm, for saturated nodes
    dt_init: float = 1e-3  # d
    dt_min: float = 1e-5
    dt_max: float = 1.0
    max_iter: int = 10
    relax_after: int = 5  # iterations before Picard updates are under-relaxed
    newton_after: int = 0  # Picard iterations before Newton (with dK/dh) takes over; >= max_iter: Picard only
    table_points: int = 1024  # per-simulation hydraulic tables in ln|h|; 0 = evaluate directly
    capacity_floor: float = 1e-9  # 1/cm, in the iteration matrix only (conditions saturated zones)
    dt_grow: float = 1.3
    dt_shrink: float = 0.7
    iter_grow: int = 3  # grow after at most this many iterations
    iter_shrink: int = 7  # shrink after at least this many
    dtheta_max: float = 0.02  # largest water-content change per step at any node
    # When the net potential influx rises by dq at a day boundary (a storm begins), the step
    # is capped at dtheta_max * onset_depth / dq: the first step of a storm may bring no
    # more than dtheta_max over this depth. Without it that step follows the dry spell's
    # long steps and the wetting front lags HYDRUS-1D's on semiarid soils.
    onset_depth: float = 10.0  # cm
    # K is taken linear in h over the last k_linear_head cm below saturation, from K there to
    # Ks (theta and C are untouched). VGM's K has an infinite slope at h = 0 for n < 2 and,
    # for n near 1, falls to ~10 % of Ks within 1 cm: a drop that a 1 cm grid cannot resolve
    # and on which the iteration cycles at any time step (fine soils crawled at ~1e-4 d).
    # HYDRUS-1D offers the air-entry modification (Vogel et al. 2001) for the same reason.
    k_linear_head: float = 1.0  # cm; 1e-3 is the smallest (the tables' wet end)
    max_steps: int = 5_000_000
    # A run is cut after this many steps per simulated day on average. HYDRUS-1D takes 5-26; the
    # slowest runs that complete (fine VGM soils saturated by storms) take up to ~2,000, for up
    # to a minute. Bulk producers pass BULK_STEPS_PER_DAY instead (`bulk_config`).
    max_steps_per_day: int = 5000
    # ... and after this many solver iterations per simulated day on average: a step at dt_min
    # may take 10 x max_iter iterations and retry below it, so the step budget alone does not
    # bound a run's time (a near-step VGM set crawled for > 17 min on 2,314 steps, 1.1 M
    # iterations by day 285). Completed runs of the benchmark's surrogate set take a median of
    # 13 (FXW-M3) to 31 (VGM) and at most ~410 per day. Bulk: BULK_ITERATIONS_PER_DAY.
    max_iterations_per_day: int = 100_000

    def __post_init__(self):
        object.__setattr__(self, "obs_depths", tuple(float(d) for d in np.atleast_1d(self.obs_depths)))
        self.validate()

    def validate(self) -> None:
        positive = ("column_depth", "node_spacing", "root_depth", "theta_tol", "head_tol",
                    "dt_init", "dt_min", "dt_max", "dtheta_max", "onset_depth", "k_linear_head", "extinction_coef",
                    "uptake_exponent")
        for name in positive:
            value = getattr(self, name)
            if not (np.isfinite(value) and value > 0):
                raise ValueError(f"SolverConfig.{name} must be a positive number, got {value!r}")
        n_cells = self.column_depth / self.node_spacing
        if abs(n_cells - round(n_cells)) > 1e-9 or round(n_cells) < 2:
            raise ValueError(f"column_depth {self.column_depth} must be a multiple (>= 2x) of node_spacing "
                             f"{self.node_spacing}")
        if not self.dt_min <= self.dt_init <= self.dt_max:
            raise ValueError(f"need dt_min <= dt_init <= dt_max, got {self.dt_min}, {self.dt_init}, {self.dt_max}")
        if self.dt_max > 1.0:
            raise ValueError("dt_max may not exceed one day: forcing is daily")
        if self.root_depth > self.column_depth:
            raise ValueError(f"root_depth {self.root_depth} exceeds column_depth {self.column_depth}")
        if not self.obs_depths or any(not 0 <= d <= self.column_depth for d in self.obs_depths):
            raise ValueError(f"obs_depths {self.obs_depths} must lie within [0, {self.column_depth}] cm")
        if not self.surface_head_min < self.surface_head_max <= 0:
            raise ValueError("need surface_head_min < surface_head_max <= 0")
        if self.bottom not in ("free_drainage", "head"):
            raise ValueError(f"bottom must be 'free_drainage' or 'head', got {self.bottom!r}")
        if not (self.max_iter >= 2 and self.iter_grow < self.iter_shrink <= self.max_iter):
            raise ValueError("need 2 <= max_iter and iter_grow < iter_shrink <= max_iter")
        if self.max_steps < 1 or self.max_steps_per_day < 1 or self.max_iterations_per_day < 1:
            raise ValueError("max_steps, max_steps_per_day and max_iterations_per_day must be >= 1")
        if not (self.dt_grow >= 1.0 and 0 < self.dt_shrink < 1.0):
            raise ValueError("need dt_grow >= 1 and 0 < dt_shrink < 1")

    @property
    def n_nodes(self) -> int:
        return int(round(self.column_depth / self.node_spacing)) + 1

    def node_depths(self) -> np.ndarray:
        return np.linspace(0.0, self.column_depth, self.n_nodes)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["obs_depths"] = list(self.obs_depths)
        return d


@dataclass
class SimulationResult:
    """Outputs of a batch of B simulations over T days.

    swc: (B, T) water content at obs_depths[0] (5 cm) at the end of each day.
    swc_at_depths: (B, T, D) the same at every requested observation depth.
    daily_fluxes: (B, T, 5) cm per day: infiltration, runoff, evaporation, transpiration, drainage.
    cumulative: dict of (B,) totals of those fluxes (cm), plus potential evaporation/transpiration.
    balance_error: (B,) signed relative mass-balance error (DESIGN.md section 0).
    status: (B,) bit flags (STATUS_*), 0 = clean run.
    """

    swc: np.ndarray
    swc_at_depths: np.ndarray
    obs_depths: tuple
    daily_fluxes: np.ndarray
    cumulative: dict
    balance_error: np.ndarray
    storage_initial: np.ndarray
    storage_final: np.ndarray
    n_steps: np.ndarray
    n_iterations: np.ndarray
    n_retries: np.ndarray
    min_dt: np.ndarray
    status: np.ndarray
    failed_day: np.ndarray
    final_head: np.ndarray
    messages: list = field(default_factory=list)

    @property
    def ok(self) -> np.ndarray:
        return (self.status & (STATUS_FAILED | STATUS_STEP_LIMIT)) == 0


# ------------------------------------------------------------------------------- numerics
@njit(cache=True)
def _root_weights(depths, root_depth):
    """Fraction of the root distribution b(x) (paper eq. 12) in each node's control volume."""
    n = depths.shape[0]
    w = np.zeros(n)
    for i in range(n):
        top = 0.0 if i == 0 else 0.5 * (depths[i - 1] + depths[i])
        bot = depths[n - 1] if i == n - 1 else 0.5 * (depths[i] + depths[i + 1])
        w[i] = _root_integral(bot, root_depth) - _root_integral(top, root_depth)
    total = w.sum()
    if total > 0:
        w /= total
    return w


@njit(cache=True)
def _root_integral(x, lr):
    """Integral of b over depth [0, x]."""
    x1 = 0.2 * lr
    if x <= x1:
        return 1.667 * x / lr
    x = min(x, lr)
    return 1.667 * x1 / lr + 2.0833 / lr * ((x - x1) - (x * x - x1 * x1) / (2.0 * lr))


@njit(cache=True)
def _thomas(lower, diag, upper, rhs, out, work):
    n = diag.shape[0]
    inv = 1.0 / diag[0]
    work[0] = upper[0] * inv
    out[0] = rhs[0] * inv
    for i in range(1, n):
        inv = 1.0 / (diag[i] - lower[i] * work[i - 1])
        work[i] = upper[i] * inv
        out[i] = (rhs[i] - lower[i] * out[i - 1]) * inv
    for i in range(n - 2, -1, -1):
        out[i] -= work[i] * out[i + 1]



# Hydraulic tables. Evaluating theta, K and C directly costs several transcendental
# functions per node and iterate; like HYDRUS we tabulate each simulation's curves,
# here on a fine uniform grid in u = ln|h| with cubic Hermite interpolation of theta
# (its exact derivative gives a C consistent with theta) and linear interpolation of
# ln K. Heads wetter than _TABLE_H_WET or drier than the grid are evaluated directly.
_TABLE_H_WET = 1e-3  # cm
_LN_K_FLOOR = -700.0


@njit(cache=True)
def _build_tables(code, d, h_dry, n_points, theta_tab, dtheta_tab, lnk_tab, meta):
    u0 = math.log(_TABLE_H_WET)
    u1 = math.log(-h_dry * 1.001)
    du = (u1 - u0) / (n_points - 1)
    for j in range(n_points):
        u = u0 + j * du
        h = -math.exp(u)
        th, k, c = hydraulic_state(code, d, h)
        theta_tab[j] = th
        dtheta_tab[j] = c * h * du  # d theta / d(grid index)
        lnk_tab[j] = math.log(k) if k > 0.0 else _LN_K_FLOOR
        if lnk_tab[j] < _LN_K_FLOOR:
            lnk_tab[j] = _LN_K_FLOOR
    meta[0] = u0
    meta[1] = 1.0 / du
    meta[2] = n_points - 1


@njit(cache=True, inline="always")
def _state(code, d, h, use_tables, theta_tab, dtheta_tab, lnk_tab, meta):
    """(theta, K, C, dK/dh) at head h.

    Between h = meta[5] (-SolverConfig.k_linear_head) and 0, K is linear in h from
    K(meta[5]) to Ks with slope meta[4]; theta and C are untouched.
    """
    if h > 0.0:
        th, k, c = hydraulic_state(code, d, h)
        return th, k, c, 0.0
    if h > -_TABLE_H_WET:  # at h = 0 itself the slope from below: iterates clipped to 0 come back
        th, _, c = hydraulic_state(code, d, h)
        return th, d[4] + meta[4] * h, c, meta[4]
    x = (math.log(-h) - meta[0]) * meta[1]
    j = int(x)
    if not use_tables or j >= meta[2]:
        th, k, c = hydraulic_state(code, d, h)
        if h > meta[5]:
            return th, d[4] + meta[4] * h, c, meta[4]
        return th, k, c, _dk_direct(code, d, h, k)
    t = x - j
    t2 = t * t
    a0, a1 = theta_tab[j], theta_tab[j + 1]
    m0, m1 = dtheta_tab[j], dtheta_tab[j + 1]
    one_t = 1.0 - t
    theta = (1.0 + 2.0 * t) * one_t * one_t * a0 + t * one_t * one_t * m0 + t2 * (3.0 - 2.0 * t) * a1 + t2 * (t - 1.0) * m1
    dtheta_dx = 6.0 * t * (t - 1.0) * (a0 - a1) + (3.0 * t2 - 4.0 * t + 1.0) * m0 + (3.0 * t2 - 2.0 * t) * m1
    dx_dh = meta[1] / h  # (dx/du)(du/dh), du/dh = 1/h
    cap = dtheta_dx * dx_dh
    if h > meta[5]:
        return theta, d[4] + meta[4] * h, cap, meta[4]
    dlnk_dx = lnk_tab[j + 1] - lnk_tab[j]
    k = math.exp(lnk_tab[j] + t * dlnk_dx)
    return theta, k, cap, k * dlnk_dx * dx_dh


@njit(cache=True, inline="always")
def _dk_direct(code, d, h, k):
    """dK/dh by a central difference in ln|h| (heads outside the tables)."""
    if k <= 0.0:
        return 0.0
    eps = 1e-4
    k_wet = hydraulic_state(code, d, h * (1.0 - eps))[1]
    k_dry = hydraulic_state(code, d, h * (1.0 + eps))[1]
    return (k_wet - k_dry) / (-2.0 * eps * h)


@njit(cache=True)
def _evaluate_nodes(code, d, h, theta, k, cap, dk, tabs, meta):
    for i in range(h.shape[0]):
        theta[i], k[i], cap[i], dk[i] = _state(code, d, h[i], meta[3] > 0.0, tabs[0], tabs[1], tabs[2], meta)


@njit(cache=True)
def _picard(code, d, tabs, meta, cfg_i, cfg_f, max_iter, newton_after, dt, q_pot, tp, mode0, vol, inv_vol, inv_dist,
            root_w, h_cap,
            h_n, th_n, h, th, k, cap, dk, lower, diag, upper, rhs, h_new, work, sink, th_cons, fluxes, dh_prev):
    """Iterate one time step from (h_n, th_n). On entry h/th/k/cap hold the state at h_n.

    Returns (converged, iterations, mode). On success h/th/k/cap hold the new state and
    fluxes = [q_top (into the soil), q_bottom (out), transpiration] as applied.
    """
    n = h.shape[0]
    theta_tol, head_tol = cfg_f[0], cfg_f[1]
    hs, ha, h50, p_up = cfg_f[3], cfg_f[4], d[5], cfg_f[5]
    bottom_head_mode, bottom_head = cfg_i[1], cfg_f[6]
    relax_after = cfg_i[5]
    iter_grow = cfg_i[2]  # past it a step is no longer converging quickly
    c_floor = cfg_f[2]
    use_tables = meta[3] > 0.0
    inv_dt = 1.0 / dt
    h_floor = max(ha, FXW_H_FLOOR) if code == FXW else max(ha, _H_FLOOR_VGM)
    mode = mode0
    switches = 0
    outside = 0
    top_limited = False
    it = 0
    dh_prev[:] = 0.0
    while it < max_iter:
        it += 1
        # Root uptake lagged by one iterate (implicit at convergence).
        ta = 0.0
        for i in range(n):
            if root_w[i] > 0.0 and tp > 0.0:
                sink[i] = uptake_stress(h[i], h50, p_up) * root_w[i] * tp
            else:
                sink[i] = 0.0
            ta += sink[i]
        for i in range(n):
            g = vol[i] * max(cap[i], c_floor) * inv_dt
            dg = g
            r = g * h[i] - vol[i] * (th[i] - th_n[i]) * inv_dt - sink[i]
            lower[i] = 0.0
            upper[i] = 0.0
            if i > 0:
                kf = 0.5 * (k[i - 1] + k[i])
                a = kf * inv_dist[i - 1]
                dg += a
                lower[i] = -a
                r += kf
            if i < n - 1:
                kf = 0.5 * (k[i] + k[i + 1])
                c = kf * inv_dist[i]
                dg += c
                upper[i] = -c
                r -= kf
            diag[i] = dg
            rhs[i] = r
        # top boundary
        if mode == _FLUX:
            rhs[0] += q_pot
        else:
            diag[0] = 1.0
            upper[0] = 0.0
            rhs[0] = hs if mode == _HEAD_SAT else ha
        # bottom boundary
        k_bot = 0.5 * (k[n - 2] + k[n - 1])
        if bottom_head_mode == 1:
            diag[n - 1] = 1.0
            lower[n - 1] = 0.0
            rhs[n - 1] = bottom_head
        else:
            rhs[n - 1] -= k_bot
        newton = it > newton_after
        if newton:
            _newton_system(h, k, dk, inv_dist, lower, diag, upper, rhs, mode != _FLUX, bottom_head_mode == 1)
            _thomas(lower, diag, upper, rhs, h_new, work)
            for i in range(n):
                h_new[i] += h[i]
        else:
            _thomas(lower, diag, upper, rhs, h_new, work)
        damped = False
        # Near saturation with n close to 1, K falls by orders of magnitude within a
        # centimetre of h = 0 and lagged-K Picard iterates oscillate; past the first
        # few iterations take only part of each update (still exactly conservative:
        # the applied fluxes use the relaxed heads).
        # The surface leaves [hA, hS] under the potential flux. A first Picard iterate
        # often overshoots, so the head limit is imposed only when two iterates in a
        # row leave the range; a single overshoot is clipped and iterated again.
        # Net influx can only saturate the surface, net outflux only dry it to hA.
        above = mode == _FLUX and q_pot > 0.0 and h_new[0] > hs
        below = mode == _FLUX and q_pot < 0.0 and h_new[0] < ha
        if above or below:
            # An iterate whose surface head was limited (a dry surface wets a decade per
            # iterate) says nothing yet about ponding: rain onto dry soil would otherwise
            # switch to the head limit, fail to converge under it and cut the step.
            if not (above and top_limited):
                outside += 1
            if outside >= 2 and switches < 3:
                mode = _HEAD_SAT if above else _HEAD_DRY
                switches += 1
                outside = 0
                it = 0
                continue
            h_new[0] = hs if above else ha
            damped = True
        else:
            outside = 0
        for i in range(n):
            h_i = h_new[i]
            if not math.isfinite(h_i):
                return False, it, mode
            # Picard's tangent capacity is ~0 in dry soil and near saturation, so one
            # iterate can jump by decades; limit each iterate to a factor of 10 in |h|
            # or 10 cm, whichever is larger (the step then needs more iterations,
            # never a wrong answer: damped iterates never count as converged). No node
            # is drier than the air-dry surface limit hA.
            if h_i < h_floor:
                h_i = h_floor
            # With the surface head at most 0, no pressure head exceeds the hydrostatic
            # head below the surface; Picard iterates in a perched saturated zone can.
            if h_i > h_cap[i]:
                h_i = h_cap[i]
                damped = True
            h_old = h[i]
            h_low = h_old - 10.0
            h_high = h_old + 10.0
            if h_old < 0.0:
                h_low = min(h_low, 10.0 * h_old)
                h_high = max(h_high, 0.1 * h_old)
            if i == 0:
                top_limited = h_i < h_low or h_i > h_high
            if h_i < h_low:
                h_i = h_low
                damped = True
            elif h_i > h_high:
                h_i = h_high
                damped = True
            # Where theta(h) is a near-step (large n), C is ~0 on both flat sides and the
            # update (theta* - theta(h))/C jumps from one side to the other and back: a
            # two-cycle that no time step breaks. Once a step has taken more than
            # iter_grow iterations, an iterate that lands back within a quarter of its own
            # size of the one before last is bisected (in ln|h| while unsaturated), which
            # brackets the root like a safeguarded Newton method; ordinary alternating
            # iterates shrink and are left alone (bisecting them early slows fine soils 50x).
            dh = h_i - h_old
            if (it > iter_grow and dh * dh_prev[i] < 0.0 and abs(dh + dh_prev[i]) < 0.25 * abs(dh)
                    and abs(dh) > 1e-3 * (1.0 + abs(h_old))):
                if h_i < 0.0 and h_old < 0.0:
                    h_i = -math.sqrt(h_i * h_old)
                else:
                    h_i = 0.5 * (h_i + h_old)
                damped = True
            dh_prev[i] = h_i - h_old
            h_new[i] = h_i
        # New state and the fluxes applied in this iterate (lagged K, new heads).
        converged = not damped
        for i in range(n):
            th_i, k_i, c_i, dk[i] = _state(code, d, h_new[i], use_tables, tabs[0], tabs[1], tabs[2], meta)
            if h_new[i] < 0.0:
                if abs(th_i - th[i]) > theta_tol:
                    converged = False
            elif abs(h_new[i] - h[i]) > head_tol:
                converged = False
            work[i] = k_i  # lagged conductivities stay in `k` until the fluxes are known
            th[i] = th_i
            cap[i] = c_i
        # The conserved water content: old storage plus the applied fluxes. It, not
        # theta(h), carries the storage from step to step, so the balance closes to
        # round-off; theta(h) must agree with it within theta_tol to converge.
        q_down = 0.0 if mode != _FLUX else q_pot
        for i in range(n):
            if i < n - 1:
                kf = 0.5 * (k[i] + k[i + 1])
                q_below = kf * (1.0 - (h_new[i + 1] - h_new[i]) * inv_dist[i])
            elif bottom_head_mode == 1:
                q_below = 0.0  # set from the node balance below
            else:
                q_below = k_bot
            if i == 0 and mode != _FLUX:
                th_cons[0] = th[0]
                q_down = vol[0] * (th[0] - th_n[0]) * inv_dt + q_below + sink[0]
                q_top = q_down
            elif i == n - 1 and bottom_head_mode == 1:
                th_cons[i] = th[i]
                q_below = q_down - sink[i] - vol[i] * (th[i] - th_n[i]) * inv_dt
            else:
                if i == 0:
                    q_top = q_pot
                th_cons[i] = th_n[i] + dt * (q_down - q_below - sink[i]) * inv_vol[i]
                if abs(th_cons[i] - th[i]) > theta_tol:
                    converged = False
            q_down = q_below
        q_bot = q_down
        # Past the first few iterations the lagged conductivity is averaged with the
        # new one (in log space), which breaks the two-cycles seen near saturation.
        relax_k = it > relax_after and not newton
        for i in range(n):
            h[i] = h_new[i]
            if relax_k and k[i] > 0.0 and work[i] > 0.0:
                k[i] = math.sqrt(k[i] * work[i])
            else:
                k[i] = work[i]
        # One iterate under a boundary mode proves nothing where theta(h) is flat.
        if not converged or it < 2:
            continue
        # The boundary condition must be consistent with the converged state.
        new_mode = mode
        if mode == _FLUX and h[0] > hs:
            new_mode = _HEAD_SAT
        elif mode == _FLUX and h[0] < ha:
            new_mode = _HEAD_DRY
        elif mode == _HEAD_SAT and q_top > q_pot:
            new_mode = _FLUX
        elif mode == _HEAD_DRY and q_top < q_pot:
            new_mode = _FLUX
        if new_mode != mode:
            if switches >= 3:
                return False, it, mode  # no consistent boundary: retry with a shorter step
            switches += 1
            mode = new_mode
            it = 0  # a fresh iteration budget under the new boundary condition
            continue
        fluxes[0] = q_top
        fluxes[1] = q_bot
        fluxes[2] = ta
        return True, it, mode
    return False, it, mode


@njit(cache=True)
def _newton_system(h, k, dk, inv_dist, lower, diag, upper, rhs, head_top, head_bottom):
    """Turn the Picard system A h_new = b at iterate h into Newton's J dh = b - A h.

    J adds to A the derivative of each internode flux K_f (1 - dh/dz), K_f the mean of
    the two nodes' K, with respect to the K in it (and of the free-drainage flux). Picard
    lags K, which converges only where K changes slowly with h: in a saturated zone fed
    across a wetting front the heads of nodes near h = 0 cycle while K jumps by the ratio
    of Ks to K just below saturation, at any time step.
    """
    n = h.shape[0]
    for i in range(n):
        r = rhs[i] - diag[i] * h[i]
        if i > 0:
            r -= lower[i] * h[i - 1]
        if i < n - 1:
            r -= upper[i] * h[i + 1]
        rhs[i] = r
    for i in range(n - 1):
        gf = 0.5 * (1.0 - (h[i + 1] - h[i]) * inv_dist[i])  # d flux / d K at either node
        if not (i == 0 and head_top):
            diag[i] += gf * dk[i]
            upper[i] += gf * dk[i + 1]
        if not (i + 1 == n - 1 and head_bottom):
            lower[i + 1] -= gf * dk[i]
            diag[i + 1] -= gf * dk[i + 1]
    if not head_bottom:
        diag[n - 1] += 0.5 * dk[n - 1]
        lower[n - 1] += 0.5 * dk[n - 2]


@njit(cache=True)
def _spill_excess(th_cons, vol, th_sat):
    """Move conserved water above saturation to the nearest nodes with room, downward first.

    A step is accepted with the conserved content within theta_tol of theta(h), so a saturated
    node can keep a little more water than theta(h) <= theta_s can ever hold. Left there, a later
    step must expel it within dt through a zone with no capacity: the heads rise far beyond
    hydrostatic and the step fails at any dt (fine soils with n near 1 failed so on their first
    storm). In a saturated zone water moves through at once, so the excess belongs to the nearest
    unsaturated node. Returns the water (cm) that no node had room for.
    """
    n = th_cons.shape[0]
    carry = 0.0
    for i in range(n):
        carry = _exchange(th_cons, vol, th_sat, i, carry)
    if carry > 0.0:
        for i in range(n - 1, -1, -1):
            carry = _exchange(th_cons, vol, th_sat, i, carry)
    return carry


@njit(cache=True, inline="always")
def _exchange(th_cons, vol, th_sat, i, carry):
    """Node i gives up its water above th_sat, or takes what it has room for; returns the carry."""
    excess = (th_cons[i] - th_sat) * vol[i]
    if excess > 0.0:
        th_cons[i] = th_sat
        return carry + excess
    take = min(carry, -excess)
    th_cons[i] += take / vol[i]
    return carry - take


@njit(cache=True)
def _observe(th, obs_idx, obs_w, out):
    for j in range(obs_idx.shape[0]):
        i = obs_idx[j]
        w = obs_w[j]
        out[j] = th[i] if w == 0.0 else (1.0 - w) * th[i] + w * th[i + 1]


@njit(cache=True)
def _simulate_one(code, params, precip, pet, lai, depths, h_init, obs_idx, obs_w, cfg_i, cfg_f,
                  out_swc, out_daily, out_stats, out_h):
    n = depths.shape[0]
    n_days = precip.shape[0]
    d = np.empty(N_DERIVED)
    derive_one(code, params, d)
    dist = depths[1:] - depths[:-1]
    vol = np.empty(n)
    vol[0] = 0.5 * dist[0]
    vol[n - 1] = 0.5 * dist[n - 2]
    for i in range(1, n - 1):
        vol[i] = 0.5 * (dist[i - 1] + dist[i])
    # Reciprocals once per run: divisions dominate the arithmetic of an iteration.
    inv_vol = 1.0 / vol
    inv_dist = 1.0 / dist
    root_w = _root_weights(depths, cfg_f[7])
    h_cap = depths + cfg_f[3] + 1.0
    k_ext = cfg_f[8]
    dt_init, dt_min, dt_max = cfg_f[9], cfg_f[10], cfg_f[11]
    dt_grow, dt_shrink, dtheta_max = cfg_f[12], cfg_f[13], cfg_f[14]
    iter_grow, iter_shrink, max_steps, max_iters = cfg_i[2], cfg_i[3], cfg_i[4], cfg_i[8]

    h = h_init.copy()
    th = np.empty(n)
    k = np.empty(n)
    cap = np.empty(n)
    dk = np.empty(n)
    n_points = cfg_i[6]
    tabs = np.empty((3, max(n_points, 2)))
    meta = np.zeros(6)
    if n_points > 0:
        _build_tables(code, d, cfg_f[4], n_points, tabs[0], tabs[1], tabs[2], meta)
        meta[3] = 1.0
    h_k_linear = -max(cfg_f[16], _TABLE_H_WET)
    meta[4] = (d[4] - hydraulic_state(code, d, h_k_linear)[1]) / -h_k_linear  # dK/dh over the band
    meta[5] = h_k_linear
    _evaluate_nodes(code, d, h, th, k, cap, dk, tabs, meta)
    th_sat = _state(code, d, 0.0, False, tabs[0], tabs[1], tabs[2], meta)[0]
    # th_n: conserved storage at the start of the step; th_h_n: theta(h_n) there.
    h_n, th_n, th_h_n, k_n, cap_n, dk_n = h.copy(), th.copy(), th.copy(), k.copy(), cap.copy(), dk.copy()
    lower, diag, upper, rhs = np.empty(n), np.empty(n), np.empty(n), np.empty(n)
    h_new, work, sink, th_cons, dh_prev = np.empty(n), np.empty(n), np.empty(n), np.empty(n), np.empty(n)
    fluxes = np.zeros(3)
    obs = np.empty(obs_idx.shape[0])

    w0 = 0.0
    for i in range(n):
        w0 += th[i] * vol[i]
    out_stats[_ST_W0] = w0
    sum_in = 0.0
    sum_out_top = 0.0
    sum_bot_abs = 0.0
    sum_bot = 0.0
    sum_ta = 0.0
    steps = 0
    iters = 0
    retries = 0
    status = 0
    min_dt = dt_max
    mode = _FLUX
    q_top_prev = 0.0
    q_pot_day_prev = 0.0
    t = 0.0
    dt = dt_init
    failed_day = -1
    for day in range(n_days):
        cover = math.exp(-k_ext * lai[day])
        q_pot = precip[day] - pet[day] * cover  # net potential flux into the soil
        tp = pet[day] * (1.0 - cover)
        t_end = day + 1.0
        if day > 0:  # a storm begins: see SolverConfig.onset_depth
            dq = q_pot - q_pot_day_prev
            if dq > 0.0:
                dt = max(min(dt, dtheta_max * cfg_f[15] / dq), dt_min)
        q_pot_day_prev = q_pot
        for j in range(5):
            out_daily[day, j] = 0.0
        while t_end - t > 1e-12:
            if mode == _HEAD_SAT and q_pot < q_top_prev:
                mode = _FLUX
            elif mode == _HEAD_DRY and q_pot > q_top_prev:
                mode = _FLUX
            remaining = t_end - t
            truncated = False
            dt_step = dt
            if remaining - dt_step < dt_min:
                dt_step = remaining
                truncated = True
            max_iter_now = cfg_i[0]
            newton_after = cfg_i[7]
            while True:
                ok, it, new_mode = _picard(code, d, tabs, meta, cfg_i, cfg_f, max_iter_now, newton_after, dt_step, q_pot, tp, mode, vol, inv_vol,
                                           inv_dist, root_w, h_cap,
                                           h_n, th_n, h, th, k, cap, dk, lower, diag, upper, rhs, h_new, work, sink,
                                           th_cons, fluxes, dh_prev)
                iters += it
                if ok:
                    break
                retries += 1
                for i in range(n):
                    h[i] = h_n[i]
                    th[i] = th_h_n[i]
                    k[i] = k_n[i]
                    cap[i] = cap_n[i]
                    dk[i] = dk_n[i]
                truncated = False
                if newton_after < max_iter_now:
                    # Newton's tangent can overshoot where theta(h) is a near-step (large n);
                    # Picard's safeguards handle those: retry the same step with them first.
                    newton_after = max_iter_now
                    continue
                newton_after = cfg_i[7]
                if dt_step > dt_min * 1.000001:
                    dt_step = max(dt_step / 3.0, dt_min)
                elif max_iter_now == cfg_i[0]:
                    # At dt_min: give the relaxed iteration a long budget before going below.
                    max_iter_now = 10 * cfg_i[0]
                else:
                    # Below dt_min: the result stays valid, the simulation is flagged.
                    status |= STATUS_BELOW_DT_MIN
                    dt_step = dt_step / 3.0
                    if dt_step < _DT_FLOOR:
                        status |= STATUS_FAILED
                        break
            if status & STATUS_FAILED:
                failed_day = day
                break
            mode = new_mode
            steps += 1
            if steps >= max_steps or iters >= max_iters:
                status |= STATUS_STEP_LIMIT
                failed_day = day
                break
            min_dt = min(min_dt, dt_step)
            q_top, q_bot, ta = fluxes[0], fluxes[1], fluxes[2]
            if q_top >= 0.0:
                sum_in += q_top * dt_step
                out_daily[day, 0] += q_top * dt_step
            else:
                sum_out_top -= q_top * dt_step
                out_daily[day, 2] -= q_top * dt_step
            if mode == _HEAD_SAT and q_pot > q_top:
                out_daily[day, 1] += (q_pot - q_top) * dt_step
            sum_ta += ta * dt_step
            sum_bot += q_bot * dt_step
            sum_bot_abs += abs(q_bot) * dt_step
            out_daily[day, 3] += ta * dt_step
            out_daily[day, 4] += q_bot * dt_step
            q_top_prev = q_top
            # Next step: HYDRUS's iteration-count rule, limited by the largest change.
            dtheta = 0.0
            for i in range(n):
                dtheta = max(dtheta, abs(th_cons[i] - th_n[i]))
                h_n[i] = h[i]
                th_n[i] = th_cons[i]
                th_h_n[i] = th[i]
                k_n[i] = k[i]
                cap_n[i] = cap[i]
                dk_n[i] = dk[i]
            rejected = _spill_excess(th_n, vol, th_sat)
            if rejected > 0.0:  # it infiltrated in this step's balance: it runs off instead
                sum_in -= rejected
                out_daily[day, 0] -= rejected
                out_daily[day, 1] += rejected
            t = t_end if truncated else t + dt_step
            base = max(dt, dt_step) if truncated else dt_step
            if it <= iter_grow:
                dt = base * dt_grow
            elif it >= iter_shrink:
                dt = base * dt_shrink
            else:
                dt = base
            if dtheta > dtheta_max:
                dt = min(dt, dt_step * dtheta_max / dtheta)
            dt = min(max(dt, dt_min), dt_max)
        if failed_day >= 0:
            break
        _observe(th_h_n, obs_idx, obs_w, obs)
        for j in range(obs.shape[0]):
            out_swc[day, j] = obs[j]
    if failed_day >= 0:
        for day in range(failed_day, n_days):
            for j in range(out_swc.shape[1]):
                out_swc[day, j] = np.nan
            for j in range(5):
                out_daily[day, j] = np.nan
    w1 = 0.0
    for i in range(n):
        w1 += th_n[i] * vol[i]
        out_h[i] = h[i]
    d_w = w1 - w0
    net = sum_in - sum_out_top - sum_bot - sum_ta
    scale = max(abs(d_w), sum_in + sum_out_top + sum_bot_abs + sum_ta)
    out_stats[_ST_BALANCE] = (d_w - net) / scale if scale > 0 else 0.0
    out_stats[_ST_W1] = w1
    out_stats[_ST_STEPS] = steps
    out_stats[_ST_ITERS] = iters
    out_stats[_ST_RETRIES] = retries
    out_stats[_ST_STATUS] = status
    out_stats[_ST_FAIL_DAY] = failed_day
    out_stats[_ST_MIN_DT] = min_dt


@njit(cache=True, parallel=True)
def _simulate_batch(code, params, precip, pet, lai, depths, h_init, obs_idx, obs_w, cfg_i, cfg_f,
                    out_swc, out_daily, out_stats, out_h):
    for b in prange(params.shape[0]):
        _simulate_one(code, params[b], precip[b], pet[b], lai[b], depths, h_init[b], obs_idx, obs_w,
                      cfg_i, cfg_f, out_swc[b], out_daily[b], out_stats[b], out_h[b])


# --------------------------------------------------------------------------- public API
# The step budget of the stages that simulate by the thousand (surrogate dataset, virtual
# network, inversion): a run that crawls past it is cut, reported and dropped (or scored +inf),
# so one parameter set cannot hold a shard or an inversion for a minute.
BULK_STEPS_PER_DAY = 300
BULK_ITERATIONS_PER_DAY = 3000


def bulk_config(**overrides) -> SolverConfig:
    """SolverConfig with the bulk work budget (BULK_STEPS_PER_DAY, BULK_ITERATIONS_PER_DAY)."""
    return SolverConfig(**{"max_steps_per_day": BULK_STEPS_PER_DAY,
                           "max_iterations_per_day": BULK_ITERATIONS_PER_DAY, **overrides})


def _step_budget(cfg: SolverConfig, n_days: int) -> int:
    return int(min(cfg.max_steps, cfg.max_steps_per_day * max(n_days, 1)))


def _iteration_budget(cfg: SolverConfig, n_days: int) -> int:
    return int(cfg.max_iterations_per_day * max(n_days, 1))


def _config_arrays(cfg: SolverConfig, n_days: int):
    cfg_i = np.array([cfg.max_iter, 1 if cfg.bottom == "head" else 0, cfg.iter_grow, cfg.iter_shrink,
                      _step_budget(cfg, n_days), cfg.relax_after, cfg.table_points, cfg.newton_after,
                      _iteration_budget(cfg, n_days)],
                     dtype=np.int64)
    cfg_f = np.array([cfg.theta_tol, cfg.head_tol, cfg.capacity_floor, cfg.surface_head_max, cfg.surface_head_min,
                      cfg.uptake_exponent, cfg.bottom_head, cfg.root_depth, cfg.extinction_coef, cfg.dt_init,
                      cfg.dt_min, cfg.dt_max, cfg.dt_grow, cfg.dt_shrink, cfg.dtheta_max, cfg.onset_depth, cfg.k_linear_head],
                     dtype=np.float64)
    return cfg_i, cfg_f


def _observation_points(cfg: SolverConfig, depths: np.ndarray):
    idx, weights = [], []
    for obs in cfg.obs_depths:
        i = min(int(np.searchsorted(depths, obs, side="right")) - 1, len(depths) - 2)
        w = (obs - depths[i]) / (depths[i + 1] - depths[i])
        if abs(w) < 1e-12:
            w = 0.0
        elif abs(w - 1.0) < 1e-12:
            i, w = i + 1, 0.0
        idx.append(i)
        weights.append(w)
    return np.array(idx, dtype=np.int64), np.array(weights, dtype=np.float64)


def simulate(model, params, precip, pet, lai, config: SolverConfig | None = None, initial_head=None,
             raise_on_failure: bool = True) -> SimulationResult:
    """Simulate daily SWC for a batch of parameter sets and forcings.

    model: "vgm" or "fxw". params: (B, 6) or (6,) in Table 1 column order
    (VGM: theta_r, theta_s, alpha, n, Ks, H50; FXW-M3: theta_s, alpha, n, m, Ks, H50).
    precip, pet (cm/d), lai: (B, T) or (T,) daily; the values of day d apply to (d-1, d].
    initial_head: None (config.initial_head everywhere), a scalar, (N,) or (B, N) nodal heads.
    A simulation that cannot converge raises SimulationError naming it (or, with
    raise_on_failure=False, is returned flagged in `status` with NaN days).
    """
    from .validation import check_inputs, check_initial_head

    cfg = config or SolverConfig()
    model = check_model(model)
    params, precip, pet, lai = check_inputs(model, params, precip, pet, lai)
    depths = cfg.node_depths()
    h_init = check_initial_head(initial_head, cfg, params.shape[0], depths.shape[0])
    n_sims, n_days = precip.shape
    obs_idx, obs_w = _observation_points(cfg, depths)
    cfg_i, cfg_f = _config_arrays(cfg, n_days)
    out_swc = np.empty((n_sims, n_days, len(cfg.obs_depths)))
    out_daily = np.empty((n_sims, n_days, len(DAILY_FLUXES)))
    out_stats = np.zeros((n_sims, _N_STATS))
    out_h = np.empty((n_sims, depths.shape[0]))
    _simulate_batch(MODEL_CODES[model], params, precip, pet, lai, depths, h_init, obs_idx, obs_w, cfg_i, cfg_f,
                    out_swc, out_daily, out_stats, out_h)
    result = _make_result(cfg, out_swc, out_daily, out_stats, out_h, pet, lai)
    if raise_on_failure and not result.ok.all():
        from .validation import SimulationError

        raise SimulationError(result.messages)
    return result


def simulate_swc_in_chunks(model, params, precip, pet, lai, chunk: int = 1024,
                           on_chunk: Optional[Callable[[int, int], None]] = None) -> tuple[np.ndarray, np.ndarray]:
    """(SWC at 5 cm (B, T), status (B,)) of `simulate(..., raise_on_failure=False)`, `chunk`
    simulations per call, `on_chunk(done, total)` after each: long batches can report progress."""
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    n = len(params)
    swc, status = [np.empty((0, np.shape(precip)[-1]))], [np.empty(0, dtype=np.int64)]
    for a in range(0, n, chunk):
        res = simulate(model, params[a:a + chunk], precip[a:a + chunk], pet[a:a + chunk], lai[a:a + chunk],
                       raise_on_failure=False)
        swc.append(res.swc)
        status.append(res.status)
        if on_chunk is not None:
            on_chunk(min(a + chunk, n), n)
    return np.concatenate(swc), np.concatenate(status)


def _budget_message(cfg: SolverConfig, n_days: int, stats) -> str:
    if stats[_ST_STEPS] >= _step_budget(cfg, n_days):
        return f"more than {_step_budget(cfg, n_days)} time steps"
    return f"more than {_iteration_budget(cfg, n_days)} solver iterations"


def _make_result(cfg, out_swc, out_daily, out_stats, out_h, pet, lai):
    status = out_stats[:, _ST_STATUS].astype(np.int64)
    failed_day = out_stats[:, _ST_FAIL_DAY].astype(np.int64)
    cover = np.exp(-cfg.extinction_coef * lai)
    cumulative = {name: np.nansum(out_daily[:, :, j], axis=1) for j, name in enumerate(DAILY_FLUXES)}
    cumulative["potential_evaporation"] = (pet * cover).sum(axis=1)
    cumulative["potential_transpiration"] = (pet * (1.0 - cover)).sum(axis=1)
    messages = []
    for b in np.flatnonzero(status & (STATUS_FAILED | STATUS_STEP_LIMIT)):
        why = ("no convergence even at a time step of 1e-10 d" if status[b] & STATUS_FAILED
               else _budget_message(cfg, out_swc.shape[1], out_stats[b]))
        messages.append(f"simulation {b}: {why} on day {failed_day[b] + 1}; later days are NaN")
    return SimulationResult(
        swc=out_swc[:, :, 0],
        swc_at_depths=out_swc,
        obs_depths=cfg.obs_depths,
        daily_fluxes=out_daily,
        cumulative=cumulative,
        balance_error=out_stats[:, _ST_BALANCE],
        storage_initial=out_stats[:, _ST_W0],
        storage_final=out_stats[:, _ST_W1],
        n_steps=out_stats[:, _ST_STEPS].astype(np.int64),
        n_iterations=out_stats[:, _ST_ITERS].astype(np.int64),
        n_retries=out_stats[:, _ST_RETRIES].astype(np.int64),
        min_dt=out_stats[:, _ST_MIN_DT],
        status=status,
        failed_day=failed_day,
        final_head=out_h,
        messages=messages,
    )

