"""The surrogate's acceptance test (paper 2.2.2: validation MSE < 1e-4) on CPU, issue 6.

Trains a surrogate with configs/surrogate_target.yaml (or scores an existing bundle with
--bundle) on a surrogate set, then reports:

- validation MSE of the best-on-validation checkpoint (the paper's criterion) and the epoch
  at which it first fell below 1e-4;
- MSE on the set's held-out test simulations (never read in training), next to the variance
  of SWC there (the MSE of always predicting the mean);
- with --network (a virtual network, e.g. the benchmark run's `network/`): RMSE against the
  numba solver on the test sites' target-year forcing with their true parameters.

Exit 1 when validation MSE is not below 1e-4.

    sptf run configs/benchmark.yaml --out RUN --stop-after dataset
    python benchmarks/surrogate.py --data RUN/dataset --network RUN/network [--out DIR] [--model vgm]

Measured here (2 cores, 2026-12-05, one core each while another training shared the machine):
benchmark surrogate set (VGM: 1,823 training / 256 validation simulations of 365 days), 128
hidden, 150 epochs: 1,276 s of epochs (8.5 s each), best validation MSE 5.6e-5 (epoch 147; first
below 1e-4 at epoch 102), held-out test 9.8e-5, RMSE vs the solver on the test sites' forcing
0.0062. FXW-M3 (1,849 training): 6.9e-5 (first below 1e-4 at epoch 113), test 6.8e-5, RMSE
0.0061. VGM with cosine decay to 3 %: 7.0e-5 (first below 1e-4 at epoch 89), test 1.1e-4. 64
hidden over 60 epochs: 3.1e-4 (RMSE 0.013); 128 over 60: 1.6e-4. Epochs are counted from 1, as
in the training progress lines (metrics.jsonl's "epoch" is the 0-based index).
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from sptf_ray.provenance import host_line  # noqa: E402
from training import held_out_samples, heldout_mse, surrogate_vs_solver, true_parameters_of  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET_CONFIG = os.path.join(REPO, "configs", "surrogate_target.yaml")
PAPER_VAL_MSE = 1e-4


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", required=True, help="surrogate set (directory of shard-*.parquet)")
    p.add_argument("--network", help="virtual network directory: adds RMSE vs the solver on its test sites")
    p.add_argument("--bundle", help="score this surrogate bundle instead of training one")
    p.add_argument("--config", default=TARGET_CONFIG, help="training config (default %(default)s)")
    p.add_argument("--model", choices=("vgm", "fxw"), help="override the config's model")
    p.add_argument("--epochs", type=int, help="override the config's epochs")
    p.add_argument("--out", help="storage path of the training run (default: a temporary directory)")
    p.add_argument("--split-seed", type=int, default=0, help="the network's site split seed (default 0)")
    return p.parse_args(argv)


def train(args) -> tuple[str, float]:
    from sptf_ray import storage
    from sptf_ray.config import parse_yaml
    from sptf_ray.training.cli import ensure_ray
    from sptf_ray.training.ray_train import train_surrogate

    cfg = parse_yaml(storage.read_text(args.config)) or {}
    cfg.update(data=args.data, storage_path=args.out or tempfile.mkdtemp(prefix="sptf-bench-sur-"))
    if args.model:
        cfg["network"] = {**cfg.get("network", {}), "model": args.model}
    if args.epochs:
        cfg["epochs"] = args.epochs
    ensure_ray()
    t0 = time.perf_counter()
    outcome = train_surrogate(cfg)
    return outcome.bundle, time.perf_counter() - t0


def run_history(bundle_uri: str) -> list[dict]:
    """The per-epoch metrics of the run the bundle came from (its parent directory), if there."""
    from sptf_ray.training.ray_train import read_metrics

    return read_metrics(os.path.dirname(bundle_uri.rstrip("/")))


def first_epoch_below(history, threshold: float):
    """The epoch, counted from 1 as the progress lines do, whose validation MSE first fell below."""
    return next((int(m["epoch"]) + 1 for m in history if m.get("val_mse", math.inf) < threshold), None)


def main(argv=None) -> int:
    args = parse_args(argv)
    print(host_line(), flush=True)
    from sptf_ray.training.bundle import load_bundle

    bundle_uri, train_s = (args.bundle, math.nan) if args.bundle else train(args)
    bundle = load_bundle(bundle_uri)
    model = bundle.network_config.model
    val_mse = float(bundle.metrics.get("val_mse", math.nan))
    history = run_history(bundle_uri)
    held = heldout_mse(bundle, args.data)
    print(f"\nsurrogate {model}, hidden {bundle.network_config.hidden_size}: {bundle_uri}")
    if not math.isnan(train_s):
        print(f"training wall time {train_s:.0f} s")
    below = first_epoch_below(history, PAPER_VAL_MSE)
    print(f"validation MSE (best checkpoint) {val_mse:.3g}; first below {PAPER_VAL_MSE:g} at epoch "
          f"{below if below is not None else '-'} of {len(history)}")
    print(f"held-out test simulations: MSE {held['mse']:.3g} (n {held['n']}; SWC variance {held['swc_var']:.3g})")
    if args.network:
        arrays, split, truth = held_out_samples(args.network, args.split_seed)
        vs = surrogate_vs_solver(bundle_uri, model, true_parameters_of(truth, arrays, model), arrays.target_forcing)
        print(f"vs the numba solver on the {split} sites' target years ({len(arrays)} site-years, true parameters, "
              f"{vs['clipped']} clipped to the training range): RMSE {vs['rmse']:.4f}")
    met = val_mse < PAPER_VAL_MSE
    print(f"target: validation MSE < {PAPER_VAL_MSE:g}: {val_mse:.3g} {'OK' if met else 'MISSED'}")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
