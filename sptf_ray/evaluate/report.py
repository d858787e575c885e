"""`sptf evaluate`: metrics tables, figures and report.md / report.html for a run directory.

Methods scored on the target year of every (historical, target) sample (DESIGN section 0):

- ``SPTF-VGM`` / ``SPTF-FXW``: `predict` outputs (``simulated.parquet``);
- ``Inversion-<model> (<mode>)``: parameters of ``inversion.parquet`` through the solver on the
  evaluation year (``historical``: calibrated on the historical year; ``same_year``: on the target
  year itself, an upper bound of a fit);
- ``Truth ceiling``: on virtual sites (``truth.parquet`` in the data dir), the site's true
  parameters of its truth model through the solver (what noise alone leaves);
- ``Rosetta-3 VGM``: the conventional PTF (``rosetta-soil``) from sand/silt/clay/BD, values
  outside Table 1 clipped (counted in the report), H50 = -800 cm; skipped with a logged reason
  when the package is missing.

Days count only when unfrozen (LST >= 0 C) and finite (`metrics.py`). For each SPTF whose
predict output names its bundle, permutation feature importance and input-length sensitivity
(`sensitivity.py`, paper 2.6 and 3.4) on the train and test sites. Written under ``out``:
``report.md``, ``report.html``, ``figures/*.png``, ``metrics_site.csv`` (one row per method and
sample), ``metrics_summary.csv`` (pooled per method and split), ``feature_importance.csv`` and
``input_length.csv`` (one row per seed or window), ``evaluate.manifest.json`` last.
"""
from __future__ import annotations

import dataclasses
import html
import io
import logging
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np
import pandas as pd

from sptf_ray import storage
from sptf_ray.data.validate import frozen_mask, require_site_dataset, site_year_blocks, year_calendar
from sptf_ray.evaluate.metrics import pooled_metrics, scores, site_metrics, sorted_groups
from sptf_ray.evaluate.sensitivity import (DEFAULT_LENGTHS, FEATURES, analyse_predict_dirs, summarize_importance,
                                           summarize_lengths)
from sptf_ray.physics.parameters import PARAM_NAMES, parameter_space

log = logging.getLogger(__name__)

REPORT_MD = "report.md"
REPORT_HTML = "report.html"
FIGURES_DIR = "figures"
SITE_METRICS_FILE = "metrics_site.csv"
SUMMARY_FILE = "metrics_summary.csv"
PARAM_CORR_FILE = "parameter_correlation.csv"
IMPORTANCE_FILE = "feature_importance.csv"
INPUT_LENGTH_FILE = "input_length.csv"
SURROGATE_SCORED = ("Scored as the SPTF was trained: its parameters through its frozen surrogate on the target "
                    "year (eq. 3), not through the solver as in the tables above; where the two disagree (compare "
                    "the 365-day row with the headline), the surrogate is not yet accurate enough.")
ROSETTA_H50 = -800.0
SOLVER_CHUNK = 1024  # target years per solver call: one progress line each
SPLITS = ("train", "val", "test")

__all__ = ["EvaluateConfig", "evaluate_run", "rosetta_vgm"]


@dataclass
class EvaluateConfig:
    """Where the pieces of a run are; empty strings take the `sptf run` layout under run_dir."""

    run_dir: str = ""
    data: str = ""  # site dataset dir (default: <run_dir>/network)
    predict: dict[str, str] = field(default_factory=dict)  # model -> predict dir (default: <run_dir>/predict/<model>)
    inversion: str = ""  # inversion dir (default: <run_dir>/inversion)
    # model -> SPTF bundle for the sensitivity analyses (default: the one its predict dir's manifest
    # names; `sptf run` gives its own, so a moved or copied run dir reads the bundle it holds)
    bundles: dict[str, str] = field(default_factory=dict)
    out: str = ""  # default: run_dir
    split_seed: int = 0  # used only when the data dir holds no splits.parquet
    rosetta: bool = True
    n_timeseries: int = 4  # per-site time-series panels (test sites)
    # What the SPTF relies on (sensitivity.py): seeds of permutation feature importance (paper: 100;
    # 0 skips it), historical-input lengths and random windows per length (empty list skips it).
    importance_repeats: int = 10
    input_lengths: list[int] = field(default_factory=lambda: list(DEFAULT_LENGTHS))
    length_windows: int = 10
    sensitivity_splits: list[str] = field(default_factory=lambda: ["train", "test"])
    sensitivity_seed: int = 0
    device: str = "cpu"

    def validate(self) -> None:
        if not self.run_dir and not (self.data and self.out):
            raise ValueError("give run_dir (or data and out)")
        for m in self.predict:
            if m not in PARAM_NAMES:
                raise ValueError(f"predict: unknown model {m!r} (vgm, fxw)")
        if self.n_timeseries < 0:
            raise ValueError("n_timeseries must be >= 0")
        if self.importance_repeats < 0 or self.length_windows < 1:
            raise ValueError("importance_repeats must be >= 0 and length_windows >= 1")
        if any(not 1 <= int(n) <= 365 for n in self.input_lengths):
            raise ValueError(f"input_lengths must lie in 1..365 days, got {self.input_lengths}")
        bad = [s for s in self.sensitivity_splits if s not in SPLITS]
        if bad:
            raise ValueError(f"sensitivity_splits: unknown split(s) {bad} (train, val, test)")

    def resolved(self) -> "EvaluateConfig":
        j = lambda *p: storage.join(self.run_dir, *p)  # noqa: E731
        predict = dict(self.predict) or {m: j("predict", m) for m in PARAM_NAMES}
        return dataclasses.replace(self, data=self.data or self._run_data(), predict=predict,
                                   inversion=self.inversion or j("inversion"), out=self.out or self.run_dir)

    def _run_data(self) -> str:
        """The site data a `sptf run` directory was made from: its `sites:` dataset when its
        resolved config names one, else the virtual network it holds."""
        from sptf_ray.config import parse_yaml
        from sptf_ray.pipeline import RESOLVED_CONFIG

        resolved = storage.join(self.run_dir, RESOLVED_CONFIG)
        sites = (parse_yaml(storage.read_text(resolved)) or {}).get("sites") if storage.exists(resolved) else None
        return sites or storage.join(self.run_dir, "network")


# --------------------------------------------------------------------------- inputs
def _site_years(daily: pd.DataFrame) -> dict[str, dict[int, dict]]:
    """{site: {year: observed SWC, forcing, counted days and dates}} of the complete years."""
    out: dict[str, dict[int, dict]] = {}
    calendars: dict[int, np.ndarray] = {}  # one per calendar year, shared by its site-years
    for sid, blocks in site_year_blocks(daily).items():
        for year, block in blocks.items():
            swc, precip, pet, lai, lst = block.T
            if year not in calendars:
                calendars[year] = year_calendar(year).values
            out.setdefault(sid, {})[year] = {"swc": swc, "precip": precip, "pet": pet, "lai": lai,
                                             "counted": frozen_mask(lst), "dates": calendars[year]}
    return out


def _simulate_rows(model: str, rows: pd.DataFrame, params: np.ndarray, years: dict, year_col: str,
                   method: str, progress: Optional[Callable[[str], None]] = None,
                   label: Optional[str] = None) -> pd.DataFrame:
    """Long table of the solver's SWC with `params` (N, 6) on each row's `year_col` year; progress
    lines name `label` (default: the method)."""
    from sptf_ray.physics import simulate_swc_in_chunks
    from sptf_ray.progress import chunk_reporter

    keep = [i for i, r in enumerate(rows.itertuples()) if getattr(r, year_col) in years.get(str(r.site_id), {})]
    if not keep:
        return pd.DataFrame()
    rows = rows.iloc[keep].reset_index(drop=True)
    params = np.asarray(params, dtype=float)[keep]
    ys = [years[str(r.site_id)][int(getattr(r, year_col))] for r in rows.itertuples()]
    stack = lambda k: np.stack([y[k] for y in ys])  # noqa: E731
    swc, _ = simulate_swc_in_chunks(model, params, stack("precip"), stack("pet"), stack("lai"), SOLVER_CHUNK,
                                    chunk_reporter(f"evaluate: {label or method}: solver", "target years", progress))
    days = len(ys[0]["swc"])
    each_day = lambda values: np.repeat(np.asarray(values), days)  # noqa: E731
    return pd.DataFrame({
        "method": method, "site_id": each_day(rows["site_id"].astype(str)),
        "hist_year": each_day(rows["hist_year"].astype(int)), "target_year": each_day(rows[year_col].astype(int)),
        "date": stack("dates").ravel(), "swc_obs": stack("swc").ravel(), "swc_sim": swc[:, :days].ravel(),
        "counted": stack("counted").ravel()})


def rosetta_vgm(static: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, str]:
    """(params (S, 6) VGM in Table 1 order, clipped flags (S,), package version) from Rosetta-3.

    Rosetta gives theta_r, theta_s, log10 alpha (1/cm), log10 n, log10 Ks (cm/d); values outside
    Table 1 are clipped (flagged); H50 = -800 cm (DESIGN section 0). Raises ImportError when
    `rosetta-soil` is not installed.
    """
    import rosetta

    x = static[["sand", "silt", "clay", "bulk_density"]].to_numpy(float)
    mean, _, _ = rosetta.rosetta(3, rosetta.SoilData.from_iter(x.tolist()), estimate_type="log")
    mean = np.asarray(mean, dtype=float)
    raw = np.column_stack([mean[:, 0], mean[:, 1], 10 ** mean[:, 2], 10 ** mean[:, 3], 10 ** mean[:, 4],
                           np.full(len(x), ROSETTA_H50)])
    space = parameter_space("vgm")
    params = np.clip(raw, space.lower, space.upper)
    clipped = np.any(np.abs(params - raw) > 1e-12 * np.maximum(1, np.abs(raw)), axis=1) | ~np.isfinite(raw).all(axis=1)
    params = np.where(np.isfinite(params), params, (space.lower + space.upper) / 2)
    return params, clipped, str(getattr(rosetta, "__version__", "?"))


# --------------------------------------------------------------------------- method series
def _sptf_series(predict_dirs: dict, samples: pd.DataFrame, notes: list) -> tuple[list, dict]:
    from sptf_ray.training.predict import PARAMS_FILE, SIM_FILE

    frames, params = [], {}
    pairs = samples[["site_id", "hist_year"]].astype({"site_id": str})
    for model, d in sorted(predict_dirs.items()):
        if not storage.verify_manifest(d) or not storage.exists(storage.join(d, SIM_FILE)):
            notes.append(f"SPTF-{model.upper()}: no complete predict output at `{d}`; skipped")
            continue
        sim = storage.read_parquet(storage.join(d, SIM_FILE)).astype({"site_id": str})
        sim = sim.merge(pairs, on=["site_id", "hist_year"])  # target years that exist only
        sim["target_year"] = sim["date"].dt.year
        sim["method"] = f"SPTF-{model.upper()}"
        frames.append(sim[["method", "site_id", "hist_year", "target_year", "date", "swc_obs", "swc_sim", "counted"]])
        params[f"SPTF-{model.upper()}"] = (model, pd.read_csv(io.StringIO(storage.read_text(storage.join(d, PARAMS_FILE))),
                                                              dtype={"site_id": str}))
    return frames, params


def _inversion_series(inv_dir: str, years: dict, notes: list, progress=None) -> tuple[list, dict]:
    from sptf_ray.inverse.job import RESULTS_FILE

    uri = storage.join(inv_dir, RESULTS_FILE)
    if not (storage.verify_manifest(inv_dir) and storage.exists(uri)):
        notes.append(f"Inversion: no complete `{uri}`; skipped")
        return [], {}
    inv = storage.read_parquet(uri).astype({"site_id": str})
    frames, params = [], {}
    for (model, mode), g in inv.groupby(["model", "mode"], sort=True):
        method = f"Inversion-{str(model).upper()} ({mode})"
        g = g.rename(columns={"calib_year": "c_year"}).reset_index(drop=True)
        # the sample's historical year: calib_year in "historical" mode, eval_year - 1 in "same_year"
        g["hist_year"] = g["eval_year"] - 1
        p = g[list(PARAM_NAMES[str(model)])].to_numpy(float)
        frames.append(_simulate_rows(str(model), g, p, years, "eval_year", method, progress))
        params[method] = (str(model), g)
    return frames, params


def _truth_series(truth: pd.DataFrame, samples: pd.DataFrame, years: dict, progress=None) -> list:
    from sptf_ray.data.network import truth_parameters

    truth = truth.astype({"site_id": str})
    rows = samples.astype({"site_id": str}).merge(truth, on="site_id")
    frames = []
    for model, g in rows.groupby("truth_model"):
        g = g.reset_index(drop=True)
        frames.append(_simulate_rows(str(model), g, truth_parameters(g), years, "target_year", "Truth ceiling",
                                     progress, label=f"Truth ceiling ({str(model).upper()} sites)"))
    return frames


def _rosetta_series(static: pd.DataFrame, samples: pd.DataFrame, years: dict, notes: list,
                    progress=None) -> tuple[list, dict]:
    try:
        params, clipped, version = rosetta_vgm(static)
    except ImportError as exc:
        msg = f"Rosetta-3 baseline skipped: `rosetta-soil` is not installed ({exc})"
        log.warning(msg)
        notes.append(msg)
        return [], {}
    notes.append(f"Rosetta-3 (rosetta-soil {version}): {int(clipped.sum())} of {len(clipped)} sites had "
                 "values outside Table 1, clipped; H50 = -800 cm")
    table = pd.DataFrame(params, columns=PARAM_NAMES["vgm"])
    table.insert(0, "site_id", static["site_id"].astype(str).to_numpy())
    table["rosetta_clipped"] = clipped
    rows = samples.astype({"site_id": str}).merge(table, on="site_id").reset_index(drop=True)
    frame = _simulate_rows("vgm", rows, rows[list(PARAM_NAMES["vgm"])].to_numpy(float), years, "target_year",
                           "Rosetta-3 VGM", progress)
    return [frame], {"Rosetta-3 VGM": ("vgm", table)}


# --------------------------------------------------------------------------- tables
def _param_correlation(params: dict, truth: pd.DataFrame) -> pd.DataFrame:
    """Pearson r of predicted vs true parameters (log10 for alpha, Ks) on sites of that truth model."""
    truth = truth.astype({"site_id": str})
    rows = []
    for method, (model, table) in params.items():
        if "mode" in table and (table["mode"] != "historical").all():
            continue
        t = table.astype({"site_id": str}).groupby("site_id")[list(PARAM_NAMES[model])].mean().reset_index()
        t = t.merge(truth[truth["truth_model"] == model], on="site_id")
        row = {"method": method, "model": model, "n_sites": len(t)}
        for name in PARAM_NAMES[model]:
            a, b = t[name].to_numpy(float), t[f"{model}_{name}"].to_numpy(float)
            if name in ("alpha", "Ks"):
                a, b = np.log10(a), np.log10(b)
            ok = np.isfinite(a) & np.isfinite(b)
            r = np.nan
            if ok.sum() >= 3 and np.std(a[ok]) > 0 and np.std(b[ok]) > 0:
                r = float(np.corrcoef(a[ok], b[ok])[0, 1])
            row[f"r_{name}"] = r
        rows.append(row)
    return pd.DataFrame(rows)


def _summary(series: pd.DataFrame, per: pd.DataFrame) -> pd.DataFrame:
    rows = []
    groups, order, edges = sorted_groups(series, ["method", "split"])
    obs, sim, counted = (series[c].to_numpy()[order] for c in ("swc_obs", "swc_sim", "counted"))
    site_ids = series["site_id"].to_numpy()[order]
    for (method, split), a, b in zip(groups.itertuples(index=False, name=None), edges[:-1], edges[1:]):
        p = scores(obs[a:b], sim[a:b], counted[a:b])
        s = per[(per["method"] == method) & (per["split"] == split)]
        rows.append({"method": method, "split": split, "n_sites": len(pd.unique(site_ids[a:b])),
                     "n_samples": len(s), "pooled_nse": p["nse"], "pooled_rmse": p["rmse"],
                     "slope": p["slope"], "intercept": p["intercept"], "median_site_nse": s["nse"].median(),
                     "median_site_rmse": s["rmse"].median()})
    return pd.DataFrame(rows)


def _by_class(per: pd.DataFrame, static: pd.DataFrame, column: str, split: str) -> pd.DataFrame:
    if column not in static:
        return pd.DataFrame()
    s = per[per["split"] == split].merge(static[["site_id", column]].astype({"site_id": str}), on="site_id")
    if s.empty:
        return pd.DataFrame()
    t = s.groupby([column, "method"])["nse"].median().unstack("method")
    t.insert(0, "n_sites", s.groupby(column)["site_id"].nunique())
    return t.reset_index()


# --------------------------------------------------------------------------- figures
def _fig_bytes(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return buf.getvalue()


def _scatter_figure(series: pd.DataFrame, split: str) -> bytes:
    from sptf_ray.plotting import _pyplot

    plt = _pyplot()
    methods = sorted(series["method"].unique())
    ncol = min(3, len(methods))
    nrow = int(np.ceil(len(methods) / ncol))
    fig, axes = plt.subplots(nrow, ncol, figsize=(4.2 * ncol, 4.3 * nrow), squeeze=False, layout="constrained")
    for ax, method in zip(axes.ravel(), methods):
        g = series[(series["method"] == method) & series["counted"] & series["swc_obs"].notna() & series["swc_sim"].notna()]
        if len(g):
            ax.hexbin(g["swc_obs"], g["swc_sim"], gridsize=40, bins="log", mincnt=1, cmap="viridis",
                      extent=(0, 0.65, 0, 0.65))
            p = pooled_metrics(g)
            x = np.array([0, 0.65])
            ax.plot(x, x, "k--", lw=0.8)
            if np.isfinite(p["slope"]):
                ax.plot(x, p["slope"] * x + p["intercept"], "r-", lw=1)
            ax.set_title(f"{method}\nNSE {p['nse']:.2f}  RMSE {p['rmse']:.3f}", fontsize=9)
        ax.set_xlabel("observed SWC")
        ax.set_ylabel("simulated SWC")
    for ax in axes.ravel()[len(methods):]:
        ax.axis("off")
    fig.suptitle(f"{split} sites, target years, unfrozen days")
    return _fig_bytes(fig)


def _timeseries_figure(series: pd.DataFrame, keys: list) -> bytes:
    from sptf_ray.plotting import _pyplot

    plt = _pyplot()
    fig, axes = plt.subplots(len(keys), 1, figsize=(10, 2.6 * len(keys)), squeeze=False, layout="constrained")
    for ax, (sid, hy) in zip(axes[:, 0], keys):
        g = series[(series["site_id"] == sid) & (series["hist_year"] == hy)]
        first = g[g["method"] == g["method"].iloc[0]].sort_values("date")
        obs = first["swc_obs"].where(first["counted"])
        ax.plot(first["date"], obs, "k.", ms=2, label="observed (unfrozen)")
        for method, m in g.groupby("method"):
            m = m.sort_values("date")
            ax.plot(m["date"], m["swc_sim"], lw=1, label=method)
        ax.set_title(f"site {sid}, target year {hy + 1}", fontsize=9)
        ax.set_ylabel("SWC")
    axes[0, 0].legend(fontsize=7, ncol=3, loc="upper right")
    return _fig_bytes(fig)


def _grouped(n_items: int, k: int, n_groups: int) -> tuple[np.ndarray, float]:
    """x positions of group k's boxes or bars beside the other groups' at each item, and their width."""
    width = 0.8 / n_groups
    return np.arange(n_items) + (k - (n_groups - 1) / 2) * width, width


def _class_figure(per: pd.DataFrame, static: pd.DataFrame, column: str) -> bytes | None:
    from sptf_ray.plotting import _pyplot

    if column not in static:
        return None
    s = per.merge(static[["site_id", column]].astype({"site_id": str}), on="site_id").dropna(subset=["nse"])
    if s.empty:
        return None
    plt = _pyplot()
    classes = sorted(s[column].dropna().astype(str).unique())
    methods = sorted(s["method"].unique())
    fig, ax = plt.subplots(figsize=(max(6, 1.1 * len(classes) * max(1, len(methods)) / 2), 4), layout="constrained")
    for k, method in enumerate(methods):
        data = [s[(s["method"] == method) & (s[column].astype(str) == c)]["nse"].clip(lower=-1).to_numpy()
                for c in classes]
        pos, width = _grouped(len(classes), k, len(methods))
        bp = ax.boxplot([d if len(d) else [np.nan] for d in data], positions=pos, widths=width * 0.9,
                        patch_artist=True, showfliers=False)
        for box in bp["boxes"]:
            box.set_facecolor(plt.cm.tab10(k % 10))
        ax.plot([], [], color=plt.cm.tab10(k % 10), lw=6, label=method)
    ax.set_xticks(np.arange(len(classes)), classes, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("site NSE (clipped at -1)")
    ax.set_title(f"site NSE by {column.replace('_', ' ')} (all splits)")
    ax.legend(fontsize=7, ncol=2)
    return _fig_bytes(fig)


def _importance_figure(rows: pd.DataFrame) -> bytes | None:
    from sptf_ray.plotting import _pyplot

    if rows.empty:
        return None
    plt = _pyplot()
    groups = sorted(rows.groupby(["method", "split"]).groups)
    feats = [f for f in FEATURES if f in set(rows["feature"])]
    fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(feats) * max(1, len(groups)) / 2), 3.8), layout="constrained")
    for k, (method, split) in enumerate(groups):
        g = rows[(rows["method"] == method) & (rows["split"] == split)].groupby("feature")["fi"]
        mean, sd = g.mean().reindex(feats), g.std(ddof=0).reindex(feats)
        pos, width = _grouped(len(feats), k, len(groups))
        # bars grow from FI = 1 (no effect), so a small importance is not lost against a 0 baseline
        ax.bar(pos, mean - 1.0, width * 0.9, bottom=1.0, yerr=sd, capsize=2, label=f"{method} {split}",
               color=plt.cm.tab10(k % 10))
    ax.axhline(1.0, color="k", lw=0.8, ls="--")
    ax.set_xticks(np.arange(len(feats)), feats, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("FI = loss permuted / loss")
    ax.set_title(f"permutation feature importance (mean +- SD over {rows['repeat'].nunique()} seeds)")
    ax.legend(fontsize=7, ncol=2)
    return _fig_bytes(fig)


def _input_length_figure(summary: pd.DataFrame) -> bytes | None:
    from sptf_ray.plotting import _pyplot

    if summary.empty:
        return None
    plt = _pyplot()
    fig, (a_nse, a_rmse) = plt.subplots(1, 2, figsize=(10, 3.8), layout="constrained")
    for k, ((method, split), g) in enumerate(summary.groupby(["method", "split"])):
        style = {"color": plt.cm.tab10(k % 10), "marker": "o", "ms": 3, "label": f"{method} {split}"}
        a_nse.plot(g["length"], g["nse_mean"], **style)
        a_rmse.plot(g["length"], g["rmse_mean"], **style)
    for ax, name in ((a_nse, "pooled NSE"), (a_rmse, "pooled RMSE")):
        ax.set_xlabel("days of the historical year the SPTF reads")
        ax.set_ylabel(f"{name}, target year")
    a_nse.legend(fontsize=7)
    fig.suptitle("input-length sensitivity (mean over random windows)")
    return _fig_bytes(fig)


# --------------------------------------------------------------------------- rendering
def _fmt_table(df: pd.DataFrame) -> pd.DataFrame:
    out = df.copy()
    for c in out.columns:
        if pd.api.types.is_float_dtype(out[c]):
            out[c] = out[c].map(lambda v: "" if pd.isna(v) else f"{v:.3f}")
    return out


def _md_table(df: pd.DataFrame) -> str:
    df = _fmt_table(df)
    head = "| " + " | ".join(map(str, df.columns)) + " |"
    sep = "|" + "---|" * len(df.columns)
    body = ["| " + " | ".join(map(str, r)) + " |" for r in df.itertuples(index=False)]
    return "\n".join([head, sep, *body])


def _render(blocks: list) -> tuple[str, str]:
    md, ht = [], ["<!doctype html><html><head><meta charset='utf-8'><title>sptf-ray report</title>",
                  "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto}"
                  "table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #bbb;padding:2px 6px}"
                  "img{max-width:100%}</style></head><body>"]
    for kind, value in blocks:
        if kind == "h1":
            md.append(f"# {value}\n")
            ht.append(f"<h1>{html.escape(value)}</h1>")
        elif kind == "h2":
            md.append(f"## {value}\n")
            ht.append(f"<h2>{html.escape(value)}</h2>")
        elif kind == "p":
            md.append(f"{value}\n")
            ht.append(f"<p>{html.escape(value)}</p>")
        elif kind == "list":
            md.append("\n".join(f"- {v}" for v in value) + "\n")
            ht.append("<ul>" + "".join(f"<li>{html.escape(v)}</li>" for v in value) + "</ul>")
        elif kind == "table":
            if value is None or value.empty:
                md.append("(no rows)\n")
                ht.append("<p>(no rows)</p>")
            else:
                md.append(_md_table(value) + "\n")
                ht.append(_fmt_table(value).to_html(index=False, escape=True))
        elif kind == "img":
            md.append(f"![{value}]({value})\n")
            ht.append(f"<p><img src='{html.escape(value)}' alt='{html.escape(value)}'></p>")
    ht.append("</body></html>")
    return "\n".join(md), "\n".join(ht)


# --------------------------------------------------------------------------- the stage
def _method_series(cfg: EvaluateConfig, static: pd.DataFrame, samples: pd.DataFrame, years: dict,
                   truth: Optional[pd.DataFrame], notes: list[str], progress=None) -> tuple[pd.DataFrame, dict]:
    """Every method's simulated vs observed SWC of the target years, one frame (with each day's
    split and whether it counts), and each method's parameters for the correlation table."""
    frames, params = _sptf_series(cfg.predict, samples, notes)
    more, p = _inversion_series(cfg.inversion, years, notes, progress)
    frames += more
    params.update(p)
    if truth is not None:
        frames += _truth_series(truth, samples, years, progress)
        notes.append("Truth ceiling: each virtual site's truth model with its true parameters through the solver "
                     "(cold start, target year); for the other model the ceiling is same-year inversion")
    else:
        notes.append("Truth ceiling: no truth.parquet in the data dir (not a virtual network); skipped")
    if cfg.rosetta:
        more, p = _rosetta_series(static, samples, years, notes, progress)
        frames += more
        params.update(p)
    else:
        notes.append("Rosetta-3 baseline: disabled in the config")
    frames = [f for f in frames if len(f)]
    if not frames:
        raise ValueError(f"nothing to evaluate in {cfg.run_dir or cfg.data}: no predict, inversion, truth or Rosetta output")
    series = pd.concat(frames, ignore_index=True)  # site_id is str in every frame
    del frames, more  # days of every method: at network scale, holding the parts too doubles the peak
    split_of = samples.drop_duplicates("site_id").set_index("site_id")["split"].astype(str)
    series["split"] = series["site_id"].map(split_of).fillna("unsplit").astype("category")
    series["method"] = series["method"].astype("category")  # a handful of names over millions of days
    series["counted"] = series["counted"].astype(bool)
    return series, params


def _training_histories(run_dir: str) -> dict[str, list[dict]]:
    """{run name: its epochs' metrics} of the `sptf run` training runs under run_dir/train."""
    from sptf_ray.training.ray_train import read_metrics

    if not run_dir:
        return {}
    names = [f"{kind}-{model}" for kind in ("surrogate", "sptf") for model in PARAM_NAMES]
    histories = {name: read_metrics(storage.join(run_dir, "train", name)) for name in names}
    return {name: h for name, h in histories.items() if h}


def _training_table(histories: dict[str, list[dict]]) -> pd.DataFrame:
    """Per training run: epochs run, the kept (best on validation) epoch and its scores."""
    from sptf_ray.plotting import best_epoch

    rows = []
    for name, history in histories.items():
        score, best = best_epoch(history)
        rows.append({"run": name, "epochs": len(history), "kept_epoch": best["epoch"] + 1, "validation": score,
                     "val_at_kept": best[score], "train_loss_at_kept": best.get("train_loss", np.nan),
                     "val_at_first": history[0][score]})
    table = pd.DataFrame(rows)
    for column in ("val_at_kept", "train_loss_at_kept", "val_at_first"):  # 1e-4 and 1e-2 both readable
        table[column] = table[column].map(lambda v: f"{v:.3g}")
    return table


def _put_figures(put: Callable, series: pd.DataFrame, per: pd.DataFrame, static: pd.DataFrame,
                 fi_rows: pd.DataFrame, len_summary: pd.DataFrame, eval_split: str, n_timeseries: int) -> list:
    """The report's figures, each written through put(name, png bytes or None); their names."""
    figs = [put(f"{FIGURES_DIR}/scatter_{eval_split}.png", _scatter_figure(series[series["split"] == eval_split],
                                                                              eval_split))]
    # per site, the sample most methods scored (inversion may cover the last year pair only)
    ts_sites = (series[series["split"] == eval_split].groupby(["site_id", "hist_year"])["method"].nunique()
                .rename("n").reset_index().sort_values(["site_id", "n", "hist_year"], ascending=[True, False, True]))
    ts_sites = ts_sites.drop_duplicates("site_id")[["site_id", "hist_year"]].head(n_timeseries)
    if n_timeseries and len(ts_sites):
        figs.append(put(f"{FIGURES_DIR}/timeseries_{eval_split}.png",
                        _timeseries_figure(series, list(ts_sites.itertuples(index=False, name=None)))))
    for column in ("texture_class", "land_cover"):
        figs.append(put(f"{FIGURES_DIR}/nse_by_{column}.png", _class_figure(per, static, column)))
    figs.append(put(f"{FIGURES_DIR}/feature_importance.png", _importance_figure(fi_rows)))
    figs.append(put(f"{FIGURES_DIR}/input_length.png", _input_length_figure(len_summary)))
    return figs


def evaluate_run(config, progress=print) -> dict:
    """Score every available method of a run; write the report. Returns {"summary", "site", "notes"}."""
    from sptf_ray.config import load_config
    from sptf_ray.training.bundle import check_device
    from sptf_ray.training.data import load_site_samples

    t0 = time.time()
    cfg = load_config(EvaluateConfig, config)
    if cfg.run_dir and not storage.exists(cfg.run_dir):
        raise FileNotFoundError(f"no run directory at {cfg.run_dir} (a `sptf run --out` directory)")
    cfg = cfg.resolved()
    check_device(cfg.device)  # before minutes of scoring, not at the sensitivity analyses after them
    try:
        require_site_dataset(cfg.data)
    except FileNotFoundError:
        raise FileNotFoundError(f"no site dataset at {cfg.data} to score {cfg.run_dir or cfg.out} against: give "
                                "the one the run was made from (`sptf evaluate RUN_DIR --data DIR`)") from None
    static, daily, samples = load_site_samples(cfg.data, cfg.split_seed)
    static = static.astype({"site_id": str})
    samples = samples.astype({"site_id": str})
    years = _site_years(daily)
    notes: list[str] = []
    truth_uri = storage.join(cfg.data, "truth.parquet")
    truth = storage.read_parquet(truth_uri) if storage.exists(truth_uri) else None
    series, params = _method_series(cfg, static, samples, years, truth, notes, progress)

    per = site_metrics(series, by=["method", "split", "site_id", "hist_year"])
    summary = _summary(series, per)
    corr = _param_correlation(params, truth) if truth is not None else pd.DataFrame()
    fi_rows, len_rows = analyse_predict_dirs(cfg.predict, static, daily, samples, cfg.sensitivity_splits,
                                             cfg.importance_repeats, cfg.input_lengths, cfg.length_windows,
                                             cfg.sensitivity_seed, cfg.device, notes, bundles=cfg.bundles,
                                             progress=progress)
    len_summary = summarize_lengths(len_rows)

    out = cfg.out
    storage.makedirs(out)
    earlier = list(_eval_manifest_entries(out))
    storage.remove(storage.join(out, EVAL_MANIFEST))  # the earlier report no longer stands
    files = []

    def put(name: str, data: bytes | None):
        if data is None:
            return None
        storage.atomic_write_bytes(storage.join(out, name), data)
        files.append(name)
        return name

    eval_split = "test" if (series["split"] == "test").any() else series["split"].iloc[0]
    figs = _put_figures(put, series, per, static, fi_rows, len_summary, eval_split, cfg.n_timeseries)
    histories = _training_histories(cfg.run_dir)
    if histories:
        from sptf_ray.plotting import learning_curves_figure

        figs.append(put(f"{FIGURES_DIR}/learning_curves.png", learning_curves_figure(histories)))

    headline = summary[summary["split"] == eval_split].drop(columns="split")
    blocks = [("h1", "sptf-ray evaluation report"),
              ("p", f"Run: `{cfg.run_dir or out}`; data: `{cfg.data}`; {static.shape[0]} sites, "
                    f"{len(samples)} (historical, target) samples "
                    f"({', '.join(f'{s} {int((samples.split == s).sum())}' for s in SPLITS)}). "
                    "Every simulation starts cold (h = -100 cm) on the target year; only unfrozen days "
                    "(LST >= 0 C) count. NSE, RMSE and the trend line (simulated = slope x observed + intercept) "
                    "follow paper section 2.6; 'pooled' scores all counted days of a split together."),
              ("h2", f"Headline: {eval_split} sites"), ("table", headline),
              ("h2", "All splits"), ("table", summary),
              ("h2", f"Median site NSE by texture class ({eval_split} sites)"),
              ("table", _by_class(per, static, "texture_class", eval_split)),
              ("h2", f"Median site NSE by land cover ({eval_split} sites)"),
              ("table", _by_class(per, static, "land_cover", eval_split))]
    if truth is not None:
        blocks += [("h2", "Predicted vs true parameters (virtual sites of the same truth model, Pearson r; "
                          "log10 for alpha and Ks)"), ("table", corr)]
    if not fi_rows.empty:
        blocks += [("h2", f"Permutation feature importance (FI = loss with the input shuffled across samples / "
                          f"loss; mean of {cfg.importance_repeats} seeds; near 1: the SPTF ignores it)"),
                   ("p", SURROGATE_SCORED),
                   ("table", summarize_importance(fi_rows))]
    if not len_summary.empty:
        blocks += [("h2", f"Input-length sensitivity (the SPTF reads a random window of the historical year; "
                          f"mean of {cfg.length_windows} windows)"), ("p", SURROGATE_SCORED), ("table", len_summary)]
    if histories:
        blocks += [("h2", "Training (the kept epoch: the best on validation, whose weights the bundle holds)"),
                   ("table", _training_table(histories))]
    blocks += [("h2", "Figures")] + [("img", f) for f in figs if f]
    blocks += [("h2", "Notes"), ("list", notes)]
    md, ht = _render(blocks)
    put(SITE_METRICS_FILE, per.to_csv(index=False).encode())
    put(SUMMARY_FILE, summary.to_csv(index=False).encode())
    if not corr.empty:
        put(PARAM_CORR_FILE, corr.to_csv(index=False).encode())
    if not fi_rows.empty:
        put(IMPORTANCE_FILE, fi_rows.to_csv(index=False).encode())
    if not len_rows.empty:
        put(INPUT_LENGTH_FILE, len_rows.to_csv(index=False).encode())
    put(REPORT_MD, md.encode())
    put(REPORT_HTML, ht.encode())
    for name in sorted(set(earlier) - set(files)):  # e.g. feature_importance.csv of an analysis now skipped
        storage.remove(storage.join(out, name))
    _write_eval_manifest(out, files)
    progress(f"evaluate: {len(series['method'].unique())} methods, {len(per)} site-years scored in "
             f"{time.time() - t0:.0f} s -> {storage.join(out, REPORT_MD)}")
    return {"summary": summary, "site": per, "notes": notes, "files": files, "correlation": corr,
            "importance": fi_rows, "input_length": len_summary}


EVAL_MANIFEST = "evaluate.manifest.json"


def _write_eval_manifest(out: str, files: list) -> None:
    """The report lives in the run dir beside other stages' outputs, so it gets its own manifest file."""
    import json

    entries = {}
    for name in files:
        size, digest = storage.file_sha256(storage.join(out, name))
        entries[name] = {"size": size, "sha256": digest}
    storage.atomic_write_text(storage.join(out, EVAL_MANIFEST), json.dumps({"files": entries}, indent=2) + "\n")


def _eval_manifest_entries(out: str) -> dict:
    """{file name: {"size", "sha256"}} of the evaluation manifest in `out` ({} when absent or unreadable)."""
    import json

    uri = storage.join(out, EVAL_MANIFEST)
    if not storage.exists(uri):
        return {}
    try:
        entries = json.loads(storage.read_text(uri))["files"]
    except (ValueError, KeyError, TypeError, OSError):
        return {}
    return entries if isinstance(entries, dict) else {}


def verify_evaluation(out: str) -> bool:
    """True when the report's files exist with the sizes and checksums written after them."""
    entries = _eval_manifest_entries(out)
    try:
        return bool(entries) and all(
            storage.exists(storage.join(out, n)) and storage.file_sha256(storage.join(out, n)) == (e["size"], e["sha256"])
            for n, e in entries.items())
    except (KeyError, TypeError, OSError):
        return False
