"""How a site network looks next to the paper's ISMN data (Qi et al. 2026, section 2.4).

`summarize_network(sites, daily)` computes per-site mean SWC, mean annual precipitation,
frozen days per year (LST < 0 C) and the texture-class mix; `write_report(out, sites, daily)`
writes them as `network_report.md` (Markdown tables) and `network_report.png` (histograms).
Works for any dataset in the schema.py format, virtual or ingested.
"""
from __future__ import annotations

import io

import pandas as pd

from sptf_ray import storage
from sptf_ray.data.weather import DAYS_PER_YEAR

REPORT_MD = "network_report.md"
REPORT_PNG = "network_report.png"
_QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)

# What the paper reports for its ISMN sites, for the side-by-side table.
PAPER_REFERENCE = {
    "mean_swc": "mostly 0.1-0.4",
    "annual_precip_mm": "mostly 200-1,500",
    "frozen_days_per_year": "0 in warm climates, many in cold ones",
}


def per_site_statistics(daily: pd.DataFrame) -> pd.DataFrame:
    """One row per site: mean SWC, mean annual precipitation (mm), frozen days per year."""
    grouped = daily.groupby("site_id", sort=True)
    years = grouped["date"].count() / DAYS_PER_YEAR
    return pd.DataFrame({
        "mean_swc": grouped["swc"].mean(),
        "annual_precip_mm": grouped["precip_cm"].sum() * 10.0 / years,
        "frozen_days_per_year": grouped["lst_c"].apply(lambda s: (s < 0).sum()) / years,
    })


def summarize_network(sites: pd.DataFrame, daily: pd.DataFrame) -> dict:
    """{"per_site": DataFrame, "quantiles": DataFrame, "texture": DataFrame, "n_sites": int}."""
    per_site = per_site_statistics(daily)
    quantiles = per_site.quantile(list(_QUANTILES)).T
    quantiles.columns = [f"p{int(q * 100)}" for q in _QUANTILES]
    quantiles["mean"] = per_site.mean()
    texture = sites["texture_class"].fillna("unknown").value_counts()
    texture = pd.DataFrame({"sites": texture, "share_pct": 100.0 * texture / texture.sum()})
    return {"per_site": per_site, "quantiles": quantiles, "texture": texture, "n_sites": len(sites),
            "share_frozen_sites": float((per_site["frozen_days_per_year"] > 0).mean())}


def report_markdown(summary: dict) -> str:
    q = summary["quantiles"]
    lines = [
        f"# Site network summary ({summary['n_sites']} sites)", "",
        "| per-site statistic | p5 | p25 | median | p75 | p95 | mean | paper (ISMN, 1,188 sites) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    formats = {"mean_swc": "{:.3f}", "annual_precip_mm": "{:.0f}", "frozen_days_per_year": "{:.0f}"}
    for name, fmt in formats.items():
        values = " | ".join(fmt.format(q.loc[name, c]) for c in ["p5", "p25", "p50", "p75", "p95", "mean"])
        lines.append(f"| {name} | {values} | {PAPER_REFERENCE[name]} |")
    lines += ["", f"Sites with any frozen day (LST < 0 C): {100 * summary['share_frozen_sites']:.0f} %.", "",
              "| USDA texture class | sites | share % |", "|---|---|---|"]
    for cls, row in summary["texture"].iterrows():
        lines.append(f"| {cls} | {int(row['sites'])} | {row['share_pct']:.1f} |")
    lines += ["", "Paper: loam, sandy loam and silt loam dominate the ISMN sites.", ""]
    return "\n".join(lines)


def _histogram_png(summary: dict) -> bytes:
    import matplotlib

    matplotlib.use("Agg")  # files only, never a display
    import matplotlib.pyplot as plt

    per_site = summary["per_site"]
    fig, axes = plt.subplots(2, 2, figsize=(10, 7))
    panels = [("mean_swc", "mean SWC (cm3/cm3)"), ("annual_precip_mm", "annual precipitation (mm)"),
              ("frozen_days_per_year", "frozen days per year (LST < 0 C)")]
    for ax, (column, label) in zip(axes.flat, panels):
        ax.hist(per_site[column], bins=30, color="steelblue", edgecolor="white")
        ax.set_xlabel(label)
        ax.set_ylabel("sites")
    texture = summary["texture"]
    axes.flat[3].barh(texture.index[::-1], texture["sites"][::-1], color="peru")
    axes.flat[3].set_xlabel("sites")
    fig.suptitle(f"Site network: {summary['n_sites']} sites")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    plt.close(fig)
    return buffer.getvalue()


def write_report(out: str, sites: pd.DataFrame, daily: pd.DataFrame) -> list[str]:
    """Write the Markdown and PNG report into `out` (atomically); returns their names."""
    summary = summarize_network(sites, daily)
    storage.atomic_write_text(storage.join(out, REPORT_MD), report_markdown(summary))
    storage.atomic_write_bytes(storage.join(out, REPORT_PNG), _histogram_png(summary))
    return [REPORT_MD, REPORT_PNG]


def report_for_directory(out: str) -> str:
    """(Re)write the report of a dataset directory in the schema.py format; returns the Markdown."""
    from sptf_ray.data import schema

    sites = storage.read_parquet(storage.join(out, schema.STATIC_FILE))
    daily = storage.read_parquet(storage.join(out, schema.DAILY_FILE),
                                 columns=["site_id", "date", "swc", "precip_cm", "lst_c"])
    write_report(out, sites, daily)
    return storage.read_text(storage.join(out, REPORT_MD))
