"""Permutation feature importance and input-length sensitivity (paper 2.6 and 3.4)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from sptf_ray import storage
from sptf_ray.evaluate.sensitivity import (FEATURES, SPTFScorer, _window, input_length_sensitivity,
                                           permutation_importance)
from sptf_ray.models import SPTF, SPTF_DAILY, SPTFConfig, Surrogate, SurrogateConfig
from sptf_ray.training.bundle import load_bundle, write_bundle
from sptf_ray.training.data import build_sptf_arrays, fit_sptf_normalizers, load_site_samples
from sptf_ray.training.loops import seed_everything

from training_helpers import write_site_dataset


@pytest.fixture(scope="module")
def sites(tmp_path_factory):
    uri = str(tmp_path_factory.mktemp("sens") / "sites")
    write_site_dataset(uri, n_sites=8)
    static, daily, samples = load_site_samples(uri)
    return uri, build_sptf_arrays(static, daily, samples)


def _bundle(root, arrays, reads: str | None = None) -> str:
    """An SPTF bundle (random weights) with its surrogate; `reads`: the one input the SPTF can see."""
    from sptf_ray.models import Normalizer

    seed_everything(0)
    sur_dir, sptf_dir = str(root / "sur"), str(root / "sptf")
    forcing = Normalizer(["precip", "pet", "lai"], [0.3, 0.2, 1.5], [0.8, 0.1, 1.0])
    write_bundle(sur_dir, "surrogate", Surrogate(SurrogateConfig(hidden_size=8)), {"forcing": forcing})
    sptf = SPTF(SPTFConfig(hidden_size=6))
    if reads is not None:  # the LSTM's input weights of every other input are zero
        with torch.no_grad():
            keep = torch.zeros(len(FEATURES), dtype=torch.bool)
            keep[FEATURES.index(reads)] = True
            sptf.lstm.weight_ih_l0[:, ~keep] = 0.0
            sptf.lstm.weight_ih_l0[:, keep] *= 20.0  # make the one input matter
    daily_norm, static_norm = fit_sptf_normalizers(arrays)
    write_bundle(sptf_dir, "sptf", sptf, {"daily": daily_norm, "static": static_norm}, surrogate_uri=sur_dir)
    return sptf_dir


def test_importance_finds_the_only_input_the_sptf_reads(sites, tmp_path):
    _, arrays = sites
    scorer = SPTFScorer(load_bundle(_bundle(tmp_path, arrays, reads="sand")))
    rows = permutation_importance(scorer, arrays, repeats=3, seed=1)
    assert len(rows) == 3 * len(FEATURES)
    fi = rows.groupby("feature")["fi"].mean()
    # inputs the SPTF cannot see leave the loss bit for bit unchanged (SWC also sets the theta_s
    # bound: excluded); the one it reads moves it (an untrained surrogate responds weakly, hence 1e-5)
    blind = [f for f in FEATURES if f not in ("sand", "swc")]
    np.testing.assert_allclose(fi[blind], 1.0, rtol=1e-12)
    assert abs(fi["sand"] - 1.0) > 1e-5, fi
    assert (rows["loss_orig"] == rows["loss_orig"].iloc[0]).all()
    # seeded: the same call gives the same rows
    pd.testing.assert_frame_equal(rows, permutation_importance(scorer, arrays, repeats=3, seed=1))


def test_windows_are_slices_of_the_historical_year(sites):
    _, arrays = sites
    win = _window(arrays, 40, np.random.default_rng(0))
    assert win.hist_daily.shape == (len(arrays), 40, len(SPTF_DAILY))
    for i in range(len(arrays)):
        full = arrays.hist_daily[i]
        starts = [s for s in range(365 - 40 + 1) if np.array_equal(full[s:s + 40], win.hist_daily[i], equal_nan=True)]
        assert starts, i
        swc = win.hist_daily[i, :, 0]
        assert win.theta_s_upper[i] == pytest.approx(max(0.41, float(np.nanmax(swc))))
    np.testing.assert_array_equal(win.target_swc, arrays.target_swc)  # the target year is never touched


def test_input_length_full_year_is_the_plain_score(sites, tmp_path):
    _, arrays = sites
    scorer = SPTFScorer(load_bundle(_bundle(tmp_path, arrays, reads="swc")))
    rows = input_length_sensitivity(scorer, arrays, lengths=[20, 365], windows=3)
    assert list(rows["length"]) == [20, 20, 20, 365]
    full = rows[rows["length"] == 365].iloc[0]
    plain = scorer.score(arrays)
    assert full["nse"] == pytest.approx(plain["nse"]) and full["rmse"] == pytest.approx(plain["rmse"])
    assert rows["rmse"].notna().all()
    with pytest.raises(ValueError, match="1..365"):
        input_length_sensitivity(scorer, arrays, lengths=[0])


def test_bad_inputs_are_refused(sites, tmp_path):
    _, arrays = sites
    scorer = SPTFScorer(load_bundle(_bundle(tmp_path, arrays)))
    with pytest.raises(ValueError, match="unknown SPTF input"):
        permutation_importance(scorer, arrays, features=["ndvi"])
    with pytest.raises(ValueError, match="at least 2 samples"):
        permutation_importance(scorer, arrays.subset(np.arange(len(arrays)) < 1))
    with pytest.raises(ValueError, match="SPTF bundle"):
        SPTFScorer(load_bundle(str(tmp_path / "sur")))


def test_report_carries_both_analyses(sites, tmp_path):
    from sptf_ray.evaluate.report import IMPORTANCE_FILE, INPUT_LENGTH_FILE, REPORT_MD, evaluate_run
    from sptf_ray.training.predict import predict

    uri, arrays = sites
    bundle = _bundle(tmp_path, arrays)
    pred = str(tmp_path / "run" / "predict" / "vgm")
    predict(bundle, uri, pred)
    res = evaluate_run({"run_dir": str(tmp_path / "run"), "data": uri, "predict": {"vgm": pred}, "rosetta": False,
                        "importance_repeats": 2, "input_lengths": [30, 365], "length_windows": 2,
                        "sensitivity_splits": ["train"]}, progress=(lines := []).append)
    said = [line.split(" in ")[0] for line in lines]
    assert any(line.startswith("evaluate: SPTF-VGM train (") and line.endswith("feature importance 2/2 repeats")
               for line in said), lines
    assert any(line.endswith("input length 2/2 lengths") for line in said), lines
    fi = pd.read_csv(storage.join(str(tmp_path / "run"), IMPORTANCE_FILE))
    assert set(fi["feature"]) == set(FEATURES) and set(fi["split"]) == {"train"} and len(fi) == 2 * len(FEATURES)
    lengths = pd.read_csv(storage.join(str(tmp_path / "run"), INPUT_LENGTH_FILE))
    assert sorted(lengths["length"].unique()) == [30, 365]
    md = (tmp_path / "run" / REPORT_MD).read_text()
    assert "Permutation feature importance" in md and "Input-length sensitivity" in md
    assert "figures/feature_importance.png" in res["files"] and "figures/input_length.png" in res["files"]

    # The bundle moved (as in a moved run directory): the predict manifest's path is gone, the one
    # the config gives is read. Then both analyses switched off: their earlier CSVs do not stay.
    import shutil

    from sptf_ray.evaluate.report import verify_evaluation

    moved = str(tmp_path / "moved-bundle")
    shutil.move(bundle, moved)
    base = {"run_dir": str(tmp_path / "run"), "data": uri, "predict": {"vgm": pred}, "rosetta": False,
            "input_lengths": [30, 365], "length_windows": 2, "sensitivity_splits": ["train"]}
    again = evaluate_run({**base, "importance_repeats": 2, "bundles": {"vgm": moved}}, progress=lambda m: None)
    assert IMPORTANCE_FILE in again["files"] and not any("no complete SPTF bundle" in n for n in again["notes"])
    off = evaluate_run({**base, "importance_repeats": 0, "input_lengths": []}, progress=lambda m: None)
    assert any("no complete SPTF bundle" in n for n in off["notes"])
    for name in (IMPORTANCE_FILE, INPUT_LENGTH_FILE, "figures/feature_importance.png"):
        assert not (tmp_path / "run" / name).exists(), name
    assert verify_evaluation(str(tmp_path / "run")) and (tmp_path / "run" / REPORT_MD).exists()
