"""`sptf simulate`: parameters + a daily forcing file in, daily SWC and fluxes out."""
from __future__ import annotations

import argparse
import json
from importlib import resources

EXAMPLE_PARAMS = {  # Carsel & Parrish (1988) loam, H50 = -800 cm
    "vgm": "theta_r=0.078,theta_s=0.43,alpha=0.036,n=1.56,Ks=24.96,H50=-800",
    "fxw": "theta_s=0.43,alpha=0.02,n=2.0,m=0.8,Ks=24.96,H50=-800",
}


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "simulate", help="run the Richards solver: parameters + daily forcing -> daily SWC and fluxes",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Forcing file (CSV or Parquet): columns precip_cm, pet_cm, lai (cm/d, cm/d, -), optional "
                    "date. Parameters: --params 'name=value,...' (Table 1 names) or --params-file CSV with one "
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
    p.add_argument("--no-plot", action="store_true", help="skip simulation.png")
    p.set_defaults(func=run)


def run(args) -> int:
    import numpy as np

    from sptf_ray import storage
    from sptf_ray.physics import SolverConfig, simulate

    forcing = _read_forcing(args)
    ids, params = _read_params(args)
    config = SolverConfig(obs_depths=tuple(float(x) for x in args.obs_depths.split(",")))
    n_days = len(forcing)
    print(f"simulating {len(ids)} parameter set(s) x {n_days} days ({args.model}) ...", flush=True)
    result = simulate(args.model, params, forcing["precip_cm"].to_numpy(), forcing["pet_cm"].to_numpy(),
                      forcing["lai"].to_numpy(), config=config, raise_on_failure=False)
    storage.makedirs(args.out)
    table = _daily_table(forcing, ids, result)
    storage.atomic_write_text(storage.join(args.out, "simulation.csv"), table.to_csv(index=False))
    summary = _summary(args.model, ids, params, result, config)
    storage.atomic_write_text(storage.join(args.out, "summary.json"), json.dumps(summary, indent=2))
    if not args.no_plot:
        from sptf_ray.plotting import simulation_figure

        dates = forcing["date"].to_numpy() if "date" in forcing else np.arange(1, n_days + 1)
        png = simulation_figure(dates, result.swc, result.daily_fluxes, forcing["precip_cm"].to_numpy(),
                                [str(i) for i in ids], title=f"{args.model.upper()} - SWC at {config.obs_depths[0]} cm")
        storage.atomic_write_bytes(storage.join(args.out, "simulation.png"), png)
    for line in result.messages:
        print("warning:", line)
    worst = float(np.max(np.abs(result.balance_error)))
    print(f"wrote {args.out}: simulation.csv, summary.json{'' if args.no_plot else ', simulation.png'} "
          f"(max |balance error| {worst:.1e}, {int(result.ok.sum())}/{len(ids)} ok)")
    return 0 if result.ok.all() else 1


def _read_forcing(args):
    import pandas as pd

    if args.example:
        with resources.files("sptf_ray.examples").joinpath("forcing_example.csv").open() as fh:
            df = pd.read_csv(fh, parse_dates=["date"])
    elif args.forcing:
        df = pd.read_parquet(args.forcing) if args.forcing.endswith(".parquet") else pd.read_csv(args.forcing)
    else:
        raise ValueError("give --forcing FILE or --example")
    missing = [c for c in ("precip_cm", "pet_cm", "lai") if c not in df.columns]
    if missing:
        raise ValueError(f"forcing file lacks column(s) {missing}; it has {list(df.columns)}")
    if "date" in df.columns:
        df["date"] = pd.to_datetime(df["date"])
        if not df["date"].is_monotonic_increasing or df["date"].duplicated().any():
            raise ValueError("forcing dates must be sorted and unique")
    return df.reset_index(drop=True)


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
    values = {}
    for item in text.split(","):
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--params item {item!r} is not name=value")
        values[key.strip()] = float(value)
    unknown = sorted(set(values) - set(names))
    missing = [n for n in names if n not in values]
    if unknown or missing:
        raise ValueError(f"--params for {args.model} needs exactly {list(names)}; "
                         f"missing {missing}, unknown {unknown}")
    return ["set0"], np.array([[values[n] for n in names]])


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
        sets.append({
            "id": sid,
            "params": dict(zip(PARAM_NAMES[model], map(float, params[b]))),
            "status": int(result.status[b]),
            "balance_error": float(result.balance_error[b]),
            "cumulative_cm": {k: float(v[b]) for k, v in result.cumulative.items()},
            "storage_initial_cm": float(result.storage_initial[b]),
            "storage_final_cm": float(result.storage_final[b]),
            "time_steps": int(result.n_steps[b]),
        })
    return {"model": model, "solver_config": config.to_dict(), "sets": sets, "messages": result.messages}
