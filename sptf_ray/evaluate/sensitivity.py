"""What the SPTF relies on: permutation feature importance and input-length sensitivity.

Both score a trained SPTF bundle the way it was trained: predicted parameters go through the
bundle's frozen surrogate onto the target year and are compared with the observed SWC on the
unfrozen days (paper eq. 3). Inputs are altered, never the target year or its mask.

- **Permutation feature importance** (paper 2.6, Molnar 2018): for each of the nine inputs
  (five daily series of the historical year, four static attributes), shuffle that input across
  the samples (a whole historical series moves with its sample), and report
  FI = E_perm / E_orig with E the eq. 3 loss; repeated with seeds (the paper: 100) and averaged.
  FI near 1: the SPTF ignores the input.
- **Input-length sensitivity** (paper 3.4, Fig. 11): the SPTF reads only a random window of L
  days of the historical year (one start per sample and window, seeded), for L from 10 to 365
  days; pooled NSE and RMSE on the target year, averaged over the windows.

The theta_s upper bound (Table 1: max(0.41, max observed SWC)) is recomputed from what the SPTF
is shown, since it is part of the SPTF's output layer and a function of its input.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Callable, Optional

import numpy as np
import pandas as pd
import torch

from sptf_ray.evaluate.metrics import scores
from sptf_ray.models import SPTF_DAILY, SPTF_STATIC, site_theta_s_upper
from sptf_ray.progress import chunk_reporter

FEATURES = tuple(SPTF_DAILY) + tuple(SPTF_STATIC)
DEFAULT_LENGTHS = (10, 20, 40, 60, 90, 120, 180, 270, 365)
DAYS = 365

__all__ = ["FEATURES", "DEFAULT_LENGTHS", "SPTFScorer", "permutation_importance", "input_length_sensitivity"]


class SPTFScorer:
    """An SPTF bundle with its frozen surrogate: SPTFArrays -> target-year SWC and its scores."""

    def __init__(self, bundle, device: str = "cpu", batch_size: int = 256):
        from sptf_ray.training.loops import SPTFContext

        if bundle.kind != "sptf":
            raise ValueError(f"{bundle.uri} is a {bundle.kind!r} bundle; feature importance needs an SPTF bundle")
        if bundle.surrogate is None:
            raise ValueError(f"the SPTF bundle {bundle.uri} carries no surrogate/ to score it through")
        self.device = device
        self.batch_size = int(batch_size)
        self.sptf = bundle.model.to(device).eval()
        sur = bundle.surrogate
        self.ctx = SPTFContext(sur.model.to(device), bundle.network_config.model, bundle.normalization["daily"],
                               bundle.normalization["static"], sur.normalization["forcing"])

    @torch.no_grad()
    def simulate(self, arrays) -> np.ndarray:
        """(N, 365) target-year SWC of the surrogate with the SPTF's parameters."""
        from sptf_ray.training.data import iterate_batches
        from sptf_ray.training.loops import sptf_forward

        out = [sptf_forward(self.sptf, self.ctx, batch, self.device)[2].double().cpu().numpy()
               for batch in iterate_batches(arrays.tensors(), self.batch_size)]
        return np.concatenate(out) if out else np.zeros((0, DAYS))

    def score(self, arrays) -> dict:
        """Pooled {nse, rmse, mse, ...} over every counted target-year day of `arrays`."""
        s = scores(arrays.target_swc.ravel(), self.simulate(arrays).ravel(), arrays.target_mask.ravel() > 0)
        return {**s, "mse": s["rmse"] ** 2}


def _with_inputs(arrays, hist_daily: np.ndarray, static: np.ndarray):
    hist_daily = np.ascontiguousarray(hist_daily, dtype=np.float32)
    upper = site_theta_s_upper(hist_daily[:, :, SPTF_DAILY.index("swc")]).astype(np.float32)
    return replace(arrays, hist_daily=hist_daily, static=np.ascontiguousarray(static, dtype=np.float32),
                   theta_s_upper=upper)


def _permuted(arrays, feature: str, rng: np.random.Generator):
    order = rng.permutation(len(arrays))
    daily, static = arrays.hist_daily.copy(), arrays.static.copy()
    if feature in SPTF_DAILY:
        j = SPTF_DAILY.index(feature)
        daily[:, :, j] = arrays.hist_daily[order, :, j]
    else:
        j = SPTF_STATIC.index(feature)
        static[:, j] = arrays.static[order, j]
    return _with_inputs(arrays, daily, static)


def _check_samples(arrays, what: str, minimum: int) -> None:
    if len(arrays) < minimum:
        raise ValueError(f"{what} needs at least {minimum} samples, got {len(arrays)}")
    if not np.isfinite(arrays.target_swc).any():
        raise ValueError(f"{what}: the samples have no observed target-year SWC to score against")


def permutation_importance(scorer: SPTFScorer, arrays, repeats: int = 10, seed: int = 0,
                           features=FEATURES, on_step: Optional[Callable[[int, int], None]] = None) -> pd.DataFrame:
    """One row per (feature, repeat): feature, repeat, loss, loss_orig, fi = loss / loss_orig;
    on_step(repeats done, repeats) after each repeat."""
    if repeats < 1:
        raise ValueError("repeats must be >= 1")
    _check_samples(arrays, "permutation feature importance", 2)
    unknown = [f for f in features if f not in FEATURES]
    if unknown:
        raise ValueError(f"unknown SPTF input(s) {unknown}; the inputs are {list(FEATURES)}")
    base = scorer.score(arrays)["mse"]
    if not np.isfinite(base) or base <= 0:
        raise ValueError(f"the unpermuted loss is {base!r}: feature importance (a ratio to it) is undefined")
    rows = []
    for r in range(repeats):
        rng = np.random.default_rng([seed, r])
        for feature in features:
            loss = scorer.score(_permuted(arrays, feature, rng))["mse"]
            rows.append({"feature": feature, "repeat": r, "loss": loss, "loss_orig": base, "fi": loss / base})
        if on_step is not None:
            on_step(r + 1, repeats)
    return pd.DataFrame(rows)


def _window(arrays, length: int, rng: np.random.Generator):
    starts = rng.integers(0, DAYS - length + 1, size=len(arrays))
    idx = starts[:, None] + np.arange(length)[None, :]
    daily = np.take_along_axis(arrays.hist_daily, idx[:, :, None], axis=1)
    return _with_inputs(arrays, daily, arrays.static)


def input_length_sensitivity(scorer: SPTFScorer, arrays, lengths=DEFAULT_LENGTHS, windows: int = 10,
                             seed: int = 0, on_step: Optional[Callable[[int, int], None]] = None) -> pd.DataFrame:
    """One row per (length, window): length, window, nse, rmse, n_days (the full year: one window);
    on_step(lengths done, lengths) after each length."""
    if windows < 1:
        raise ValueError("windows must be >= 1")
    bad = [L for L in lengths if not 1 <= int(L) <= DAYS]
    if bad:
        raise ValueError(f"input lengths must lie in 1..{DAYS} days, got {bad}")
    _check_samples(arrays, "input-length sensitivity", 1)
    rows, todo = [], sorted({int(L) for L in lengths})
    for k, length in enumerate(todo):
        for w in range(1 if length == DAYS else windows):
            s = scorer.score(_window(arrays, length, np.random.default_rng([seed, length, w])))
            rows.append({"length": length, "window": w, "nse": s["nse"], "rmse": s["rmse"], "n_days": s["n_days"]})
        if on_step is not None:
            on_step(k + 1, len(todo))
    return pd.DataFrame(rows)


def analyse_predict_dirs(predict_dirs: dict, static: pd.DataFrame, daily: pd.DataFrame, samples: pd.DataFrame,
                         splits, repeats: int, lengths, windows: int, seed: int, device: str,
                         notes: list, bundles: dict | None = None,
                         progress: Optional[Callable[[str], None]] = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Both analyses for every model whose predict dir names its SPTF bundle (or `bundles` gives
    one), on each split.

    Returns (importance rows, input-length rows), each with `method` and `split` columns; what
    cannot be analysed is said in `notes`, never silently left out.
    """
    from sptf_ray import storage
    from sptf_ray.training.bundle import load_bundle
    from sptf_ray.training.data import build_sptf_arrays

    importance, length = [], []
    for model, d in sorted(predict_dirs.items()):
        method = f"SPTF-{model.upper()}"
        bundle_uri = (bundles or {}).get(model)
        if not bundle_uri:
            try:
                bundle_uri = storage.read_manifest(d).get("extra", {}).get("bundle")
            except (FileNotFoundError, ValueError):
                bundle_uri = None
        if not bundle_uri or not storage.verify_manifest(bundle_uri):
            notes.append(f"{method}: no complete SPTF bundle named by `{d}`; feature importance and input-length "
                         "sensitivity skipped")
            continue
        scorer = SPTFScorer(load_bundle(bundle_uri, map_location=device), device=device)
        for split in splits:
            arrays = build_sptf_arrays(static, daily, samples[samples["split"] == split])
            if len(arrays) < 2 or not np.isfinite(arrays.target_swc).any():
                notes.append(f"{method} {split}: {len(arrays)} scored sample(s); sensitivity analyses need 2")
                continue
            tag, what = {"method": method, "split": split}, f"evaluate: {method} {split} ({len(arrays)} samples):"
            if repeats > 0:
                step = chunk_reporter(f"{what} feature importance", "repeats", progress, every_s=30)
                importance.append(permutation_importance(scorer, arrays, repeats, seed, on_step=step).assign(**tag))
            if lengths:
                step = chunk_reporter(f"{what} input length", "lengths", progress, every_s=30)
                length.append(input_length_sensitivity(scorer, arrays, lengths, windows, seed, on_step=step)
                              .assign(**tag))
    cat = lambda frames: pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()  # noqa: E731
    return cat(importance), cat(length)


def summarize_importance(rows: pd.DataFrame) -> pd.DataFrame:
    """Mean FI over the seeds per input (rows) for each method and split (columns `<method> <split>`)."""
    if rows.empty:
        return rows
    t = rows.groupby(["method", "split", "feature"])["fi"].mean().rename("fi_mean").reset_index()
    t["column"] = t["method"] + " " + t["split"]
    wide = t.pivot(index="feature", columns="column", values="fi_mean")
    order = [f for f in FEATURES if f in wide.index]
    return wide.loc[order].reset_index().rename_axis(columns=None)


def summarize_lengths(rows: pd.DataFrame) -> pd.DataFrame:
    """Mean NSE and RMSE over the windows per method, split and input length."""
    if rows.empty:
        return rows
    g = rows.groupby(["method", "split", "length"])
    return pd.DataFrame({"nse_mean": g["nse"].mean(), "nse_sd": g["nse"].std(ddof=0), "rmse_mean": g["rmse"].mean(),
                         "windows": g.size()}).reset_index()
