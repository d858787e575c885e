"""`sptf evaluate` on a tiny fabricated run: a small virtual network plus fake predict/inversion outputs."""
import json

import numpy as np
import pandas as pd
import pytest

from sptf_ray import storage
from sptf_ray.data.network import NetworkConfig, build_network, truth_parameters
from sptf_ray.evaluate.report import REPORT_HTML, REPORT_MD, evaluate_run, verify_evaluation
from sptf_ray.physics import PARAM_NAMES


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("run")
    net = run / "network"
    build_network(NetworkConfig(n_sites=8, n_years=3, seed=3, sites_per_task=8), str(net), executor="local",
                  progress=lambda m: None)
    daily = pd.read_parquet(net / "daily.parquet")
    truth = pd.read_parquet(net / "truth.parquet")
    # fabricated SPTF-VGM output: observations plus an offset, for every (site, target year)
    rows = []
    for sid, g in daily.groupby("site_id"):
        g = g.sort_values("date")
        for hy in (2015, 2016):
            t = g[g["date"].dt.year == hy + 1]
            rows.append(pd.DataFrame({"site_id": sid, "hist_year": hy, "date": t["date"].to_numpy(),
                                      "swc_obs": t["swc"].to_numpy(), "swc_sim": t["swc"].to_numpy() + 0.02,
                                      "counted": (t["lst_c"] >= 0).to_numpy()}))
    pred = run / "predict" / "vgm"
    pred.mkdir(parents=True)
    pd.concat(rows).to_parquet(pred / "simulated.parquet")
    params = truth[["site_id"]].copy()
    params["hist_year"] = 2015
    params["target_year"] = 2016
    params["model"] = "vgm"
    for name in PARAM_NAMES["vgm"]:
        params[name] = truth[f"vgm_{name}"] * 1.1
    params.to_csv(pred / "parameters.csv", index=False)
    storage.write_manifest(str(pred), ["simulated.parquet", "parameters.csv"])
    # fabricated inversion: the true parameters of FXW-truth sites
    fx = truth[truth["truth_model"] == "fxw"].reset_index(drop=True)
    inv = pd.DataFrame({"site_id": fx["site_id"], "model": "fxw", "mode": "historical", "calib_year": 2015,
                        "eval_year": 2016})
    p = truth_parameters(fx)
    for j, name in enumerate(PARAM_NAMES["fxw"]):
        inv[name] = p[:, j]
    (run / "inversion").mkdir()
    inv.to_parquet(run / "inversion" / "inversion.parquet")
    storage.write_manifest(str(run / "inversion"), ["inversion.parquet"])
    # a training run's epochs as Ray Train's callback writes them: the best is the second
    (run / "train" / "surrogate-vgm").mkdir(parents=True)
    (run / "train" / "surrogate-vgm" / "metrics.jsonl").write_text("".join(
        json.dumps({"epoch": e, "train_loss": t, "val_mse": v}) + "\n"
        for e, t, v in [(0, 4e-3, 3e-3), (1, 2e-3, 1.5e-4), (2, 1e-3, 2e-4)]))
    return run


def test_learning_curves_need_epochs_and_a_validation_score():
    from sptf_ray.plotting import learning_curves_figure, validation_score

    assert learning_curves_figure({}) is None and learning_curves_figure({"surrogate": []}) is None
    assert validation_score([{"epoch": 0, "val_loss": 1.0}]) == "val_loss"
    with pytest.raises(KeyError, match="val_mse or val_loss"):
        validation_score([{"epoch": 0, "train_loss": 1.0}])
    runs = {f"run-{i}": [{"epoch": e, "train_loss": 1.0 / (e + 1), "val_mse": 2.0 / (e + 1)} for e in range(4)]
            for i in range(3)}
    assert learning_curves_figure(runs).startswith(b"\x89PNG\r\n\x1a\n")  # 3 panels on a 2 x 2 grid


def test_report_from_tiny_run(tiny_run):
    lines = []
    res = evaluate_run({"run_dir": str(tiny_run), "n_timeseries": 2}, progress=lines.append)
    solver_lines = [line.split(" in ")[0] for line in lines if ": solver " in line]
    n_fxw = len(res["site"][res["site"]["method"] == "Inversion-FXW (historical)"])
    assert f"evaluate: Inversion-FXW (historical): solver {n_fxw}/{n_fxw} target years" in solver_lines
    assert any(line.startswith("evaluate: Truth ceiling (FXW sites): solver") for line in solver_lines), lines
    summary = res["summary"]
    methods = set(summary["method"])
    assert {"SPTF-VGM", "Inversion-FXW (historical)", "Truth ceiling"} <= methods
    # the fabricated SPTF is obs + 0.02: RMSE 0.02 exactly, slope 1
    sptf = summary[summary["method"] == "SPTF-VGM"]
    assert np.allclose(sptf["pooled_rmse"], 0.02)
    assert np.allclose(sptf["slope"], 1.0)
    # truth ceiling: only sensor noise (sd 0.01-0.02) and bias remain
    ceiling = summary[summary["method"] == "Truth ceiling"]
    assert (ceiling["pooled_rmse"] < 0.05).all()
    # the inversion with true parameters equals the ceiling on those sites
    per = res["site"]
    a = per[per["method"] == "Inversion-FXW (historical)"].set_index(["site_id", "hist_year"])["rmse"]
    b = per[per["method"] == "Truth ceiling"].set_index(["site_id", "hist_year"])["rmse"]
    assert np.allclose(a, b.reindex(a.index))
    md = (tiny_run / REPORT_MD).read_text()
    assert "Headline" in md and "SPTF-VGM" in md and "Predicted vs true" in md
    assert (tiny_run / REPORT_HTML).read_text().startswith("<!doctype html>")
    assert any(f.endswith(".png") for f in res["files"])
    # training: the kept epoch (1-based) and its scores, with the curves drawn
    assert "| surrogate-vgm | 3 | 2 | val_mse | 0.00015 | 0.002 | 0.003 |" in md
    assert "sptf-vgm" not in md.split("## Training")[1].split("## Figures")[0]  # no such run: no row
    assert "figures/learning_curves.png" in res["files"]
    for f in res["files"]:
        assert (tiny_run / f).stat().st_size > 0
    assert verify_evaluation(str(tiny_run))
    corr = res["correlation"].set_index("method")
    # SPTF-VGM params are truth * 1.1: perfectly correlated on VGM-truth sites (n >= 3 needed)
    if corr.loc["SPTF-VGM", "n_sites"] >= 3:
        assert corr.loc["SPTF-VGM", "r_n"] == pytest.approx(1.0)


def test_a_run_dir_is_scored_against_the_site_data_it_was_made_from(tmp_path):
    """`sptf evaluate RUN_DIR` of a `sites:` run reads that dataset, not a RUN_DIR/network it lacks."""
    from sptf_ray.config import save_config
    from sptf_ray.evaluate.report import EvaluateConfig
    from sptf_ray.pipeline import RESOLVED_CONFIG, PipelineConfig

    run = tmp_path / "run"
    run.mkdir()
    assert EvaluateConfig(run_dir=str(run)).resolved().data == str(run / "network")  # no config: the layout
    save_config(PipelineConfig(), str(run / RESOLVED_CONFIG))  # a virtual-network run
    assert EvaluateConfig(run_dir=str(run)).resolved().data == str(run / "network")
    save_config(PipelineConfig(sites=str(tmp_path / "stations")), str(run / RESOLVED_CONFIG))
    assert EvaluateConfig(run_dir=str(run)).resolved().data == str(tmp_path / "stations")
    assert EvaluateConfig(run_dir=str(run), data="/given").resolved().data == "/given"  # --data wins
    with pytest.raises(FileNotFoundError, match=r"no site dataset at .*stations to score .*--data DIR"):
        evaluate_run({"run_dir": str(run)})
    with pytest.raises(FileNotFoundError, match=r"no run directory at .*elsewhere"):
        evaluate_run({"run_dir": str(tmp_path / "elsewhere")})


def test_a_device_this_machine_lacks_is_refused_before_any_scoring(tiny_run, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ValueError, match="'cuda': this machine has no CUDA device"):
        evaluate_run({"run_dir": str(tiny_run), "out": str(tmp_path / "report"), "device": "cuda"},
                     progress=lambda m: pytest.fail(f"scored before the device was checked: {m}"))
    assert not (tmp_path / "report").exists()
