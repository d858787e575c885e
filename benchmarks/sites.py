"""Site data at network scale: QC (validate_sites), the SPTF's arrays and, with --bundle, predict.

Every stage that reads site data (SPTF training, predict, inversion, evaluate) runs QC on it, so
its cost is paid several times per `sptf run`. QC finds the sites it would pass unchanged on the
whole table at once and does the per-site calendar work only for the others; this benchmark
times both paths on the same virtual network (the per-site path forced for every site), checks
that their outputs are identical, and times a network in which --messy of the sites miss a day
(those take the per-site path). Then `build_sptf_arrays` on every sample and, when --bundle is
given, `predict` end to end (SPTF + solver on every target year).

Target (exit 1 when missed): QC on the clean network >= 5x faster than the per-site path, with
identical outputs.

    python benchmarks/sites.py [--network DIR | --sites 1000 --years 4] [--bundle BUNDLE]

Measured here, 2 cores, 2026-12-07, on a 3,000-site x 4-year virtual network (4.38 M days): QC
6.2 s whole-table path against 40.3 s per-site (6.5x, identical outputs), 9.7 s with 300 sites
missing a day; build_sptf_arrays 9,000 samples in 1.4 s; predict with the quickstart's VGM SPTF
(12,000 site-years, 9,000 target years simulated) 276 s. README: "Site data at network scale".
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
TARGET_SPEEDUP = 5.0


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--network", help="an existing site dataset dir (e.g. a virtual network); else one is built")
    p.add_argument("--sites", type=int, default=1000, help="sites of the network built when --network is absent")
    p.add_argument("--years", type=int, default=4, help="years of the network built when --network is absent")
    p.add_argument("--messy", type=float, default=0.1, help="fraction of sites given a missing day")
    p.add_argument("--bundle", help="an SPTF bundle: also time `predict` on the network")
    p.add_argument("--out", help="where a built network goes (default: a temporary dir)")
    return p.parse_args(argv)


def _network(args, tmp: str) -> str:
    if args.network:
        return args.network
    from sptf_ray.data.network import NetworkConfig, build_network

    out = args.out or str(Path(tmp) / "network")
    t0 = time.perf_counter()
    build_network(NetworkConfig(n_sites=args.sites, n_years=args.years, seed=0), out, executor="local",
                  progress=lambda m: None)
    print(f"built a {args.sites}-site x {args.years}-year network in {time.perf_counter() - t0:.0f} s -> {out}")
    return out


def _timed(fn, *a):
    t0 = time.perf_counter()
    result = fn(*a)
    return result, time.perf_counter() - t0


def _with_missing_days(daily: pd.DataFrame, fraction: float, seed: int = 0) -> pd.DataFrame:
    """`daily` with one day dropped in the middle of a `fraction` of its sites."""
    ids = daily["site_id"].astype(str).unique()
    rng = np.random.default_rng(seed)
    picked = set(rng.choice(ids, size=int(round(fraction * len(ids))), replace=False))
    first = daily.groupby("site_id", observed=True).head(1).index  # first row of each site
    drop = [i + 200 for i, sid in zip(first, daily.loc[first, "site_id"].astype(str)) if sid in picked]
    return daily.drop(index=drop)


def time_qc(static: pd.DataFrame, daily: pd.DataFrame, messy: float) -> tuple[dict, bool]:
    import sptf_ray.data.validate as validate

    n_sites = static["site_id"].nunique()
    first = static["site_id"].astype(str).iloc[:2]
    validate.validate_sites(static, daily[daily["site_id"].astype(str).isin(first)])  # imports, caches
    fast, t_fast = _timed(validate.validate_sites, static, daily)
    found = validate._sites_needing_no_changes
    validate._sites_needing_no_changes = lambda d, cfg: {}
    try:
        slow, t_slow = _timed(validate.validate_sites, static, daily)
    finally:
        validate._sites_needing_no_changes = found
    identical = all(a.equals(b) for a, b in zip(fast, slow))
    messy_daily = _with_missing_days(daily, messy)
    per_site = n_sites - len(found(validate.normalize_daily(messy_daily), validate.QCConfig()))
    _, t_messy = _timed(validate.validate_sites, static, messy_daily)
    print(f"QC, {n_sites} sites, {len(daily):,} days:")
    print(f"  clean network, whole-table path: {t_fast:6.1f} s  ({n_sites / t_fast:7.0f} sites/s)")
    print(f"  clean network, per-site path:    {t_slow:6.1f} s  ({n_sites / t_slow:7.0f} sites/s)"
          f"  -> {t_slow / t_fast:.1f}x; outputs identical: {identical}")
    print(f"  {per_site:>5} sites missing a day:  {t_messy:6.1f} s  ({n_sites / t_messy:7.0f} sites/s)")
    return {"fast_s": t_fast, "slow_s": t_slow, "messy_s": t_messy, "identical": identical}, fast


def time_arrays(network: str) -> None:
    from sptf_ray.training.data import build_sptf_arrays, load_site_samples

    (static, daily, samples), t_load = _timed(load_site_samples, network)
    arrays, t_build = _timed(build_sptf_arrays, static, daily, samples)
    print(f"load_site_samples (read + QC + splits): {t_load:.1f} s; build_sptf_arrays: {len(arrays)} samples "
          f"in {t_build:.1f} s ({len(arrays) / t_build:.0f} samples/s)")


def time_predict(bundle: str, network: str, tmp: str) -> None:
    from sptf_ray.training.predict import predict

    out = Path(tmp) / "predict"
    table, took = _timed(predict, bundle, network, str(out), "cpu", True, lambda m: None)
    simulated = len(pd.read_csv(out / "metrics.csv"))
    print(f"predict (QC, SPTF, solver, files): {len(table)} site-years predicted, {simulated} target years "
          f"simulated, in {took:.0f} s ({simulated / took:.1f} target years/s)")


def main(argv=None) -> int:
    args = parse_args(argv)
    sys.path.insert(0, str(REPO))
    from sptf_ray.data.validate import load_site_dataset

    with tempfile.TemporaryDirectory() as tmp:
        network = _network(args, tmp)
        ds, t_read = _timed(load_site_dataset, network)
        print(f"read + normalize {network}: {t_read:.1f} s")
        qc, _ = time_qc(ds.static, ds.daily, args.messy)
        time_arrays(network)
        if args.bundle:
            time_predict(args.bundle, network, tmp)
    speedup = qc["slow_s"] / qc["fast_s"]
    ok = qc["identical"] and speedup >= TARGET_SPEEDUP
    print(f"target: whole-table QC >= {TARGET_SPEEDUP:g}x the per-site path, identical outputs: "
          f"{'met' if ok else 'MISSED'} ({speedup:.1f}x)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
