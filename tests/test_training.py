"""Training: plain loops, checkpoints and resume, Ray Train end to end, the bundle and `sptf predict`."""
from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

from sptf_ray.models import SPTF, SPTFConfig, Surrogate, SurrogateConfig
from sptf_ray.training.data import (SurrogateBatcher, build_sptf_arrays, fit_forcing_normalizer, fit_sptf_normalizers,
                                    iterate_batches, load_site_samples, read_surrogate_arrays, shard_paths)
from sptf_ray.training.loops import (SPTFContext, evaluate_sptf, evaluate_surrogate, load_checkpoint, save_checkpoint,
                                     scheduled_lr, seed_everything, set_lr, train_sptf_epoch,
                                     train_surrogate_epoch)

from training_helpers import write_shards, write_site_dataset


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("train-data")
    shards, sites = str(root / "shards"), str(root / "sites")
    write_shards(shards, n_sims=48, days=90)
    write_site_dataset(sites, n_sites=8)
    return {"shards": shards, "sites": sites, "root": root}


@pytest.fixture(scope="module")
def surrogate_arrays(data):
    paths = shard_paths(data["shards"])
    norm = fit_forcing_normalizer(paths, "vgm")
    return norm, {s: read_surrogate_arrays(paths, SurrogateBatcher("vgm", norm, s)) for s in ("train", "val")}


@pytest.fixture(scope="module")
def sptf_setup(data, surrogate_arrays):
    static, daily, samples = load_site_samples(data["sites"])
    arrays = build_sptf_arrays(static, daily, samples)
    train = arrays.subset(samples["split"].to_numpy() == "train")
    daily_norm, static_norm = fit_sptf_normalizers(train)
    return arrays, train, daily_norm, static_norm, surrogate_arrays[0]


def _surrogate_run(arrays, epochs, seed=0, resume_from=None, ckpt=None, schedule="constant", planned=None):
    seed_everything(seed)
    model = Surrogate(SurrogateConfig(hidden_size=12))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    start = 0
    if resume_from is not None:
        start = load_checkpoint(resume_from, model, opt)["epoch"] + 1
    history = []
    for epoch in range(start, epochs):
        set_lr(opt, scheduled_lr(1e-2, epoch, planned or epochs, schedule))
        m = train_surrogate_epoch(model, iterate_batches(arrays["train"], 8, shuffle=True, seed=seed * 1000 + epoch),
                                  opt)
        v = evaluate_surrogate(model, iterate_batches(arrays["val"], 16))
        history.append((m["loss"], v["mse"]))
        if ckpt is not None:
            save_checkpoint(ckpt, model, opt, epoch, {"val_mse": v["mse"]})
    return model, history


def test_surrogate_training_lowers_loss(surrogate_arrays):
    _, arrays = surrogate_arrays
    _, hist = _surrogate_run(arrays, epochs=6)
    assert hist[-1][0] < hist[0][0] * 0.7, hist


@pytest.mark.parametrize("schedule", ["constant", "cosine"])
def test_checkpoint_resume_continues_the_same_run(surrogate_arrays, tmp_path, schedule):
    _, arrays = surrogate_arrays
    _, full = _surrogate_run(arrays, epochs=4, schedule=schedule)
    ckpt = str(tmp_path / "ckpt.pt")
    _surrogate_run(arrays, epochs=2, ckpt=ckpt, schedule=schedule, planned=4)  # "stopped" after epoch 1
    state = torch.load(ckpt, weights_only=True)
    assert state["epoch"] == 1 and "rng" in state and state["optimizer"]["state"]
    _, rest = _surrogate_run(arrays, epochs=4, resume_from=ckpt, schedule=schedule)
    np.testing.assert_allclose(np.array(rest), np.array(full[2:]), rtol=1e-5)


def test_cosine_schedule_falls_from_lr_to_its_final_fraction():
    lrs = [scheduled_lr(1e-3, e, 11, "cosine", 0.05) for e in range(11)]
    assert lrs[0] == pytest.approx(1e-3) and lrs[-1] == pytest.approx(5e-5)
    assert lrs[5] == pytest.approx(0.5 * (1e-3 + 5e-5))  # the half-way point of a cosine
    assert all(a > b for a, b in zip(lrs, lrs[1:]))
    assert {scheduled_lr(1e-3, e, 11) for e in range(11)} == {1e-3}
    with pytest.raises(ValueError, match="schedule"):
        scheduled_lr(1e-3, 0, 11, "step")


def test_the_cli_offers_every_schedule_without_importing_torch():
    # `sptf --help` stays fast: the schedules live outside the torch loops
    code = ("import sys, argparse; from sptf_ray.training import cli; p = argparse.ArgumentParser(); "
            "cli.add_parser(p.add_subparsers(dest='cmd')); assert 'torch' not in sys.modules, 'torch imported'; "
            "sub = p._subparsers._group_actions[0].choices['train-surrogate']; "
            "print(','.join(next(a.choices for a in sub._actions if a.dest == 'lr_schedule')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().split(",") == ["constant", "cosine"]


def test_training_commands_refuse_missing_inputs_before_ray_starts(data, tmp_path, monkeypatch, capsys):
    import sptf_ray.training.cli as training_cli
    from sptf_ray.cli import main

    def no_ray(address=None):
        raise AssertionError("Ray was started before the inputs were checked")

    monkeypatch.setattr(training_cli, "ensure_ray", no_ray)
    out = str(tmp_path / "runs")
    empty = tmp_path / "empty"
    empty.mkdir()
    cases = [(["train-surrogate", "--data", str(empty)], "no shard-\\*.parquet files in .*empty"),
             (["train-sptf", "--data", str(empty), "--surrogate", str(empty)], "site dataset .*empty: missing"),
             (["train-sptf", "--data", data["sites"], "--surrogate", str(empty)], "no surrogate bundle at .*empty"),
             (["tune", "surrogate", "--data", str(tmp_path / "nope")], "nope"),
             (["train-surrogate", "--data", str(empty), "--epochs", "0"], "epochs and batch_size must be >= 1")]
    for argv, message in cases:
        assert main([*argv, "--out", out]) == 2, argv
        assert re.search(message, capsys.readouterr().err), argv
    assert not os.path.exists(out)


def test_train_config_rejects_a_bad_schedule():
    from sptf_ray.config import load_config
    from sptf_ray.training.ray_train import SurrogateTrainConfig

    base = {"storage_path": "/s", "name": "n", "data": "/d"}
    with pytest.raises(ValueError, match="lr_schedule"):
        load_config(SurrogateTrainConfig, {**base, "lr_schedule": "linear"})
    with pytest.raises(ValueError, match="lr_final_fraction"):
        load_config(SurrogateTrainConfig, {**base, "lr_schedule": "cosine", "lr_final_fraction": 0.0})
    with pytest.raises(ValueError, match="log_level must be one of"):
        load_config(SurrogateTrainConfig, {**base, "log_level": "LOUD"})


def test_ray_train_and_data_epoch_lines_leave_the_console_but_not_warnings():
    import importlib
    import importlib.util
    import logging

    from sptf_ray.training.ray_train import quiet_ray_console

    importlib.import_module("ray.data")  # configures the ray.data logger and its console handler
    report_logger = logging.getLogger(importlib.util.find_spec("ray.train.v2._internal.execution.context").origin)
    consoles = [h for h in logging.getLogger("ray.data").handlers if isinstance(h, logging.StreamHandler)]
    assert consoles, "Ray Data no longer logs to the console through its own handler"
    before = [h.level for h in consoles], report_logger.level
    try:
        quiet_ray_console("WARNING")
        assert all(h.level == logging.WARNING for h in consoles)
        assert not report_logger.isEnabledFor(logging.INFO) and report_logger.isEnabledFor(logging.WARNING)
    finally:
        for h, level in zip(consoles, before[0]):
            h.setLevel(level)
        report_logger.setLevel(before[1])


def test_sptf_trains_through_frozen_surrogate(sptf_setup):
    arrays, train, daily_norm, static_norm, forcing_norm = sptf_setup
    seed_everything(0)
    surrogate = Surrogate(SurrogateConfig(hidden_size=12))
    before = copy.deepcopy(surrogate.state_dict())
    ctx = SPTFContext(surrogate, "vgm", daily_norm, static_norm, forcing_norm)
    sptf = SPTF(SPTFConfig(hidden_size=8))
    opt = torch.optim.Adam(sptf.parameters(), lr=1e-2)
    batch = next(iterate_batches(train.tensors(), 64))
    sptf_before = copy.deepcopy(sptf.state_dict())
    losses = [train_sptf_epoch(sptf, ctx, [batch], opt)["loss"] for _ in range(8)]
    assert losses[-1] < losses[0], losses
    # the surrogate did not move, is frozen; the SPTF did move (gradients reached it)
    for k, v in surrogate.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert not any(p.requires_grad for p in surrogate.parameters()) and not surrogate.training
    assert any(not torch.equal(v, sptf_before[k]) for k, v in sptf.state_dict().items())
    ev = evaluate_sptf(sptf, ctx, iterate_batches(arrays.tensors(), 64))
    assert np.isfinite(ev["loss"]) and ev["n"] == len(arrays)


def test_predicting_in_batches_gives_the_parameters_of_one_pass(data, sptf_setup):
    from types import SimpleNamespace

    from sptf_ray.training.predict import predict_parameters

    _, _, daily_norm, static_norm, _ = sptf_setup
    torch.manual_seed(0)
    bundle = SimpleNamespace(model=SPTF(SPTFConfig(model="vgm", hidden_size=8)),
                             normalization={"daily": daily_norm, "static": static_norm})
    static, daily, _ = load_site_samples(data["sites"])
    arrays, whole = predict_parameters(bundle, static, daily, batch_size=100_000)
    _, batched = predict_parameters(bundle, static, daily, batch_size=5)
    assert len(arrays) > 5 and len(arrays) % 5  # several batches, the last one short
    np.testing.assert_allclose(batched, whole, rtol=1e-6, atol=1e-9)
    with pytest.raises(ValueError, match="batch_size"):
        predict_parameters(bundle, static, daily, batch_size=0)


def test_predict_solves_in_chunks_with_progress(monkeypatch):
    from sptf_ray.physics import parameter_space, simulate
    from sptf_ray.training import predict as predict_module

    rng = np.random.default_rng(3)
    space = parameter_space("vgm")
    params = space.lower + rng.random((7, 6)) * (space.upper - space.lower)
    forcing = np.stack([rng.gamma(0.3, 0.5, (7, 365)), np.full((7, 365), 0.3), np.full((7, 365), 1.5)], axis=-1)
    monkeypatch.setattr(predict_module, "SOLVER_CHUNK", 3)
    lines = []
    swc, status = predict_module._simulate_target_years("vgm", params, forcing.astype(np.float32), lines.append)
    f32 = forcing.astype(np.float32).astype(np.float64)  # predict's forcing is float32
    one_call = simulate("vgm", params, f32[..., 0], f32[..., 1], f32[..., 2], raise_on_failure=False)
    np.testing.assert_array_equal(swc, one_call.swc)
    np.testing.assert_array_equal(status, one_call.status)
    assert swc.shape == (7, 365) and np.isfinite(swc[status == 0]).all()
    assert [line.split(" in ")[0] for line in lines] == [f"predict: solver {k}/7 target years" for k in (3, 6, 7)]
    assert "left" in lines[0] and "left" not in lines[-1]


def test_validation_without_simulations_is_nan_not_zero():
    assert np.isnan(evaluate_surrogate(Surrogate(SurrogateConfig(hidden_size=4)), iter([]))["mse"])


def test_count_split_matches_the_hash_split(data):
    from sptf_ray.training.data import count_split, sim_split

    paths = shard_paths(data["shards"])
    expected = int(np.sum(sim_split(np.arange(48), 3, 0.5, 0.1) == "val"))
    assert 0 < expected < 48
    assert count_split(paths, "vgm", "val", seed=3, val_fraction=0.5) == expected
    assert count_split(paths, "fxw", "val", seed=3, val_fraction=0.5) == 0


def test_surrogate_training_refuses_a_dataset_without_validation_sims(ray_session, data, tmp_path):
    from sptf_ray.training.data import count_split
    from sptf_ray.training.ray_train import train_surrogate

    assert count_split(shard_paths(data["shards"]), "vgm", "val", val_fraction=1e-6) == 0
    with pytest.raises(ValueError, match="validation split"):
        train_surrogate({"data": data["shards"], "storage_path": str(tmp_path), "name": "no-val", "epochs": 1,
                         "val_fraction": 1e-6})


# ------------------------------------------------------------------------------ Ray Train
def test_metrics_file_keeps_the_epoch_index_and_a_restart_replaces_it(tmp_path, capsys):
    from sptf_ray.training.ray_train import MetricsCallback, read_metrics

    callback = MetricsCallback(str(tmp_path), "surrogate", 3)
    for epoch, mse in [(0, 0.5), (1, 0.4), (1, 0.3)]:  # epoch 1 again: after a worker failure
        callback.after_report(None, [{"epoch": epoch, "val_mse": mse}], None)
    assert [(m["epoch"], m["val_mse"]) for m in read_metrics(str(tmp_path))] == [(0, 0.5), (1, 0.3)]
    assert capsys.readouterr().out.splitlines()[-1] == "[surrogate] epoch 2/3: val_mse=0.3"


@pytest.fixture(scope="module")
def ray_runs(ray_session, data, tmp_path_factory):
    """One surrogate and one SPTF Ray Train run (1 worker, 0.5 CPU), shared by the tests below."""
    from sptf_ray.training.ray_train import train_sptf, train_surrogate

    store = str(tmp_path_factory.mktemp("runs"))
    sur = train_surrogate({"data": data["shards"], "storage_path": store, "name": "sur-1", "epochs": 1,
                           "batch_size": 8, "lr": 1e-2, "network": {"hidden_size": 12}, "max_failures": 1,
                           "scaling": {"num_workers": 1, "cpus_per_worker": 0.5}})
    sptf = train_sptf({"data": data["sites"], "surrogate": sur.bundle, "storage_path": store, "name": "sptf-1",
                       "epochs": 2, "batch_size": 8, "lr": 1e-2, "lr_schedule": "cosine", "network": {"hidden_size": 8},
                       "scaling": {"num_workers": 1, "cpus_per_worker": 0.5}})
    return {"store": store, "surrogate": sur, "sptf": sptf}


def test_epochs_since_best_counts_from_the_last_real_improvement():
    from sptf_ray.training.ray_train import epochs_since_best

    assert epochs_since_best([]) == 0
    assert epochs_since_best([3.0, 2.0, 2.5, 2.1]) == 2
    assert epochs_since_best([3.0, 2.0, 2.5, 1.0]) == 0
    assert epochs_since_best([1.0, 1.0 - 1e-9, 1.0 - 2e-9]) == 2  # float noise is no progress
    assert epochs_since_best([1.0, float("nan"), 0.5]) == 0 and epochs_since_best([1.0, float("nan")]) == 1


def test_patience_stops_a_run_that_no_longer_improves_and_its_resume(ray_runs, data):
    from sptf_ray.config import load_config
    from sptf_ray.training.ray_train import SPTFTrainConfig, train_sptf

    cfg = {"data": data["sites"], "surrogate": ray_runs["surrogate"].bundle, "storage_path": ray_runs["store"],
           "name": "sptf-patience", "epochs": 10, "batch_size": 8, "lr": 1e-12, "patience": 2,
           "network": {"hidden_size": 8}, "scaling": {"num_workers": 2, "cpus_per_worker": 0.5}}  # DDP: both stop
    run = train_sptf(cfg)  # an lr of 1e-12 moves nothing: epochs 2 and 3 do not improve on the first
    assert [m["epoch"] for m in run.history] == [0, 1, 2]
    assert run.best_metrics["val_loss"] == min(m["val_loss"] for m in run.history)
    again = train_sptf({**cfg, "epochs": 20})  # the same run resumed: still stalled, no epoch trained
    assert [m["epoch"] for m in again.history] == [0, 1, 2]
    with pytest.raises(ValueError, match="patience must be >= 1"):
        load_config(SPTFTrainConfig, {**cfg, "patience": 0})


def test_training_the_local_ray_cannot_hold_fails_at_once(ray_session, data, tmp_path, monkeypatch):
    """Train V2 would wait for a GPU without end; a local instance never gets one, so say so."""
    from sptf_ray.training import ray_train
    from sptf_ray.training.ray_train import train_sptf, train_surrogate

    if ray_session.cluster_resources().get("GPU"):
        pytest.skip("this Ray instance has a GPU")

    def reached_the_trainer(*args, **kwargs):
        raise AssertionError("the request reached Ray Train, which would wait for it without end")

    monkeypatch.setattr(ray_train, "_fit", reached_the_trainer)
    with pytest.raises(ValueError, match=r"1 GPU in all \(the cluster has 0\).*cannot grow.*drop --use-gpu"):
        train_surrogate({"data": data["shards"], "storage_path": str(tmp_path), "name": "gpu", "epochs": 1,
                         "scaling": {"use_gpu": True}})
    with pytest.raises(ValueError, match=r"training workers: 8 x \(0.5 CPU\) needs 4 CPU in all \(the cluster has 2\)"):
        train_sptf({"data": data["sites"], "surrogate": str(tmp_path / "no-bundle"), "storage_path": str(tmp_path),
                    "name": "wide", "epochs": 1, "scaling": {"num_workers": 8, "cpus_per_worker": 0.5}})
    assert list(tmp_path.iterdir()) == []  # refused before anything was written


def test_a_joined_cluster_short_of_gpus_is_told_not_refused(ray_session, monkeypatch, capsys):
    from sptf_ray import jobs_common
    from sptf_ray.training import ray_train

    if ray_session.cluster_resources().get("GPU"):
        pytest.skip("this Ray instance has a GPU")
    monkeypatch.setattr(jobs_common, "ray_started_in_this_process", lambda: False)  # as under `ray job submit`
    ray_train.check_cluster_fits(ray_train.ScalingArgs(num_workers=2, use_gpu=True))
    err = capsys.readouterr().err
    assert "2 GPU in all (the cluster has 0)" in err and "1 GPU on one node (the largest has 0)" in err
    ray_train.check_cluster_fits(ray_train.ScalingArgs(num_workers=2))  # fits: silent
    assert capsys.readouterr().err == ""


def test_training_takes_relative_paths(ray_runs, data, monkeypatch):
    """Train's controller and workers do not share the caller's working directory."""
    from sptf_ray.training.ray_train import train_sptf

    store = ray_runs["store"]
    monkeypatch.chdir(store)
    out = train_sptf({"data": os.path.relpath(data["sites"]), "surrogate": os.path.relpath(ray_runs["surrogate"].bundle),
                      "storage_path": "relative", "name": "sptf-rel", "epochs": 1, "batch_size": 8,
                      "network": {"hidden_size": 4}, "scaling": {"cpus_per_worker": 0.5}})
    assert out.bundle == os.path.join(store, "relative", "sptf-rel", "bundle")
    assert [m["epoch"] for m in out.history] == [0]


def test_ray_train_surrogate_end_to_end(ray_runs):
    import json

    from sptf_ray import storage
    from sptf_ray.training.bundle import load_bundle

    sur = ray_runs["surrogate"]
    assert [m["epoch"] for m in sur.history] == [0]
    assert all(np.isfinite(m["val_mse"]) and m["n_val"] > 0 for m in sur.history)
    assert storage.verify_manifest(sur.bundle)
    b = load_bundle(sur.bundle)
    assert b.kind == "surrogate" and b.network_config.hidden_size == 12 and "forcing" in b.normalization
    if not torch.cuda.is_available():  # not "weights do not load": the GPU is what is missing
        with pytest.raises(ValueError, match="'cuda': this machine has no CUDA device"):
            load_bundle(sur.bundle, map_location="cuda")
    assert json.loads(storage.read_text(storage.join(sur.bundle, "versions.json")))["torch"]
    # where it trained: the one rank's record, written by the worker, carried by the bundle
    from sptf_ray.provenance import host_info

    assert b.provenance["trained_on"] == sur.workers
    (rank0,) = sur.workers
    assert (rank0["rank"], rank0["world_size"], rank0["device"], rank0["accelerator"], rank0["from_epoch"]) == (
        0, 1, "cpu", None, 0)
    assert rank0["cpu"] == host_info()["cpu"] == b.provenance["bundled_on"]["cpu"]
    # the bundle holds the best-on-validation checkpoint
    assert sur.best_metrics["val_mse"] == min(m["val_mse"] for m in sur.history)


def test_materialized_surrogate_set_holds_the_rows_streaming_gives(ray_session, data, surrogate_arrays):
    """materialize=True (the default) preprocesses the shards once; it must hold exactly the rows,
    in the same order, that streaming the shards every epoch gives."""
    from sptf_ray import storage
    from sptf_ray.training.ray_train import _shard_dataset

    paths = shard_paths(data["shards"])
    fs, _ = storage.resolve(paths[0])
    local = [storage.resolve(p)[1] for p in paths]
    rows = {}
    for materialize in (True, False):
        ds = _shard_dataset(local, SurrogateBatcher("vgm", surrogate_arrays[0], "train"), fs, materialize)
        parts = list(ds.iter_batches(batch_format="numpy"))
        rows[materialize] = {k: np.concatenate([p[k] for p in parts]) for k in ("sim_id", "params", "forcing", "swc")}
    expected = surrogate_arrays[1]["train"]
    assert len(rows[True]["sim_id"]) == len(expected["sim_id"]) > 0
    for k in rows[True]:
        np.testing.assert_array_equal(rows[True][k], rows[False][k])
    np.testing.assert_array_equal(np.sort(rows[True]["sim_id"]), np.sort(expected["sim_id"]))


def test_ray_train_sptf_keeps_best_resumes_and_predicts(ray_runs, data, tmp_path, capsys):
    from sptf_ray import storage
    from sptf_ray.cli import main
    from sptf_ray.physics import parameter_space
    from sptf_ray.training.bundle import load_bundle

    sptf = ray_runs["sptf"]
    assert [m["epoch"] for m in sptf.history] == [0, 1]
    np.testing.assert_allclose([m["lr"] for m in sptf.history], [1e-2, 1e-4])  # cosine over the 2 epochs
    assert sptf.best_metrics["val_loss"] == min(m["val_loss"] for m in sptf.history)
    for run in (sptf, ray_runs["surrogate"]):  # each run's curve beside its metrics
        with open(os.path.join(run.run_dir, "learning_curve.png"), "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    b = load_bundle(sptf.bundle)
    assert b.kind == "sptf" and b.surrogate is not None and b.surrogate.kind == "surrogate"
    assert set(b.normalization) == {"daily", "static"}
    # same name + storage path through the CLI: the run resumes and trains only the new epoch
    rc = main(["train-sptf", "--data", data["sites"], "--surrogate", ray_runs["surrogate"].bundle,
               "--out", ray_runs["store"], "--name", "sptf-1", "--epochs", "3", "--batch-size", "8", "--lr", "1e-2",
               "--hidden", "8", "--cpus-per-worker", "0.5", "--lr-schedule", "cosine"])
    assert rc == 0
    lines = storage.read_text(storage.join(ray_runs["store"], "sptf-1", "metrics.jsonl")).splitlines()
    hist = [__import__("json").loads(x) for x in lines]
    assert [m["epoch"] for m in hist] == [0, 1, 2]
    np.testing.assert_allclose([m["train_loss"] for m in hist[:2]], [m["train_loss"] for m in sptf.history])
    from sptf_ray.training.ray_train import read_workers

    assert [(w["rank"], w["from_epoch"]) for w in read_workers(storage.join(ray_runs["store"], "sptf-1"))] == [(0, 2)]
    assert "trained on: rank 0 cpu " in capsys.readouterr().out

    # bundle round trip through `sptf predict`
    out = str(tmp_path / "pred")
    assert main(["predict", "--bundle", sptf.bundle, "--sites", data["sites"], "--out", out]) == 0
    assert storage.verify_manifest(out)
    params = pd.read_csv(storage.join(out, "parameters.csv"))
    assert len(params) == 8 * 3  # every 365-day year of the 8 sites is a historical year
    space = parameter_space("vgm")
    names = list(space.names)
    vals = params[names].to_numpy()
    hi = np.tile(space.upper, (len(params), 1))
    hi[:, names.index("theta_s")] = params["theta_s_upper"].to_numpy()
    assert np.all(vals >= space.lower - 1e-9) and np.all(vals <= hi + 1e-9)
    metrics = pd.read_csv(storage.join(out, "metrics.csv"))
    assert len(metrics) == 8 * 2 and metrics["n_days"].gt(0).all()
    sim = pd.read_parquet(storage.join(out, "simulated.parquet"))
    assert len(sim) == 8 * 2 * 365
    _check_predict_on_awkward_sites(sptf.bundle, data["sites"], out, tmp_path, capsys)


def _check_predict_on_awkward_sites(bundle, sites, out, tmp_path, capsys):
    from sptf_ray import storage
    from sptf_ray.cli import main
    from sptf_ray.data.validate import SiteDataset, load_site_dataset, write_site_dataset

    # Parameters only, into the same directory: the earlier run's solver files do not stay behind.
    assert main(["predict", "--bundle", bundle, "--sites", sites, "--out", out, "--no-simulate"]) == 0
    assert not os.path.exists(os.path.join(out, "simulated.parquet"))
    assert not os.path.exists(os.path.join(out, "metrics.csv")) and storage.verify_manifest(out)
    # A site with one year of history is rejected by QC (DESIGN section 0: two consecutive
    # accepted years), and says so.
    ds = load_site_dataset(sites)
    one_year = ds.daily[(ds.daily["site_id"] == "S00") & (ds.daily["date"].dt.year == 2002)]
    write_site_dataset(SiteDataset(ds.static[ds.static["site_id"] == "S00"], one_year), str(tmp_path / "one"))
    assert main(["predict", "--bundle", bundle, "--sites", str(tmp_path / "one"), "--out",
                 str(tmp_path / "p1")]) == 1
    assert "consecutive accepted years" in json.loads((tmp_path / "p1" / "rejected.json").read_text())["S00"]
    # SWC in percent everywhere: nothing to predict is an error, and the year's unit hint is kept.
    write_site_dataset(SiteDataset(ds.static, ds.daily.assign(swc=ds.daily["swc"] * 100)), str(tmp_path / "pct"))
    assert main(["predict", "--bundle", bundle, "--sites", str(tmp_path / "pct"), "--out",
                 str(tmp_path / "p2")]) == 1
    assert "no site-year" in capsys.readouterr().err
    why = json.loads((tmp_path / "p2" / "rejected.json").read_text())
    assert sorted(why) == sorted(ds.static["site_id"]) and "percent" in why["S00"], why
    assert main(["predict", "--bundle", bundle, "--sites", sites, "--out", out, "--device", "gpu0"]) == 2
    if not torch.cuda.is_available():
        assert main(["predict", "--bundle", bundle, "--sites", sites, "--out", out, "--device", "cuda"]) == 2
        assert "no CUDA device" in capsys.readouterr().err
    # --out onto the site dataset itself would replace its manifest
    assert main(["predict", "--bundle", bundle, "--sites", sites, "--out", sites]) == 2
    assert load_site_dataset(sites).static.equals(ds.static)


def test_tune_sptf_one_trial_resumes_and_refuses_other_settings(ray_runs, data, capsys, monkeypatch):
    from sptf_ray.training.tune import apply_trial, tune_model

    assert apply_trial({"network": {"model": "vgm"}}, {"hidden_size": 4, "lr": 0.1}, "t", "/s") == {
        "network": {"model": "vgm", "hidden_size": 4}, "lr": 0.1, "name": "t", "storage_path": "/s"}
    cfg, metrics, grid = tune_model("sptf", {"data": data["sites"], "surrogate": ray_runs["surrogate"].bundle,
                                             "epochs": 1, "scaling": {"cpus_per_worker": 0.5}},
                                    ray_runs["store"], "tune-1", num_samples=1,
                                    space={"lr": ("loguniform", 1e-3, 1e-2), "hidden_size": ("choice", [4])})
    assert cfg["hidden_size"] == 4 and np.isfinite(metrics["val_loss"]) and len(grid) == 1
    best = json.loads(open(os.path.join(ray_runs["store"], "tune-1", "best.json")).read())
    assert best["config"] == cfg and best["metrics"]["val_loss"] == metrics["val_loss"] and best["trials"] == 1
    assert best["bundle"].startswith(os.path.join(ray_runs["store"], "tune-1", "trials", "trial-"))
    from sptf_ray import storage

    assert storage.verify_manifest(best["bundle"])  # the best trial's own SPTF bundle
    # the same search again resumes it (a finished one: nothing is trained again), its paths
    # taken as absolute (trials run in directories of their own) ...
    capsys.readouterr()
    monkeypatch.chdir(os.path.dirname(data["sites"]))
    again = tune_model("sptf", {"data": os.path.basename(data["sites"]), "surrogate": ray_runs["surrogate"].bundle,
                                "epochs": 1, "scaling": {"cpus_per_worker": 0.5}},
                       ray_runs["store"], "tune-1", num_samples=1,
                       space={"lr": ("loguniform", 1e-3, 1e-2), "hidden_size": ("choice", [4])})
    assert "[tune] resuming" in capsys.readouterr().out
    assert again[0] == cfg and again[1]["val_loss"] == metrics["val_loss"] and len(again[2]) == 1
    # ... and other settings under its name are refused
    with pytest.raises(ValueError, match=r"other settings \(num_samples differ\)"):
        tune_model("sptf", {"data": data["sites"], "surrogate": ray_runs["surrogate"].bundle, "epochs": 1,
                            "scaling": {"cpus_per_worker": 0.5}}, ray_runs["store"], "tune-1", num_samples=2,
                   space={"lr": ("loguniform", 1e-3, 1e-2), "hidden_size": ("choice", [4])})
    if not ray_runs["surrogate"].workers[0]["accelerator"]:  # a GPU-less machine: --use-gpu is refused up front
        with pytest.raises(ValueError, match=r"needs 1 GPU in all \(the cluster has 0\)"):
            tune_model("sptf", {"data": data["sites"], "surrogate": ray_runs["surrogate"].bundle, "epochs": 1,
                                "scaling": {"use_gpu": True}}, ray_runs["store"], "tune-gpu", num_samples=1)
    # a missing input is refused before any trial; a search space that fails every trial is named
    with pytest.raises(FileNotFoundError, match=r"no surrogate bundle at .*nope"):
        tune_model("sptf", {"data": data["sites"], "surrogate": os.path.join(ray_runs["store"], "nope"), "epochs": 1},
                   ray_runs["store"], "tune-missing", num_samples=1)
    assert not os.path.exists(os.path.join(ray_runs["store"], "tune-missing"))
    with pytest.raises(RuntimeError, match=r"every trial of .*tune-broken failed \(1\); the first: "
                                           r"ValueError: .*hidden_size must be >= 1"):
        tune_model("sptf", {"data": data["sites"], "surrogate": ray_runs["surrogate"].bundle, "epochs": 1,
                            "scaling": {"cpus_per_worker": 0.5}}, ray_runs["store"], "tune-broken", num_samples=1,
                   space={"lr": ("loguniform", 1e-3, 1e-2), "hidden_size": ("choice", [0])})
