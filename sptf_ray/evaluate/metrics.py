"""Goodness of fit (paper 2.6, eqs. 18-20): NSE, RMSE and the trend line.

A day counts only when it is unfrozen (LST >= 0 C, DESIGN section 0) and both the observed
and the simulated value are finite. The trend line is the least-squares fit of *predicted on
observed* (sim = slope * obs + intercept); slope 1 and intercept 0 is a perfect fit.

`site_metrics` scores each group (e.g. site, or site and year) of a long table; `pooled_metrics`
scores all counted days of all groups together (one NSE over the pooled days, not a mean of
per-site NSEs).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

METRIC_NAMES = ("nse", "rmse", "slope", "intercept", "n_days")

__all__ = ["METRIC_NAMES", "counted", "nse", "rmse", "trend_line", "scores", "site_metrics", "pooled_metrics"]


def counted(obs, sim, mask=None) -> np.ndarray:
    """Boolean array of the days that count: mask true (the frozen mask) and both values finite.

    `mask` may be None (every finite day counts) or booleans (True = counts).
    """
    obs = np.asarray(obs, dtype=float)
    sim = np.asarray(sim, dtype=float)
    ok = np.isfinite(obs) & np.isfinite(sim)
    if mask is not None:
        ok &= np.asarray(mask, dtype=bool)
    return ok


def _pick(obs, sim, mask):
    ok = counted(obs, sim, mask)
    return np.asarray(obs, dtype=float)[ok], np.asarray(sim, dtype=float)[ok]


def nse(obs, sim, mask=None) -> float:
    """1 - sum (sim - obs)^2 / sum (obs - mean obs)^2 (eq. 18); NaN without days or variance."""
    o, s = _pick(obs, sim, mask)
    if o.size == 0:
        return float("nan")
    denom = float(np.sum((o - o.mean()) ** 2))
    if denom <= 0:
        return float("nan")
    return 1.0 - float(np.sum((s - o) ** 2)) / denom


def rmse(obs, sim, mask=None) -> float:
    """sqrt(mean (sim - obs)^2) (eq. 19); NaN without days."""
    o, s = _pick(obs, sim, mask)
    if o.size == 0:
        return float("nan")
    return float(np.sqrt(np.mean((s - o) ** 2)))


def trend_line(obs, sim, mask=None) -> tuple[float, float]:
    """(slope, intercept) of sim = slope * obs + intercept by least squares (eq. 20)."""
    o, s = _pick(obs, sim, mask)
    if o.size < 2:
        return float("nan"), float("nan")
    dx = o - o.mean()
    sxx = float(np.sum(dx * dx))
    if sxx <= 0:
        return float("nan"), float("nan")
    slope = float(np.sum(dx * (s - s.mean()))) / sxx
    return slope, float(s.mean() - slope * o.mean())


def scores(obs, sim, mask=None) -> dict:
    """All metrics of one series: {nse, rmse, slope, intercept, n_days}."""
    slope, intercept = trend_line(obs, sim, mask)
    return {"nse": nse(obs, sim, mask), "rmse": rmse(obs, sim, mask), "slope": slope,
            "intercept": intercept, "n_days": int(counted(obs, sim, mask).sum())}


def site_metrics(df: pd.DataFrame, by="site_id", obs="swc_obs", sim="swc_sim", mask="counted") -> pd.DataFrame:
    """One row of metrics per group of a long daily table (columns by..., nse, rmse, slope, intercept, n_days)."""
    keys = [by] if isinstance(by, str) else list(by)
    rows = []
    for key, g in df.groupby(keys, sort=True, observed=True):
        key = key if isinstance(key, tuple) else (key,)
        m = g[mask].to_numpy() if mask is not None and mask in g else None
        rows.append({**dict(zip(keys, key)), **scores(g[obs].to_numpy(), g[sim].to_numpy(), m)})
    return pd.DataFrame(rows, columns=keys + list(METRIC_NAMES))


def pooled_metrics(df: pd.DataFrame, obs="swc_obs", sim="swc_sim", mask="counted") -> dict:
    """Metrics over every counted day of the table at once."""
    m = df[mask].to_numpy() if mask is not None and mask in df else None
    return scores(df[obs].to_numpy(), df[sim].to_numpy(), m)
