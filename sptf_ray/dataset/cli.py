"""`sptf build-dataset`: the surrogate's training set (see sptf_ray.dataset.build)."""
from __future__ import annotations

import argparse
import time


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "build-dataset",
        help="simulate Sobol-sampled parameters under many climates into Parquet shards",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Write shard-NNNNN.parquet (+ .json sidecars), config.yaml and manifest.json under --out. "
                    "Re-running skips valid shards and rebuilds broken ones. Flags override --config.",
    )
    add_arguments(p)
    p.set_defaults(func=run)


def add_arguments(p) -> None:
    p.add_argument("--out", required=True, help="output directory (local path or URI, e.g. s3://bucket/ds)")
    p.add_argument("--config", help="DatasetConfig YAML/JSON (defaults otherwise)")
    p.add_argument("--shards", type=int, help="number of shards (default 4)")
    p.add_argument("--per-shard", type=int, help="simulations per shard (default 256)")
    p.add_argument("--model", choices=("vgm", "fxw", "both"), help="hydraulic model(s) (default both)")
    p.add_argument("--days", type=int, help="days per sequence (default 365; paper 1095)")
    p.add_argument("--seed", type=int, help="random seed (default 0)")
    p.add_argument("--sites", help="site dataset dir whose daily.parquet gives real forcings")
    p.add_argument("--site-fraction", type=float, help="share of rows with site forcings (default 0.5)")
    p.add_argument("--cpus-per-task", type=float, help="CPUs per Ray task (default 1)")
    p.add_argument("--address", help="Ray address ('auto' for a running cluster, 'local' for a new "
                                     "local instance); without it the build runs in this process")
    p.add_argument("--local", action="store_true", help="run in this process even if --address is given")
    p.add_argument("--overwrite", action="store_true", help="replace a dataset of different content at --out")
    p.add_argument("--quiet", action="store_true", help="no progress lines")


def config_from_args(args):
    from sptf_ray.config import config_to_dict, load_config
    from sptf_ray.dataset.build import DatasetConfig

    base = load_config(DatasetConfig, args.config) if args.config else DatasetConfig()
    overrides = {"shards": args.shards, "per_shard": args.per_shard, "model": args.model, "days": args.days,
                 "seed": args.seed, "sites": args.sites, "site_fraction": args.site_fraction,
                 "cpus_per_task": args.cpus_per_task}
    values = {**config_to_dict(base), **{k: v for k, v in overrides.items() if v is not None}}
    return load_config(DatasetConfig, values)


def run(args) -> int:
    from sptf_ray.dataset.build import build_dataset

    config = config_from_args(args)
    executor = "local"
    if args.address and not args.local:
        connect_ray(args.address)
        executor = "ray"
    started = time.time()
    result = build_dataset(config, args.out, executor=executor, overwrite=args.overwrite, progress=not args.quiet)
    counts = result.manifest["extra"]["counts"]
    actions = {a: result.actions.count(a) for a in ("built", "rebuilt", "skipped")}
    print(f"build-dataset: {counts['rows']} rows in {counts['shards']} shards at {args.out} "
          f"({actions['built']} built, {actions['rebuilt']} rebuilt, {actions['skipped']} skipped; "
          f"{counts['failed']} failed simulation(s) listed in the manifest) in {time.time() - started:.1f} s")
    return 0


def connect_ray(address: str) -> None:
    """Join `address` ('auto', 'ray://...', host:port) or start a new local instance ('local')."""
    try:
        import ray
    except ImportError as exc:  # pragma: no cover - Ray is a dependency
        raise ValueError(f"--address {address} needs Ray installed ({exc}); use --local") from exc
    if not ray.is_initialized():
        ray.init(address=address, log_to_driver=True)
