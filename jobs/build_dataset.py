"""Ray job entrypoint for `build-dataset`.

    ray job submit --working-dir . -- python jobs/build_dataset.py --config configs/quickstart.yaml \
        --out s3://bucket/datasets/quickstart

Takes the same flags as `sptf build-dataset` (a config URI and/or overrides); joins the cluster
at $RAY_ADDRESS or 'auto' and runs the same `build_dataset` as the CLI.
"""
from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main(argv=None) -> int:
    from sptf_ray.dataset import cli

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cli.add_arguments(parser)
    args = parser.parse_args(argv)
    if not args.address:
        args.address = os.environ.get("RAY_ADDRESS") or "auto"
    return cli.run(args)


if __name__ == "__main__":
    sys.exit(main())
