"""`sptf run CONFIG --out DIR` (every stage, resumable) and `sptf evaluate RUN_DIR` (the report)."""
from __future__ import annotations

import argparse


def add_parser(subparsers) -> None:
    fmt = argparse.ArgumentDefaultsHelpFormatter
    from sptf_ray.evaluate.sensitivity import DEFAULT_LENGTHS
    from sptf_ray.pipeline import STAGES

    p = subparsers.add_parser("run", help="every stage (network -> dataset -> surrogate -> SPTF -> predict -> "
                              "inversion -> evaluate) in one resumable run directory", formatter_class=fmt)
    p.add_argument("config", help="pipeline config (YAML/JSON, local path or URI), e.g. configs/quickstart.yaml")
    p.add_argument("--out", required=True, help="run directory (local path or URI); re-run to resume")
    p.add_argument("--stop-after", choices=STAGES, help="run the stages up to this one only")
    p.add_argument("--replace-changed", action="store_true",
                   help="delete and redo a stage whose output was made with other settings (and the stages after "
                        "it); without it such a stage is an error")
    p.set_defaults(func=_run)

    p = subparsers.add_parser("evaluate", help="metrics, figures and report.md/html of a run directory",
                              formatter_class=fmt)
    p.add_argument("run_dir", help="a run directory of `sptf run` (or any dir with the same layout)")
    p.add_argument("--data", help="site dataset dir (default: RUN_DIR/network)")
    p.add_argument("--out", help="where the report goes (default: RUN_DIR)")
    p.add_argument("--split-seed", type=int, default=0, help="used only when the data has no splits.parquet")
    p.add_argument("--no-rosetta", action="store_true", help="skip the Rosetta-3 baseline")
    p.add_argument("--importance-repeats", type=int, default=10,
                   help="seeds of permutation feature importance (paper: 100); 0 skips it")
    p.add_argument("--input-lengths", default=",".join(map(str, DEFAULT_LENGTHS)),
                   help="historical-input lengths (days) for the sensitivity analysis; '' skips it")
    p.add_argument("--length-windows", type=int, default=10, help="random windows per input length")
    p.add_argument("--device", default="cpu", help="torch device of the sensitivity analyses (cpu, cuda)")
    p.set_defaults(func=_evaluate)


def _run(args) -> int:
    from sptf_ray.pipeline import run_pipeline

    actions = run_pipeline(args.config, args.out, stop_after=args.stop_after, replace_changed=args.replace_changed)
    print("[run] " + ", ".join(f"{k}: {v}" for k, v in actions.items()), flush=True)
    return 0


def _evaluate(args) -> int:
    from sptf_ray.evaluate.report import evaluate_run

    lengths = [int(x) for x in args.input_lengths.split(",") if x.strip()]
    evaluate_run({"run_dir": args.run_dir, "data": args.data or "", "out": args.out or "",
                  "split_seed": args.split_seed, "rosetta": not args.no_rosetta,
                  "importance_repeats": args.importance_repeats, "input_lengths": lengths,
                  "length_windows": args.length_windows, "device": args.device})
    return 0
