"""Site splits (70/15/15 by site, seeded, saved) and site-year samples (paper 2.1, Table 3).

A sample is a (historical year, target year) pair of consecutive accepted years of one site:
the SPTF reads the historical year and is scored on the target year. Splitting by site keeps
every year of a site in one split, so no site leaks between training and test.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pandas as pd

from sptf_ray import storage
from sptf_ray.config import config_to_dict, load_config

SPLITS_FILE = "splits.parquet"
SPLITS_META_FILE = "splits.json"
SPLIT_NAMES = ("train", "val", "test")


@dataclass
class SplitConfig:
    train: float = 0.70
    val: float = 0.15
    test: float = 0.15
    seed: int = 0

    def validate(self) -> None:
        fractions = (self.train, self.val, self.test)
        if any(f < 0 for f in fractions) or abs(sum(fractions) - 1.0) > 1e-9:
            raise ValueError(f"split fractions must be >= 0 and sum to 1, got {fractions}")


def split_sites(site_ids, config: SplitConfig | dict | None = None) -> pd.DataFrame:
    """DataFrame(site_id, split): a seeded shuffle cut by the fractions (largest remainder).

    Sorting first makes the result independent of the input order.
    """
    cfg = load_config(SplitConfig, config if config is not None else SplitConfig())
    ids = sorted({str(s) for s in site_ids})
    if len(ids) != len(list(site_ids)):
        raise ValueError("site_ids contain duplicates")
    n = len(ids)
    fractions = np.array([cfg.train, cfg.val, cfg.test])
    counts = np.floor(fractions * n).astype(int)
    remainder = fractions * n - counts
    for i in np.argsort(-remainder, kind="stable")[: n - counts.sum()]:
        counts[i] += 1
    order = np.random.default_rng(cfg.seed).permutation(n)
    labels = np.repeat(SPLIT_NAMES, counts)
    out = pd.DataFrame({"site_id": np.asarray(ids)[order], "split": labels})
    return out.sort_values("site_id").reset_index(drop=True).astype({"site_id": "string", "split": "string"})


def site_year_samples(daily: pd.DataFrame) -> pd.DataFrame:
    """DataFrame(site_id, hist_year, target_year): consecutive complete (365-day) year pairs.

    `daily` is a QC'd daily table (validate_sites keeps only accepted years). A year with
    fewer than 365 rows is an error here, not a silent skip: QC should have removed it.
    """
    years = daily.assign(year=daily["date"].dt.year).groupby(["site_id", "year"], observed=True).size()
    short = years[years != 365]
    if len(short):
        raise ValueError(f"years without exactly 365 days (run validate_sites first): {short.index.tolist()[:5]}")
    rows = []
    for sid, group in years.reset_index().groupby("site_id", observed=True):
        ys = sorted(group["year"].tolist())
        rows += [(sid, y, y + 1) for y in ys if y + 1 in set(ys)]
    out = pd.DataFrame(rows, columns=["site_id", "hist_year", "target_year"])
    return out.astype({"site_id": "string", "hist_year": "int64", "target_year": "int64"})


def make_splits(daily: pd.DataFrame, config: SplitConfig | dict | None = None) -> pd.DataFrame:
    """Samples with their split: DataFrame(site_id, hist_year, target_year, split)."""
    samples = site_year_samples(daily)
    sites = split_sites(samples["site_id"].unique().tolist(), config)
    return samples.merge(sites, on="site_id", how="left")


def save_splits(samples: pd.DataFrame, dir_uri, config: SplitConfig | dict | None = None) -> None:
    """Write splits.parquet and splits.json (config, counts) beside the data."""
    cfg = load_config(SplitConfig, config if config is not None else SplitConfig())
    storage.atomic_write_parquet(samples, storage.join(dir_uri, SPLITS_FILE))
    meta = {
        "config": config_to_dict(cfg),
        "sites": {s: sorted(samples.loc[samples.split == s, "site_id"].unique().tolist()) for s in SPLIT_NAMES},
        "n_samples": {s: int((samples.split == s).sum()) for s in SPLIT_NAMES},
    }
    storage.atomic_write_text(storage.join(dir_uri, SPLITS_META_FILE), json.dumps(meta, indent=2) + "\n")


def load_splits(dir_uri) -> pd.DataFrame:
    return storage.read_parquet(storage.join(dir_uri, SPLITS_FILE))
