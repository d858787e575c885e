"""`ray job submit --working-dir . -- python jobs/build_network.py --out URI [--config URI] [...]`.

Builds the virtual network (sptf_ray.data.network.build_network) with one Ray task per batch
of sites, in the cluster the job runs in: RAY_ADDRESS (set by `ray job submit`), else
`--address`, else 'auto' (a cluster started on this host with `ray start`). Resumable: a
rerun with the same config skips the batches already written under --out.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", nargs="?", help="NetworkConfig YAML/JSON (local path or URI)")
    parser.add_argument("--config", dest="config_flag", help="same as the positional CONFIG")
    parser.add_argument("--out", required=True, help="output directory (local path or URI)")
    parser.add_argument("--sites", type=int, help="number of sites")
    parser.add_argument("--years", type=int, help="years of daily data (>= 3)")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--sites-per-task", type=int, help="sites per batch / Ray task")
    parser.add_argument("--address", help="Ray address when RAY_ADDRESS is unset (default 'auto': "
                                          "the cluster running on this host; 'local': a new local Ray)")
    args = parser.parse_args(argv)

    from sptf_ray.data.network import NetworkConfig, build_network
    from sptf_ray.jobs_common import connect_ray, load_job_config, ray_address

    config = load_job_config(NetworkConfig, args.config or args.config_flag, {
        "n_sites": args.sites, "n_years": args.years, "seed": args.seed,
        "sites_per_task": args.sites_per_task})
    address = ray_address(args.address) or "auto"
    connect_ray(None if address == "local" else address)
    started = time.time()
    manifest = build_network(config, args.out, executor="ray", progress=lambda m: print(m, flush=True))
    print(f"build-network: {manifest['extra']['n_sites']} sites -> {args.out} "
          f"in {time.time() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
