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


def sorted_groups(df: pd.DataFrame, keys: list[str]) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """(each group's keys, the row order that puts groups together, the group edges in that order):
    the groups of `df` by `keys`, sorted as groupby sorts them, rows in their order within a group
    (rows with a missing key left out, as groupby does). No copy of the frame: a groupby loop takes
    a sorted copy of all of it, gigabytes for a network's day-by-day table."""
    codes = df.groupby(keys, sort=True, observed=True).ngroup().to_numpy()
    order = np.argsort(codes, kind="stable")
    order = order[codes[order] >= 0]
    starts = np.flatnonzero(np.r_[True, np.diff(codes[order]) != 0]) if len(order) else np.zeros(0, int)
    key_frame = df[keys].iloc[order[starts]].reset_index(drop=True)
    return key_frame, order, np.r_[starts, len(order)]


def site_metrics(df: pd.DataFrame, by="site_id", obs="swc_obs", sim="swc_sim", mask="counted") -> pd.DataFrame:
    """One row of metrics per group of a long daily table (columns by..., nse, rmse, slope, intercept, n_days)."""
    keys = [by] if isinstance(by, str) else list(by)
    key_frame, order, edges = sorted_groups(df, keys)
    o = df[obs].to_numpy(float)[order]
    s = df[sim].to_numpy(float)[order]
    m = df[mask].to_numpy(bool)[order] if mask is not None and mask in df else None
    rows = [scores(o[a:b], s[a:b], None if m is None else m[a:b]) for a, b in zip(edges[:-1], edges[1:])]
    return pd.concat([key_frame, pd.DataFrame(rows, columns=list(METRIC_NAMES))], axis=1)


def pooled_metrics(df: pd.DataFrame, obs="swc_obs", sim="swc_sim", mask="counted") -> dict:
    """Metrics over every counted day of the table at once."""
    m = df[mask].to_numpy() if mask is not None and mask in df else None
    return scores(df[obs].to_numpy(), df[sim].to_numpy(), m)
