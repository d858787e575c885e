"""`sptf simulate`: parameters + a daily forcing file in, daily SWC and fluxes out."""
from __future__ import annotations

import argparse
import json
from importlib import resources

EXAMPLE_PARAMS = {  # Carsel & Parrish (1988) loam, H50 = -800 cm
    "vgm": "theta_r=0.078,theta_s=0.43,alpha=0.036,n=1.56,Ks=24.96,H50=-800",
    "fxw": "theta_s=0.43,alpha=0.02,n=2.0,m=0.8,Ks=24.96,H50=-800",
}
FORCING_COLUMNS = ("precip_cm", "pet_cm", "lai")
# Daily maxima beyond which a forcing column is almost certainly in the wrong unit.
PLAUSIBLE_MAX = {"pet_cm": (2.5, "cm/d; is it in mm?"), "precip_cm": (100.0, "cm/d; is it in mm?"),
                 "lai": (15.0, "m2/m2; implausible leaf area index")}
PLOT_NAME = "simulation.png"


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "simulate", help="run the Richards solver: parameters + daily forcing -> daily SWC and fluxes",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Forcing file (CSV or Parquet): columns precip_cm, pet_cm, lai (cm/d, cm/d, -), optional "
                    "date (YYYY-MM-DD, one row per consecutive day; rows are counted from 1 below the header). "
                    "Parameters: --params 'name=value,...' (Table 1 names) or --params-file CSV with one "
                    "row per parameter set (optional column 'id').",
    )
    p.add_argument("--model", choices=("vgm", "fxw"), default="vgm")
    p.add_argument("--params", help="e.g. " + EXAMPLE_PARAMS["vgm"])
    p.add_argument("--params-file", help="CSV with the six parameter columns (and optional 'id')")
    p.add_argument("--forcing", help="daily forcing CSV/Parquet")
    p.add_argument("--example", action="store_true",
                   help="use the embedded 3-year example forcing (humid, semi-arid, temperate) and a loam")
    p.add_argument("--out", required=True, help="output directory (local path or URI)")
    p.add_argument("--obs-depths", default="5", help="comma-separated depths (cm); the first is 'swc'")
    p.add_argument("--no-plot", action="store_true", help="skip simulation.png (and remove a stale one)")
    p.set_defaults(func=run)


def run(args) -> int:
    from sptf_ray.physics import SolverConfig, simulate

    _check_exclusive(args)
    forcing = _read_forcing(args)
    ids, params = _read_params(args)
    config = SolverConfig(obs_depths=_parse_depths(args.obs_depths))
    _prepare_out(args.out)  # before the (possibly long) run, so a bad --out fails fast
    for line in _plausibility_warnings(forcing, args.model, ids, params):
        print("warning:", line, flush=True)
    print(f"simulating {len(ids)} parameter set(s) x {len(forcing)} days ({args.model}) ...", flush=True)
    result = simulate(args.model, params, *(forcing[c].to_numpy() for c in FORCING_COLUMNS),
                      config=config, raise_on_failure=False)
    _write_outputs(args, forcing, ids, params, result, config)
    for line in result.messages:
        print("warning:", line)
    print(_done_line(args, ids, result))
    return 0 if result.ok.all() else 1


def _check_exclusive(args) -> None:
    if args.example and args.forcing:
        raise ValueError("give either --example or --forcing, not both")
    if args.params and args.params_file:
        raise ValueError("give either --params or --params-file, not both")


def _write_outputs(args, forcing, ids, params, result, config) -> None:
    import numpy as np

    from sptf_ray import storage

    table = _daily_table(forcing, ids, result)
    storage.atomic_write_text(storage.join(args.out, "simulation.csv"), table.to_csv(index=False))
    summary = _summary(args.model, ids, params, result, config)
    storage.atomic_write_text(storage.join(args.out, "summary.json"), json.dumps(summary, indent=2))
    png_uri = storage.join(args.out, PLOT_NAME)
    if args.no_plot:
        storage.remove(png_uri)  # a plot left from an earlier run would not match the new CSV
        return
    from sptf_ray.plotting import simulation_figure

    dates = forcing["date"].to_numpy() if "date" in forcing else np.arange(1, len(forcing) + 1)
    png = simulation_figure(dates, result.swc, result.daily_fluxes, forcing["precip_cm"].to_numpy(),
                            [str(i) for i in ids], title=f"{args.model.upper()} - SWC at {config.obs_depths[0]} cm")
    storage.atomic_write_bytes(png_uri, png)


def _done_line(args, ids, result) -> str:
    import numpy as np

    ok = result.ok
    # A failed set's balance covers only the days before it stopped; leave it out of the maximum.
    worst = f"{float(np.max(np.abs(result.balance_error[ok]))):.1e}" if ok.any() else "n/a"
    files = "simulation.csv, summary.json" + ("" if args.no_plot else f", {PLOT_NAME}")
    return f"wrote {args.out}: {files} (max |balance error| {worst}, {int(ok.sum())}/{len(ids)} ok)"


def _prepare_out(out) -> None:
    import pyarrow.fs as pafs

    from sptf_ray import storage

    fs, path = storage.resolve(out)
    if fs.get_file_info(path).type == pafs.FileType.File:
        raise ValueError(f"--out {out} is a file, not a directory")
    try:
        storage.makedirs(out)
    except (FileExistsError, NotADirectoryError) as exc:  # e.g. a parent of --out is a file
        raise ValueError(f"cannot create --out {out}: {exc}") from exc


# --------------------------------------------------------------------------- forcing
def _read_forcing(args):
    import pandas as pd

    if args.example:
        with resources.files("sptf_ray.examples").joinpath("forcing_example.csv").open() as fh:
            df = pd.read_csv(fh)
    elif args.forcing:
        is_parquet = args.forcing.lower().endswith(".parquet")
        df = pd.read_parquet(args.forcing) if is_parquet else pd.read_csv(args.forcing)
    else:
        raise ValueError("give --forcing FILE or --example")
    missing = [c for c in FORCING_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"forcing file lacks column(s) {missing}; it has {list(df.columns)}")
    df = df.reset_index(drop=True)
    for col in FORCING_COLUMNS:
        df[col] = _numeric_column(df[col], col)
    if "date" in df.columns:
        df["date"] = _parse_dates(df["date"])
        _check_consecutive(df["date"])
    return df


def _numeric_column(values, name):
    import pandas as pd

    numbers = pd.to_numeric(values, errors="coerce")
    # Blank cells stay NaN here; the solver's input check reports those by day.
    bad = numbers.isna() & values.notna()
    if bad.any():
        i = int(bad.to_numpy().argmax())
        raise ValueError(f"forcing column {name}: row {i + 1} is not a number ({values.iloc[i]!r}); "
                         f"{int(bad.sum())} such cell(s)")
    return numbers.astype(float)


def _parse_dates(values):
    import pandas as pd

    blank = values.isna() | (values.astype(str).str.strip() == "")
    if blank.any():
        raise ValueError(f"forcing date in row {int(blank.to_numpy().argmax()) + 1} is missing")
    if pd.api.types.is_datetime64_any_dtype(values):
        return values
    # An explicit ISO format avoids pandas' per-element guessing (and its warnings) and never
    # reads 01/02/2001 as either January or February by chance.
    try:
        dates = pd.to_datetime(values.astype(str).str.strip(), format="ISO8601", errors="coerce")
    except (ValueError, TypeError) as exc:
        raise ValueError(f"forcing dates are not readable as YYYY-MM-DD: {exc}") from exc
    bad = dates.isna()
    if bad.any():
        i = int(bad.to_numpy().argmax())
        raise ValueError(f"forcing date in row {i + 1} ({values.iloc[i]!r}) is not readable; "
                         f"expected format YYYY-MM-DD")
    return dates


def _check_consecutive(dates) -> None:
    timed = (dates != dates.dt.normalize()).to_numpy()
    if timed.any():
        i = int(timed.argmax())
        raise ValueError(f"forcing dates must be daily: row {i + 1} has a time of day ({dates.iloc[i]}); "
                         f"give one row per day (aggregate hourly data first)")
    steps = dates.diff().dt.days.to_numpy()[1:]
    bad = steps != 1
    if bad.any():
        i = int(bad.argmax()) + 1
        cur, prev = (dates.iloc[k].strftime("%Y-%m-%d") for k in (i, i - 1))
        hint = " (same date repeated: hourly data?)" if steps[i - 1] == 0 else ""
        raise ValueError(f"forcing dates must be consecutive days: row {i + 1} ({cur}) follows {prev}{hint}")


def _plausibility_warnings(forcing, model, ids, params) -> list[str]:
    lines = []
    for col, (limit, why) in PLAUSIBLE_MAX.items():
        top = float(forcing[col].max())
        if top > limit:
            lines.append(f"{col} reaches {top:g} (> {limit:g} {why})")
    return lines + _bounds_warnings(model, ids, params)


def _bounds_warnings(model, ids, params) -> list[str]:
    from sptf_ray.physics.parameters import THETA_S_SAMPLING_RANGE, parameter_space

    # Table 1's theta_s upper bound is site-specific (max(0.41, max observed SWC)); with no
    # observations here, use the widest upper bound the project samples so the loam example is quiet.
    space = parameter_space(model, theta_s_upper=THETA_S_SAMPLING_RANGE[1])
    lines = []
    for j, name in enumerate(space.names):
        out = (params[:, j] < space.lower[j]) | (params[:, j] > space.upper[j])
        if out.any():
            b = int(out.argmax())
            more = f" (and {int(out.sum()) - 1} other set(s))" if out.sum() > 1 else ""
            lines.append(f"{ids[b]}: {name} = {params[b, j]:g} lies outside the Table 1 bounds "
                         f"[{space.lower[j]:g}, {space.upper[j]:g}]{more}")
    return lines


# --------------------------------------------------------------------------- parameters
def _parse_depths(text: str) -> tuple:
    try:
        depths = tuple(float(x) for x in text.split(","))
    except ValueError:
        raise ValueError(f"--obs-depths {text!r} must be comma-separated numbers (cm)") from None
    dup = [d for i, d in enumerate(depths) if d in depths[:i]]
    if dup:
        raise ValueError(f"--obs-depths lists {dup[0]:g} cm more than once")
    return depths


def _read_params(args):
    import numpy as np
    import pandas as pd

    from sptf_ray.physics import PARAM_NAMES

    names = PARAM_NAMES[args.model]
    if args.params_file:
        df = pd.read_csv(args.params_file)
        missing = [n for n in names if n not in df.columns]
        if missing:
            raise ValueError(f"{args.params_file} lacks parameter column(s) {missing}")
        ids = df["id"].astype(str).tolist() if "id" in df.columns else [f"set{i}" for i in range(len(df))]
        return ids, df[list(names)].to_numpy(dtype=float)
    text = args.params or (EXAMPLE_PARAMS[args.model] if args.example else None)
    if text is None:
        raise ValueError("give --params 'name=value,...' or --params-file CSV")
    values = _parse_params_text(text)
    unknown = sorted(set(values) - set(names))
    missing = [n for n in names if n not in values]
    if unknown or missing:
        raise ValueError(f"--params for {args.model} needs exactly {list(names)}; "
                         f"missing {missing}, unknown {unknown}")
    return ["set0"], np.array([[values[n] for n in names]])


def _parse_params_text(text: str) -> dict:
    values = {}
    for item in text.split(","):
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep:
            raise ValueError(f"--params item {item!r} is not name=value")
        if key in values:
            raise ValueError(f"--params gives {key} more than once")
        try:
            values[key] = float(value)
        except ValueError:
            raise ValueError(f"--params {key} = {value.strip()!r} is not a number") from None
    return values


# --------------------------------------------------------------------------- outputs
def _daily_table(forcing, ids, result):
    import pandas as pd

    from sptf_ray.physics import DAILY_FLUXES

    frames = []
    day = range(1, len(forcing) + 1)
    for b, sid in enumerate(ids):
        cols = {"id": sid, "day": day}
        if "date" in forcing:
            cols["date"] = forcing["date"].dt.strftime("%Y-%m-%d")
        for j, depth in enumerate(result.obs_depths):
            cols[f"swc_{depth:g}cm"] = result.swc_at_depths[b, :, j]
        for j, name in enumerate(DAILY_FLUXES):
            cols[f"{name}_cm"] = result.daily_fluxes[b, :, j]
        frames.append(pd.DataFrame(cols))
    return pd.concat(frames, ignore_index=True)


def _summary(model, ids, params, result, config):
    from sptf_ray.physics import PARAM_NAMES

    sets = []
    for b, sid in enumerate(ids):
        done = bool(result.ok[b])
        # The solver's totals skip the NaN days after a failure, and its final storage and
        # balance are those of the day it stopped: not results of the whole period.
        sets.append({
            "id": sid,
            "params": dict(zip(PARAM_NAMES[model], map(float, params[b]))),
            "status": int(result.status[b]),
            "failed_day": None if done else int(result.failed_day[b]) + 1,  # 1-based, as the CSV's 'day'
            "balance_error": float(result.balance_error[b]) if done else None,
            "cumulative_cm": {k: float(v[b]) for k, v in result.cumulative.items()} if done else None,
            "storage_initial_cm": float(result.storage_initial[b]),
            "storage_final_cm": float(result.storage_final[b]) if done else None,
            "time_steps": int(result.n_steps[b]),
        })
    return {"model": model, "solver_config": config.to_dict(), "sets": sets, "messages": result.messages}
