"""`sptf train-surrogate`, `sptf train-sptf`, `sptf predict`, `sptf tune`."""
from __future__ import annotations

import argparse
import os
import sys

from sptf_ray.training.schedule import LR_SCHEDULES


def _common(p, default_name):
    p.add_argument("--config", help="YAML/JSON config (flags below override it)")
    p.add_argument("--out", help="storage path: run directories go under it (local path or URI)")
    p.add_argument("--name", help=f"run name (default {default_name}); the same name resumes a stopped run")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--lr-schedule", choices=LR_SCHEDULES,
                   help="cosine: the rate falls to lr x --lr-final-fraction by the last epoch")
    p.add_argument("--lr-final-fraction", type=float)
    p.add_argument("--hidden", type=int, help="LSTM hidden size")
    p.add_argument("--model", choices=("vgm", "fxw"))
    p.add_argument("--seed", type=int)
    p.add_argument("--num-workers", type=int)
    p.add_argument("--use-gpu", action="store_true", default=None)
    p.add_argument("--cpus-per-worker", type=float)
    p.add_argument("--max-failures", type=int)
    p.add_argument("--patience", type=int,
                   help="stop after this many epochs without a better validation score (default: run every epoch)")
    p.add_argument("--address", help="Ray address (default: $RAY_ADDRESS, else a new local instance)")


def add_parser(subparsers) -> None:
    fmt = argparse.ArgumentDefaultsHelpFormatter
    p = subparsers.add_parser("train-surrogate", help="fit the LSTM surrogate on simulation shards (Ray Train)",
                              formatter_class=fmt)
    p.add_argument("--data", help="directory of shard-*.parquet")
    p.add_argument("--seq-len", type=int, help="train on the first N days of each simulation")
    _common(p, "surrogate")
    p.set_defaults(func=run_train_surrogate)

    p = subparsers.add_parser("train-sptf", help="fit the SPTF through a frozen surrogate (Ray Train)",
                              formatter_class=fmt)
    p.add_argument("--data", help="site dataset directory")
    p.add_argument("--surrogate", help="surrogate bundle directory")
    _common(p, "sptf")
    p.set_defaults(func=run_train_sptf)

    p = subparsers.add_parser("predict", help="SPTF parameters (and solver SWC) for sites from their history",
                              formatter_class=fmt)
    p.add_argument("--bundle", required=True, help="SPTF bundle directory")
    p.add_argument("--sites", required=True, help="site dataset directory")
    p.add_argument("--out", required=True)
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:0, ...")
    p.add_argument("--no-simulate", action="store_true", help="parameters only, skip the solver")
    p.set_defaults(func=run_predict)

    p = subparsers.add_parser("tune", help="Ray Tune (HyperOpt + ASHA) over the surrogate or the SPTF",
                              formatter_class=fmt)
    p.add_argument("kind", choices=("surrogate", "sptf"))
    p.add_argument("--data", help="shards (surrogate) or site dataset (sptf)")
    p.add_argument("--surrogate", help="surrogate bundle (sptf)")
    p.add_argument("--seq-len", type=int)
    p.add_argument("--num-samples", type=int, default=8)
    p.add_argument("--max-concurrent", type=int, default=1)
    _common(p, "tune")
    p.set_defaults(func=run_tune)


def _overrides(args) -> dict:
    o: dict = {}
    for flag, key in (("out", "storage_path"), ("name", "name"), ("epochs", "epochs"), ("batch_size", "batch_size"),
                      ("lr", "lr"), ("lr_schedule", "lr_schedule"), ("lr_final_fraction", "lr_final_fraction"),
                      ("seed", "seed"), ("max_failures", "max_failures"), ("patience", "patience"), ("data", "data"),
                      ("surrogate", "surrogate"), ("seq_len", "seq_len")):
        v = getattr(args, flag, None)
        if v is not None:
            o[key] = v
    net = {k: v for k, v in (("hidden_size", args.hidden), ("model", args.model)) if v is not None}
    if net:
        o["network"] = net
    sc = {k: v for k, v in (("num_workers", args.num_workers), ("use_gpu", args.use_gpu),
                            ("cpus_per_worker", args.cpus_per_worker)) if v is not None}
    if sc:
        o["scaling"] = sc
    return o


def _merged(args) -> dict:
    from sptf_ray import storage
    from sptf_ray.config import parse_yaml

    base = parse_yaml(storage.read_text(args.config)) or {} if args.config else {}
    for k, v in _overrides(args).items():
        if isinstance(v, dict):
            base[k] = {**(base.get(k) or {}), **v}
        else:
            base[k] = v
    return base


def ensure_ray(address: str | None = None) -> None:
    from sptf_ray.jobs_common import connect_ray

    os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
    connect_ray(address, include_dashboard=True)  # Train V2 needs the dashboard (state API)


def _checked(config_class, args) -> dict:
    """The merged config, validated and its inputs found before Ray takes seconds to start."""
    from sptf_ray.config import load_config
    from sptf_ray.training.ray_train import check_inputs

    merged = _merged(args)
    check_inputs(load_config(config_class, merged))
    return merged


def run_train_surrogate(args) -> int:
    from sptf_ray.training.ray_train import SurrogateTrainConfig, train_surrogate

    config = _checked(SurrogateTrainConfig, args)
    ensure_ray(args.address)
    out = train_surrogate(config)
    print(f"surrogate bundle: {out.bundle} (best val_mse {out.best_metrics.get('val_mse'):.3g})")
    print(trained_on_line(out.workers))
    return 0


def run_train_sptf(args) -> int:
    from sptf_ray.training.ray_train import SPTFTrainConfig, train_sptf

    config = _checked(SPTFTrainConfig, args)
    ensure_ray(args.address)
    out = train_sptf(config)
    print(f"SPTF bundle: {out.bundle} (best val_loss {out.best_metrics.get('val_loss'):.3g})")
    print(trained_on_line(out.workers))
    return 0


def trained_on_line(workers: list[dict]) -> str:
    """One line of where the ranks trained, e.g. 'trained on: rank 0 cuda:0 NVIDIA H100 (node-a)'."""
    ranks = [f"rank {w['rank']} {w['device']} {w['accelerator'] or w['cpu']} ({w['node']})" for w in workers]
    return "trained on: " + ("; ".join(ranks) or "no rank record (run directory made before they were written)")


def run_predict(args) -> int:
    from sptf_ray.training.predict import predict

    table = predict(args.bundle, args.sites, args.out, device=args.device, run_solver=not args.no_simulate)
    print(f"parameters for {len(table)} site-year(s) written to {args.out}")
    if len(table) == 0:
        print(f"sptf predict: error: no site-year of {args.sites} could be predicted; "
              f"why each site was rejected: {args.out}/rejected.json", file=sys.stderr)
        return 1
    return 0


def run_tune(args) -> int:
    import json

    from sptf_ray.training.tune import check_base, tune_model

    base = _merged(args)
    storage_path = base.pop("storage_path", None)
    if not storage_path:
        raise ValueError("--out (or storage_path in --config) is required")
    name = base.pop("name", None) or f"tune-{args.kind}"
    check_base(args.kind, base, storage_path)
    ensure_ray(args.address)
    config, metrics, _ = tune_model(args.kind, base, storage_path, name, args.num_samples, args.max_concurrent)
    print("best trial:", json.dumps(config, default=str), "metrics:", json.dumps(metrics, default=str))
    print(f"best trial's bundle and all of the above: {storage_path}/{name}/best.json")
    return 0
