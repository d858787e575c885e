"""`ray job submit -- python jobs/invert.py CONFIG_URI`: the invert stage as a Ray job.

Thin: reads an InvertConfig (YAML/JSON at any storage URI) and calls the same function as
`sptf invert`. With Ray enabled it joins the cluster the job runs in (RAY_ADDRESS), else starts a local Ray.
"""
from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", help="InvertConfig YAML/JSON (local path or URI)")
    parser.add_argument("--out", help="override the config's out")
    args = parser.parse_args(argv)

    from sptf_ray.config import load_config, parse_yaml
    from sptf_ray import storage
    from sptf_ray.inverse.job import InvertConfig, run_inversion

    data = parse_yaml(storage.read_text(args.config)) or {}
    if args.out:
        data["out"] = args.out
    config = load_config(InvertConfig, data)
    table = run_inversion(config)
    print(f"inverted {table['site_id'].nunique()} site(s) -> {config.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
