"""`ray job submit -- python jobs/run_pipeline.py CONFIG_URI --out RUN_URI`: the whole pipeline as a Ray job.

Thin: `sptf run` itself, same flags (`--stop-after STAGE`, `--replace-changed`) and exit codes.
Inside a Ray job it joins the job's cluster (RAY_ADDRESS); elsewhere it starts a local Ray.
Re-submitting with the same --out resumes.
"""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main(argv=None) -> int:
    from sptf_ray.cli import main as sptf

    return sptf(["run", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
