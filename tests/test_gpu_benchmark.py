"""benchmarks/gpu.py and benchmarks/offline_kit.py: checked on CPU, so the GPU check does not rot."""
from __future__ import annotations

import json
import math
import os
import sys
from types import SimpleNamespace

import pytest
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks"))

import gpu  # noqa: E402
import offline_kit  # noqa: E402
from training_helpers import write_shards, write_site_dataset  # noqa: E402


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("gpu-run")
    write_shards(str(root / "dataset"), n_sims=48, days=60)
    write_site_dataset(str(root / "network"), n_sites=8)
    return str(root)


def _results(cuda_epoch_s, cuda_mse):
    return {"plain surrogate": {"cpu": {"epoch_s": 4.0, "val_mse": 1e-3},
                                "cuda": {"epoch_s": cuda_epoch_s, "val_mse": cuda_mse}},
            "surrogate forward": {"cpu": {"sims_per_s": 100.0}, "cuda": {"sims_per_s": 2500.0}}}


def test_compare_gives_speed_ups_and_flags_a_metric_off_by_more_than_the_tolerance():
    rows = {r["step"]: r for r in gpu.compare(_results(0.5, 1.05e-3), tolerance=0.1)}
    assert rows["plain surrogate"]["speedup"] == pytest.approx(8.0)
    assert rows["plain surrogate"]["relative_difference"] == pytest.approx(0.05)
    assert rows["plain surrogate"]["ok"]
    assert rows["surrogate forward"]["speedup"] == pytest.approx(25.0)
    assert math.isnan(rows["surrogate forward"]["relative_difference"]) and rows["surrogate forward"]["ok"]
    off = {r["step"]: r for r in gpu.compare(_results(0.5, 1.3e-3), tolerance=0.1)}
    assert not off["plain surrogate"]["ok"]
    assert "(!)" in gpu.markdown(_results(0.5, 1.3e-3), list(off.values()), "header")



def test_a_use_gpu_row_whose_ranks_trained_on_cpu_fails_whatever_its_metric():
    results = {"Ray Train SPTF": {"cpu": {"epoch_s": 1.0, "val_loss": 0.5, "worker_devices": ["cpu"], "ran_on": ["x"]},
                                  "cuda": {"epoch_s": 1.0, "val_loss": 0.5, "worker_devices": ["cpu"],
                                           "ran_on": ["x"]}}}
    (row,) = gpu.compare(results, tolerance=0.1)
    assert row["relative_difference"] == 0 and not row["on_device"] and not row["ok"]
    assert "ran off the device" in gpu.markdown(results, [row], "header")
    results["Ray Train SPTF"]["cuda"].update(worker_devices=["cuda:0"], ran_on=["NVIDIA H100"])
    (row,) = gpu.compare(results, tolerance=0.1)
    assert row["ok"] and "| cuda:0 NVIDIA H100 |" in gpu.markdown(results, [row], "header")


def test_the_plain_loop_is_deterministic_so_devices_compare(run_dir):
    arrays = gpu.surrogate_arrays(os.path.join(run_dir, "dataset"), "vgm")
    args = SimpleNamespace(model="vgm", hidden=8, epochs=2, batch_size=16, lr=3e-3)
    first, again = gpu.plain_surrogate(arrays, "cpu", args), gpu.plain_surrogate(arrays, "cpu", args)
    assert first["val_mse"] == again["val_mse"] and first["train_loss"] == again["train_loss"]
    assert 0 < first["val_mse"] < 1


def test_the_frozen_backward_step_gives_the_sptf_gradients_and_both_paths_agree(run_dir):
    arrays = gpu.surrogate_arrays(os.path.join(run_dir, "dataset"), "vgm")
    r = gpu.frozen_backward(arrays, "cpu", SimpleNamespace(model="vgm", hidden=8), batch=16, repeats=1)
    assert r["sims_per_s"] > 0 and r["cudnn_sims_per_s"] > 0 and r["batch"] == 16
    # on cpu both paths are the same kernels: any difference is the step comparing the wrong thing
    assert r["grad_max"] > 0 and r["grad_difference"] == 0.0
    text = gpu.markdown({"frozen surrogate backward": {"cpu": r}}, [], "header")
    assert "Frozen surrogate backward [cpu]" in text


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_asking_for_cuda_without_one_is_a_clear_error(run_dir, tmp_path):
    with pytest.raises(SystemExit, match="no CUDA device"):
        gpu.main(["--run", run_dir, "--out", str(tmp_path), "--devices", "cpu,cuda"])


def test_a_run_directory_without_its_surrogate_set_is_refused(tmp_path):
    with pytest.raises(SystemExit, match="--stop-after dataset"):
        gpu.main(["--run", str(tmp_path), "--out", str(tmp_path / "out"), "--devices", "cpu"])


def test_the_whole_check_runs_on_cpu_through_ray_train(run_dir, tmp_path, ray_session):
    out = tmp_path / "out"
    rc = gpu.main(["--run", run_dir, "--out", str(out), "--devices", "cpu", "--epochs", "2", "--sptf-epochs", "2",
                   "--hidden", "8", "--batch-size", "16"])
    assert rc == 0
    results = json.loads((out / "gpu.json").read_text())["results"]
    assert set(results) == {"plain surrogate", "surrogate forward", "frozen surrogate backward", "Ray Train surrogate",
                            "Ray Train SPTF"}
    assert 0 < results["Ray Train surrogate"]["cpu"]["val_mse"] < 1
    assert results["Ray Train SPTF"]["cpu"]["epoch_s"] > 0
    assert results["Ray Train SPTF"]["cpu"]["worker_devices"] == ["cpu"]
    assert "| Ray Train SPTF | cpu |" in (out / "gpu.md").read_text()


def test_the_kit_leaves_out_what_the_target_has(tmp_path):
    have = tmp_path / "have.txt"
    have.write_text("# a comment\nnumpy==2.5.2\nPyYAML\ntyping_extensions>=4\n")
    assert offline_kit.read_have(str(have)) == {"numpy", "pyyaml", "typing-extensions"}
    assert offline_kit.wheel_name("/w/opentelemetry_sdk-1.45.2-py3-none-any.whl") == "opentelemetry-sdk"
    assert offline_kit.wheel_name("ray-2.60.0-cp312-cp312-manylinux2014_x86_64.whl") == "ray"
