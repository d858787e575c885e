"""`predict`: parameters for (new) sites from their history, with the solver's SWC of the next year.

Every accepted year of a site is a historical year; when the following year exists it is
simulated with the solver (cold start, DESIGN section 0) and scored against its observations
(days with LST >= 0 C only).
"""
from __future__ import annotations

import json
from typing import Callable, Optional

import numpy as np
import pandas as pd
import torch

from sptf_ray import storage
from sptf_ray.physics import PARAM_NAMES, simulate_swc_in_chunks
from sptf_ray.progress import chunk_reporter

PARAMS_FILE = "parameters.csv"
SIM_FILE = "simulated.parquet"
METRICS_FILE = "metrics.csv"
REJECTED_FILE = "rejected.json"

__all__ = ["predict_parameters", "predict"]


def _samples(daily: pd.DataFrame) -> pd.DataFrame:
    years = daily.assign(year=daily["date"].dt.year).groupby(["site_id", "year"], observed=True).size()
    years = years[years == 365].reset_index()
    rows = []
    for sid, g in years.groupby("site_id", observed=True):
        ys = set(g["year"].tolist())
        rows += [(str(sid), int(y), int(y) + 1) for y in sorted(ys)]
    return pd.DataFrame(rows, columns=["site_id", "hist_year", "target_year"])


# Site-years per SPTF forward pass: the LSTM keeps every day's hidden state of a batch (at 128
# hidden, 9,000 site-years in one pass peaked at 3.5 GB more RSS; 1,024 stay near 0.4 GB).
PREDICT_BATCH = 1024
# Site-years per solver call: one progress line each (3,000 sites x 3 target years ran ~4 min on
# 2 cores without a word); large enough to keep every core of the numba batch busy.
SOLVER_CHUNK = 1024


def predict_parameters(bundle, static: pd.DataFrame, daily: pd.DataFrame, device="cpu",
                       batch_size: int = PREDICT_BATCH):
    """(SPTFArrays, physical parameters (N, 6) float64) for every usable site-year."""
    from sptf_ray.training.data import build_sptf_arrays

    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    arrays = build_sptf_arrays(static, daily, _samples(daily), require_target=False)
    if len(arrays) == 0:
        return arrays, np.zeros((0, 6))
    model = bundle.model.to(device).eval()
    norm_d, norm_s = bundle.normalization["daily"], bundle.normalization["static"]
    parts = []
    with torch.no_grad():
        for i in range(0, len(arrays), batch_size):
            rows = slice(i, i + batch_size)
            daily_t = torch.nan_to_num(norm_d(torch.as_tensor(arrays.hist_daily[rows], device=device)))
            unit = model(daily_t, norm_s(torch.as_tensor(arrays.static[rows], device=device))).double()
            upper = torch.as_tensor(arrays.theta_s_upper[rows], dtype=torch.float64, device=device)
            parts.append(model.to_physical(unit, upper).cpu().numpy())
    return arrays, np.concatenate(parts)


def _check_out_is_not_the_sites(out_uri, sites_uri) -> None:
    from sptf_ray.data import schema

    same = storage.resolve(out_uri)[1].rstrip("/") == storage.resolve(sites_uri)[1].rstrip("/")
    if same or storage.exists(storage.join(out_uri, schema.STATIC_FILE)):
        raise ValueError(f"--out {out_uri} holds a site dataset: predictions would replace its manifest; "
                         "choose another directory")


def _scores(sim: np.ndarray, obs: np.ndarray, mask: np.ndarray) -> tuple[float, float, int]:
    w = (mask > 0) & np.isfinite(obs) & np.isfinite(sim)
    if w.sum() == 0:
        return np.nan, np.nan, 0
    err = sim[w] - obs[w]
    rmse = float(np.sqrt(np.mean(err**2)))
    denom = np.sum((obs[w] - obs[w].mean()) ** 2)
    nse = float(1 - np.sum(err**2) / denom) if denom > 0 else np.nan
    return rmse, nse, int(w.sum())


def _simulated_frame(arrays, idx: np.ndarray, swc_sim: np.ndarray) -> pd.DataFrame:
    """One row per simulated day of the site-years `idx`: observed and simulated SWC, and whether it counts."""
    days = swc_sim.shape[1]
    first = pd.to_datetime([f"{y}-01-01" for y in arrays.target_year[idx]]).values
    dates = (first[:, None] + np.arange(days).astype("timedelta64[D]")).ravel()
    return pd.DataFrame({"site_id": np.repeat(arrays.site_id[idx], days),
                         "hist_year": np.repeat(arrays.hist_year[idx], days),
                         "date": dates, "swc_obs": arrays.target_swc[idx].ravel(), "swc_sim": swc_sim.ravel(),
                         "counted": arrays.target_mask[idx].ravel() > 0})


def _simulate_target_years(model_name: str, params: np.ndarray, forcing: np.ndarray,
                           progress: Optional[Callable[[str], None]]) -> tuple[np.ndarray, np.ndarray]:
    """(SWC (N, 365), solver status (N,)) of N parameter sets on their target years' forcing,
    SOLVER_CHUNK at a time with a progress line each."""
    f = forcing.astype(np.float64)
    return simulate_swc_in_chunks(model_name, params, f[:, :, 0], f[:, :, 1], f[:, :, 2], SOLVER_CHUNK,
                                  chunk_reporter("predict: solver", "target years", progress))


def predict(bundle_uri, sites_uri, out_uri, device="cpu", run_solver: bool = True,
            progress: Optional[Callable[[str], None]] = print) -> pd.DataFrame:
    """Write parameters.csv (+ simulated.parquet, metrics.csv, rejected.json) under out_uri, manifest last."""
    from sptf_ray.data.validate import load_site_dataset, rejection_reasons
    from sptf_ray.training.bundle import check_device, load_bundle

    device = check_device(device)
    bundle = load_bundle(bundle_uri, map_location=device)
    if bundle.kind != "sptf":
        raise ValueError(f"{bundle_uri} is a {bundle.kind!r} bundle; predict needs an SPTF bundle")
    model_name = bundle.network_config.model
    _check_out_is_not_the_sites(out_uri, sites_uri)
    ds = load_site_dataset(sites_uri, validate=True)
    arrays, params = predict_parameters(bundle, ds.static, ds.daily, device)
    rejected = dict(arrays.rejected)
    if ds.report is not None:
        rejected.update({sid: why for sid, why in rejection_reasons(ds.report).items() if sid not in rejected})
    names = PARAM_NAMES[model_name]
    table = pd.DataFrame({"site_id": arrays.site_id.astype(str), "hist_year": arrays.hist_year,
                          "target_year": arrays.target_year, "model": model_name,
                          "theta_s_upper": arrays.theta_s_upper.astype(np.float64)})
    for j, name in enumerate(names):
        table[name] = params[:, j]
    storage.makedirs(out_uri)
    for stale in (storage.MANIFEST_NAME, SIM_FILE, METRICS_FILE):  # of an earlier predict into out_uri
        storage.remove(storage.join(out_uri, stale))
    files = [PARAMS_FILE, REJECTED_FILE]
    has_target = np.isfinite(arrays.target_forcing).all(axis=(1, 2)) if len(arrays) else np.zeros(0, bool)
    if run_solver and has_target.any():
        idx = np.flatnonzero(has_target)
        swc, status = _simulate_target_years(model_name, params[idx], arrays.target_forcing[idx], progress)
        scores = [(*_scores(swc[k], arrays.target_swc[i], arrays.target_mask[i]), int(status[k]))
                  for k, i in enumerate(idx)]
        storage.atomic_write_parquet(_simulated_frame(arrays, idx, swc), storage.join(out_uri, SIM_FILE))
        metrics = table.iloc[idx][["site_id", "hist_year", "target_year"]].copy()
        metrics[["rmse", "nse", "n_days", "solver_status"]] = pd.DataFrame(scores, index=metrics.index)
        storage.atomic_write_text(storage.join(out_uri, METRICS_FILE), metrics.to_csv(index=False))
        files += [SIM_FILE, METRICS_FILE]
    storage.atomic_write_text(storage.join(out_uri, PARAMS_FILE), table.to_csv(index=False))
    storage.atomic_write_text(storage.join(out_uri, REJECTED_FILE), json.dumps(rejected, indent=2) + "\n")
    storage.write_manifest(out_uri, files, {"bundle": str(bundle_uri), "sites": str(sites_uri), "device": str(device)})
    return table
