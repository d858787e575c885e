"""Metrics against values worked out by hand (paper 2.6, eqs. 18-20)."""
import math

import numpy as np
import pandas as pd
import pytest

from sptf_ray.evaluate.metrics import nse, pooled_metrics, rmse, scores, site_metrics, trend_line


def test_hand_computed_values():
    obs = [1.0, 2.0, 3.0]
    sim = [2.0, 2.0, 4.0]
    # errors 1, 0, 1 -> SSE 2, mean obs 2, SST 1 + 0 + 1 = 2 -> NSE 1 - 2/2 = 0
    assert nse(obs, sim) == pytest.approx(0.0)
    # RMSE sqrt(2/3)
    assert rmse(obs, sim) == pytest.approx(math.sqrt(2.0 / 3.0))
    # slope = sum dx*dy / sum dx^2: dx = -1,0,1; sim mean 8/3, dy = -2/3,-2/3,4/3
    # -> (2/3 + 0 + 4/3) / 2 = 1; intercept = 8/3 - 1*2 = 2/3
    slope, intercept = trend_line(obs, sim)
    assert slope == pytest.approx(1.0)
    assert intercept == pytest.approx(2.0 / 3.0)


def test_perfect_fit():
    s = scores([0.1, 0.2, 0.4], [0.1, 0.2, 0.4])
    assert s == {"nse": pytest.approx(1.0), "rmse": pytest.approx(0.0), "slope": pytest.approx(1.0),
                 "intercept": pytest.approx(0.0), "n_days": 3}


def test_mask_and_nans_excluded():
    # day 2 frozen (masked), day 4 NaN obs, day 5 NaN sim: only days 1 and 3 count
    obs = [1.0, 50.0, 3.0, np.nan, 7.0]
    sim = [2.0, -9.0, 3.0, 1.0, np.nan]
    mask = [True, False, True, True, True]
    # counted pairs (1,2), (3,3): errors 1, 0 -> RMSE sqrt(1/2); mean obs 2, SST 2, NSE 1 - 1/2 = 0.5
    assert rmse(obs, sim, mask) == pytest.approx(math.sqrt(0.5))
    assert nse(obs, sim, mask) == pytest.approx(0.5)
    # slope (3-2)/(3-1) = 0.5, intercept 2 - 0.5 * 1 = 1.5
    assert trend_line(obs, sim, mask) == (pytest.approx(0.5), pytest.approx(1.5))
    assert scores(obs, sim, mask)["n_days"] == 2


def test_degenerate_cases_are_nan():
    assert math.isnan(nse([1.0, 1.0], [1.0, 2.0]))  # no variance
    assert math.isnan(rmse([np.nan], [1.0]))
    assert all(math.isnan(v) for v in trend_line([1.0], [1.0]))


def test_per_site_and_pooled():
    df = pd.DataFrame({
        "site_id": ["a", "a", "a", "b", "b"],
        "swc_obs": [1.0, 2.0, 3.0, 0.0, 2.0],
        "swc_sim": [2.0, 2.0, 4.0, 0.0, 2.0],
        "counted": [True, True, True, True, True],
    })
    per = site_metrics(df).set_index("site_id")
    assert per.loc["a", "nse"] == pytest.approx(0.0)
    assert per.loc["b", "nse"] == pytest.approx(1.0)
    assert per.loc["b", "slope"] == pytest.approx(1.0)
    pooled = pooled_metrics(df)
    # pooled obs 1,2,3,0,2 mean 8/5; SST = 0.36+0.16+1.96+2.56+0.16 = 5.2; SSE = 1+0+1+0+0 = 2
    assert pooled["nse"] == pytest.approx(1 - 2 / 5.2)
    assert pooled["rmse"] == pytest.approx(math.sqrt(2 / 5))
    assert pooled["n_days"] == 5


def test_site_metrics_match_a_groupby_loop_on_interleaved_groups():
    """Groups whose rows are interleaved, several keys, a missing key (left out, as groupby does)
    and a group with no counted day: the same rows in the same order as scoring each groupby group."""
    rng = np.random.default_rng(0)
    n = 400
    df = pd.DataFrame({"method": rng.choice(["SPTF", "Truth"], n), "site_id": rng.choice(["s2", "s10", "s1"], n),
                       "year": rng.choice([2001, 2002], n).astype(float), "swc_obs": rng.uniform(0.1, 0.4, n),
                       "swc_sim": rng.uniform(0.1, 0.4, n), "counted": rng.random(n) > 0.2})
    df.loc[5, "year"] = np.nan
    df.loc[(df["site_id"] == "s10") & (df["year"] == 2002) & (df["method"] == "Truth"), "counted"] = False
    keys = ["method", "site_id", "year"]
    got = site_metrics(df, by=keys)
    want = pd.DataFrame([{**dict(zip(keys, k)), **scores(g["swc_obs"], g["swc_sim"], g["counted"])}
                         for k, g in df.groupby(keys, sort=True)])
    assert len(got) == 12 and got["n_days"].min() == 0
    pd.testing.assert_frame_equal(got, want)
    assert site_metrics(df.iloc[:0], by=keys).empty
