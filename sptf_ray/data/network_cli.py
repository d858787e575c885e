"""`sptf build-network`: build the virtual network (see sptf_ray.data.network)."""
from __future__ import annotations

import time


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "build-network",
        help="simulate a virtual site network with known true hydraulic parameters",
        description="Write sites.parquet, daily.parquet, truth.parquet, a report and a manifest "
                    "under --out. Flags override the values of --config.",
    )
    p.add_argument("--out", required=True, help="output directory (local path or URI)")
    p.add_argument("--config", help="NetworkConfig YAML/JSON (defaults otherwise)")
    p.add_argument("--sites", type=int, help="number of sites (default 1200)")
    p.add_argument("--years", type=int, help="years of daily data, >= 3 (default 3)")
    p.add_argument("--seed", type=int, help="random seed (default 0)")
    p.add_argument("--sites-per-task", type=int, help="sites per batch / Ray task (default 25)")
    p.add_argument("--address", help="Ray cluster address ('auto' for a running one); "
                                     "without it the build runs in this process")
    p.add_argument("--executor", choices=("auto", "ray", "local"), default="auto",
                   help="ray: Ray tasks; local: this process; auto: Ray if --address is given")
    p.set_defaults(func=run)


def run(args) -> int:
    from sptf_ray.config import config_to_dict, load_config
    from sptf_ray.data.network import NetworkConfig, build_network

    base = load_config(NetworkConfig, args.config) if args.config else NetworkConfig()
    overrides = {"n_sites": args.sites, "n_years": args.years, "seed": args.seed,
                 "sites_per_task": args.sites_per_task}
    values = {**config_to_dict(base), **{k: v for k, v in overrides.items() if v is not None}}
    config = load_config(NetworkConfig, values)
    started = time.time()
    build_network(config, args.out, address=args.address, executor=args.executor, progress=lambda m: print(m, flush=True))
    print(f"build-network: done in {time.time() - started:.1f} s")
    return 0

