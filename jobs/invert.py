"""`ray job submit -- python jobs/invert.py CONFIG_URI [FLAGS]`: the invert stage as a Ray job.

Thin: `sptf invert --config CONFIG_URI [FLAGS]` itself (an InvertConfig, YAML/JSON at any
storage URI; any `sptf invert` flag overrides it, `--out` say). With Ray enabled it joins the
cluster the job runs in (RAY_ADDRESS), else starts a local Ray.
"""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main(argv=None) -> int:
    from sptf_ray.cli import main as sptf

    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0].startswith("-"):
        return sptf(["invert", *argv])  # --help, or --config given as a flag
    return sptf(["invert", "--config", argv[0], *argv[1:]])


if __name__ == "__main__":
    sys.exit(main())
