"""`sptf ingest ismn|uscrn PATH --out DIR`: real stations to a site dataset."""
from __future__ import annotations

import argparse


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "ingest", help="read ISMN or USCRN station files into a site dataset (Parquet + QC report)",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("source", choices=("ismn", "uscrn"))
    p.add_argument("path", help="ISMN download (folder or zip) or USCRN daily file/folder")
    p.add_argument("--out", required=True, help="output directory or URI")
    p.add_argument("--statics", dest="statics_csv", help="CSV: site_id, sand, silt, clay, bulk_density, ...")
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
    print(f"wrote {len(dataset.static)} site(s), {len(dataset.daily)} day(s) to {args.out}")
    return 0
