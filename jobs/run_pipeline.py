"""`ray job submit -- python jobs/run_pipeline.py CONFIG_URI --out RUN_URI`: the whole pipeline as a Ray job.

Thin: the same function as `sptf run`. Inside a Ray job it joins the job's cluster (RAY_ADDRESS);
elsewhere it starts a local Ray. Re-submitting with the same --out resumes.
"""
from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", help="PipelineConfig YAML/JSON (local path or URI)")
    parser.add_argument("--out", required=True, help="run directory (local path or URI)")
    parser.add_argument("--stop-after", help="run the stages up to this one only")
    args = parser.parse_args(argv)

    from sptf_ray.pipeline import run_pipeline

    actions = run_pipeline(args.config, args.out, stop_after=args.stop_after)
    print("run_pipeline: " + ", ".join(f"{k}: {v}" for k, v in actions.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
