"""`sptf invert DATA --out DIR`: SCE-UA inversion of a site dataset's sites (resumable)."""
from __future__ import annotations

import argparse


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "invert", help="SCE-UA inversion of each site (eq. 17), over Ray actors; resumable",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Calibrates each site on its historical year and scores the target year (and, with "
                    "--same-year, also calibrates on the target year). Writes DIR/sites/*.parquet per site, "
                    "DIR/inversion.parquet and DIR/config.yaml. The data are read through QC as training "
                    "reads them (short SWC gaps interpolated; sites and years QC rejects left out, named "
                    "in DIR/manifest.json). Re-running skips finished sites.",
    )
    p.add_argument("data", nargs="?", help="site dataset directory (sites.parquet + daily.parquet)")
    p.add_argument("--out", help="results directory (local path or URI)")
    p.add_argument("--config", help="YAML/JSON InvertConfig; the flags below override it")
    p.add_argument("--models", help="comma-separated: vgm,fxw")
    p.add_argument("--same-year", action="store_true", help="also run same-year inversion (calibrate on target)")
    p.add_argument("--split", choices=("train", "val", "test"), help="only the sites of this split")
    p.add_argument("--sites", help="comma-separated site ids, or @FILE with one id per line")
    p.add_argument("--max-sites", type=int, help="only the first N selected sites")
    p.add_argument("--samples", choices=("all", "last"), help="year pairs per site")
    p.add_argument("--max-evals", type=int, help="SCE-UA evaluation budget per inversion")
    p.add_argument("--n-complexes", type=int, help="SCE-UA complexes")
    p.add_argument("--seed", type=int)
    p.add_argument("--forward", help="'solver' or a surrogate bundle URI")
    p.add_argument("--sites-per-batch", type=int,
                   help="sites inverted in lockstep, sharing each forward call (results do not change; a "
                        "surrogate forward runs much faster with more)")
    p.add_argument("--no-ray", action="store_true", help="run in this process, no Ray")
    p.add_argument("--num-actors", type=int, help="Ray actors (0 = fill the cluster)")
    p.add_argument("--cpus-per-actor", type=float)
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.set_defaults(func=run)


def config_from_args(args) -> dict:
    from sptf_ray import storage
    from sptf_ray.config import parse_yaml

    cfg: dict = {}
    if args.config:
        cfg = parse_yaml(storage.read_text(args.config)) or {}
    if args.data:
        cfg["data"] = args.data
    if args.out:
        cfg["out"] = args.out
    if args.models:
        cfg["models"] = [m.strip() for m in args.models.split(",") if m.strip()]
    if args.same_year:
        cfg["modes"] = ["historical", "same_year"]
    for name in ("split", "max_sites", "samples", "forward", "sites_per_batch"):
        if getattr(args, name) is not None:
            cfg[name] = getattr(args, name)
    if args.sites:
        if args.sites.startswith("@"):
            text = storage.read_text(args.sites[1:])
            cfg["sites"] = [s.strip() for s in text.splitlines() if s.strip()]
        else:
            cfg["sites"] = [s.strip() for s in args.sites.split(",") if s.strip()]
    sce = dict(cfg.get("sceua") or {})
    for flag, key in (("max_evals", "max_evals"), ("n_complexes", "n_complexes"), ("seed", "seed")):
        if getattr(args, flag) is not None:
            sce[key] = getattr(args, flag)
    if sce:
        cfg["sceua"] = sce
    ray_opts = dict(cfg.get("ray") or {})
    if args.no_ray:
        ray_opts["enabled"] = False
    if args.num_actors is not None:
        ray_opts["num_actors"] = args.num_actors
    if args.cpus_per_actor is not None:
        ray_opts["cpus_per_actor"] = args.cpus_per_actor
    if ray_opts:
        cfg["ray"] = ray_opts
    if args.quiet:
        cfg["progress"] = False
    if "data" not in cfg or "out" not in cfg:
        raise ValueError("give the site dataset directory and --out (or both in --config)")
    return cfg


def run(args) -> int:
    from sptf_ray.inverse.job import InvertConfig, run_inversion
    from sptf_ray.config import load_config

    config = load_config(InvertConfig, config_from_args(args))
    table = run_inversion(config)
    summary = table.groupby(["model", "mode"])[["nse", "rmse", "calib_rmse", "evaluations", "seconds"]].median()
    print(f"inverted {table['site_id'].nunique()} site(s), {len(table)} row(s) -> {config.out}")
    print("medians:\n" + summary.to_string())
    return 0
