"""`sptf ingest ismn|uscrn|tables PATH --out DIR`: real stations (or your own tables) to a site dataset."""
from __future__ import annotations

import argparse
import sys

# How station ids are spelled, for the unmatched-site_id warning.
STATION_ID_FORMAT = {
    "uscrn": "'uscrn:WBANNO' (e.g. 'uscrn:03047')",
    "ismn": "'NETWORK:STATION' (e.g. 'SMOSMANIA:Narbonne')",
}


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "ingest", help="read ISMN or USCRN station files, or your own daily + static tables, into a site "
                       "dataset (Parquet + QC report)",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("source", choices=("ismn", "uscrn", "tables"))
    p.add_argument("path", help="ISMN download (folder or zip), USCRN daily file/folder, or (tables) a daily "
                                "table, CSV or Parquet: site_id, date, swc, precip_cm, pet_cm, lai, lst_c [, tair_c]")
    p.add_argument("--out", required=True, help="output directory or URI")
    p.add_argument("--statics", dest="statics_csv", help="CSV: site_id, sand, silt, clay, bulk_density, ...; "
                   "for tables (required, CSV or Parquet): site_id, lat, lon, sand, silt, clay, bulk_density")
    p.add_argument("--forcing", dest="forcing_csv", help="CSV: site_id, date, precip_mm, tmax_c, ...")
    p.add_argument("--lai", dest="lai_csv", help="CSV: site_id, date, lai")
    p.add_argument("--max-missing", type=float, default=0.20, help="max fraction of SWC days missing per year")
    p.set_defaults(func=run)


def run(args) -> int:
    from sptf_ray.data.ingest import ingest
    from sptf_ray.data.validate import format_qc_summary

    dataset = ingest({
        "source": args.source, "path": args.path, "out": args.out,
        "statics_csv": args.statics_csv, "forcing_csv": args.forcing_csv, "lai_csv": args.lai_csv,
        "qc": {"max_missing_fraction": args.max_missing},
    })
    print(format_qc_summary(dataset.report), end="")
    _warn_unmatched(dataset.extra.get("unmatched_user_site_ids", {}), args)
    print(f"wrote {len(dataset.static)} site(s), {len(dataset.daily)} day(s) to {args.out}")
    return 0


def _warn_unmatched(unmatched: dict, args) -> None:
    """One line per user file whose rows name no station: those rows were not used."""
    paths = {"statics": args.statics_csv, "forcing": args.forcing_csv, "lai": args.lai_csv}
    for name, ids in unmatched.items():
        shown = ", ".join(repr(i) for i in ids[:5]) + (f" (+{len(ids) - 5} more)" if len(ids) > 5 else "")
        print(f"warning: --{name} {paths[name]}: {len(ids)} site_id(s) match no station and were ignored: "
              f"{shown}; station ids look like {STATION_ID_FORMAT[args.source]}", file=sys.stderr)
