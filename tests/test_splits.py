"""Splits by site, seeded and saved; site-year samples are consecutive accepted year pairs."""
from __future__ import annotations

import json

import pandas as pd
import pytest

from sptf_ray.data.splits import load_splits, make_splits, save_splits, site_year_samples, split_sites
from sptf_ray.data.validate import validate_sites
from test_validate import make_daily, make_static


def test_split_sites_fractions_seed_and_order_independence():
    ids = [f"s{i:03d}" for i in range(100)]
    a = split_sites(ids, {"seed": 1})
    assert a.split.value_counts().to_dict() == {"train": 70, "val": 15, "test": 15}
    assert a.equals(split_sites(list(reversed(ids)), {"seed": 1}))
    assert not a.equals(split_sites(ids, {"seed": 2}))
    assert split_sites(ids[:7]).split.value_counts().sum() == 7


def test_bad_fractions_rejected():
    with pytest.raises(ValueError, match="sum to 1"):
        split_sites(["a"], {"train": 0.8, "val": 0.3, "test": 0.1})


def test_samples_are_consecutive_accepted_pairs():
    daily = make_daily(ids=("A", "B"), years=(2015, 2016, 2017, 2018, 2019))
    bad = (daily.site_id == "A") & (daily.date.dt.year == 2017)
    daily.loc[bad, "swc"] = 5.0  # 2017 rejected: pairs 2015-16 and 2018-19 remain
    _, clean, _ = validate_sites(make_static(), daily)
    s = site_year_samples(clean)
    a = s[s.site_id == "A"][["hist_year", "target_year"]].values.tolist()
    assert a == [[2015, 2016], [2018, 2019]]
    assert len(s[s.site_id == "B"]) == 4


def test_samples_require_qc(tmp_path):
    daily = make_daily(ids=("A",), years=(2019, 2020))  # 2020 has 366 days before QC
    with pytest.raises(ValueError, match="365"):
        site_year_samples(daily)


def test_make_save_load(tmp_path):
    ids = [f"s{i}" for i in range(10)]
    _, clean, _ = validate_sites(make_static(ids), make_daily(ids=ids, years=(2018, 2019)))
    samples = make_splits(clean, {"seed": 3})
    assert samples.groupby("site_id").split.nunique().max() == 1  # a site lives in one split
    save_splits(samples, str(tmp_path), {"seed": 3})
    pd.testing.assert_frame_equal(load_splits(str(tmp_path)), samples)
    meta = json.loads((tmp_path / "splits.json").read_text())
    assert meta["config"]["seed"] == 3 and sum(meta["n_samples"].values()) == 10
