"""`sptf <stage>`: one entry point for every stage.

Each stage module exposes `add_parser(subparsers)`, which registers its subcommand
and sets `func` (a callable taking the parsed namespace and returning an exit code).
"""
from __future__ import annotations

import argparse
import importlib
import sys

from sptf_ray.errors import StageFailed

# Stage modules, in pipeline order. A module that fails to import because an optional
# dependency is missing only disables its own subcommand.
STAGE_MODULES = (
    "sptf_ray.physics.cli",
    "sptf_ray.data.network_cli",
    "sptf_ray.data.cli",
    "sptf_ray.dataset.cli",
    "sptf_ray.training.cli",
    "sptf_ray.inverse.cli",
    "sptf_ray.pipeline_cli",
)


def _version() -> str:
    """The installed sptf-ray's version (what a bug report or a results table should name)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("sptf-ray")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sptf", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    subparsers = parser.add_subparsers(dest="command", metavar="<stage>")
    subparsers.required = True
    for name in STAGE_MODULES:
        importlib.import_module(name).add_parser(subparsers)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, OSError) as exc:  # OSError: a path that is missing, a file, or not writable
        print(f"sptf {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except StageFailed as exc:
        print(f"sptf {args.command}: failed: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        # Every file is written under a temporary name and renamed when complete: nothing is half-written.
        print(f"\nsptf {args.command}: interrupted; finished work is kept, and the same command resumes "
              "where a stage supports it", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
