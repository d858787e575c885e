"""Solver speed and accuracy on the HYDRUS-1D reference cases.

Prints milliseconds per 365-day and per 1,095-day run on one core for both hydraulic
models, batch throughput on all cores, and RMSE against HYDRUS-1D. Exits non-zero when
the target is missed: at least 3x faster per core than HYDRUS-1D (48 ms per 365-day
run, 151 ms per 1,095-day run on one core of this machine type) at the accuracy of
the tests (max RMSE <= 0.008, median <= 0.003 over the cases HYDRUS solved).

    NUMBA_NUM_THREADS is set to 1 for the per-core figures; the batch figure re-runs
    in a child process with all cores.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

REFERENCE = Path(__file__).resolve().parents[1] / "tests" / "data" / "hydrus_vgm"
HYDRUS_MS = {365: 48.0, 1095: 151.0}
TARGET_SPEEDUP = 3.0


def load_cases():
    import numpy as np
    import pandas as pd

    cases = pd.read_csv(REFERENCE / "cases.csv")
    forcing = pd.read_csv(REFERENCE / "forcing.csv")
    theta = pd.read_csv(REFERENCE / "theta5.csv")
    out = []
    for _, c in cases.iterrows():
        years = [forcing[forcing.climate == name].sort_values("day") for name in c.climate.split("+")]
        f = pd.concat(years).iloc[: int(c.days)]
        ref = theta[theta.case_id == c.case_id].sort_values("day").theta5.to_numpy()
        vgm = np.array([c.theta_r, c.theta_s, c.alpha, c.n, c.Ks, c.h50])
        out.append(dict(case_id=c.case_id, days=int(c.days), valid=bool(c.hydrus_valid), vgm=vgm,
                        fxw=fxw_analogue(vgm), precip=f.precip_cm.to_numpy(), pet=f.pet_cm.to_numpy(),
                        lai=f.lai.to_numpy(), reference=ref))
    return out


def fxw_analogue(vgm):
    """FXW-M3 parameters of similar shape to a VGM set (no HYDRUS reference exists for FXW)."""
    import numpy as np

    _, theta_s, alpha, n, ks, h50 = vgm
    return np.array([theta_s, min(alpha, 0.2), n, max(1.0 - 1.0 / n, 0.2), max(ks, 0.5), h50])


def longer_cases(cases):
    """1,095-day runs: each soil under the three climates back to back."""
    import numpy as np

    by_id = {c["case_id"]: c for c in cases}
    out = []
    for c in cases:
        if c["days"] != 365 or "__humid__" not in c["case_id"]:
            continue
        soil = c["case_id"].split("__")[0]
        parts = [by_id.get(f"{soil}__{clim}__h800") for clim in ("humid", "semiarid")]
        if None in parts:
            continue
        three = [parts[0], parts[1], parts[0]]
        out.append(dict(c, case_id=f"{soil}__3yr", days=1095,
                        precip=np.concatenate([p["precip"] for p in three]),
                        pet=np.concatenate([p["pet"] for p in three]),
                        lai=np.concatenate([p["lai"] for p in three]), reference=np.array([])))
    return out


def time_single_runs(model, cases, repeats):
    import numpy as np

    from sptf_ray.physics import simulate

    simulate(model, cases[0][model], cases[0]["precip"][:30], cases[0]["pet"][:30], cases[0]["lai"][:30])
    rows = []
    for c in cases:
        best = np.inf
        for _ in range(repeats):
            t0 = time.perf_counter()
            r = simulate(model, c[model], c["precip"], c["pet"], c["lai"], raise_on_failure=False)
            best = min(best, time.perf_counter() - t0)
        ok = bool(r.ok[0])
        rmse = (float(np.sqrt(np.mean((r.swc[0, : len(c["reference"])] - c["reference"]) ** 2)))
                if ok and len(c["reference"]) and model == "vgm" else np.nan)
        rows.append(dict(case=c["case_id"], model=model, days=c["days"], valid=c["valid"], ms=best * 1e3,
                         ok=ok, steps=int(r.n_steps[0]), rmse=rmse))
    return rows


def batch_throughput(model, cases, copies):
    """Simulations per second for a batch spread over all cores (child process)."""
    import numpy as np

    from sptf_ray.physics import simulate

    solved = [c for c in cases if c["days"] == 365]
    params = np.concatenate([np.stack([c[model] for c in solved])] * copies)
    forcing = {k: np.concatenate([np.stack([c[k] for c in solved])] * copies) for k in ("precip", "pet", "lai")}
    simulate(model, params[:2], forcing["precip"][:2, :30], forcing["pet"][:2, :30], forcing["lai"][:2, :30])
    t0 = time.perf_counter()
    r = simulate(model, params, forcing["precip"], forcing["pet"], forcing["lai"], raise_on_failure=False)
    seconds = time.perf_counter() - t0
    return len(params) / seconds, int(r.ok.sum()), len(params)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--copies", type=int, default=8, help="batch = reference cases x copies")
    parser.add_argument("--batch-child", choices=("vgm", "fxw"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.batch_child:
        rate, ok, n = batch_throughput(args.batch_child, load_cases(), args.copies)
        print(f"{rate:.1f} {ok} {n}")
        return 0
    import numba
    import pandas as pd

    if numba.config.NUMBA_NUM_THREADS != 1:
        env = dict(os.environ, NUMBA_NUM_THREADS="1")
        return subprocess.call([sys.executable, __file__, *(argv or sys.argv[1:])], env=env)

    cases = load_cases()
    long_cases = longer_cases(cases)
    from sptf_ray.provenance import host_line

    print(host_line())
    rows = []
    for model in ("vgm", "fxw"):
        rows += time_single_runs(model, cases, args.repeats)
        rows += time_single_runs(model, long_cases, 1)
    df = pd.DataFrame(rows)
    pd.set_option("display.width", 160)
    print(df.to_string(index=False, float_format=lambda x: f"{x:.4f}" if x < 1 else f"{x:.1f}"))

    failures = []
    print("\nper-core speed (mean ms per run over cases that completed; HYDRUS-1D on the cases it solved):")
    for model in ("vgm", "fxw"):
        for days in (365, 1095):
            sel = df[(df.model == model) & (df.days == days) & df.ok]
            if days == 365:
                sel = sel[sel.valid]
            mean_ms = sel.ms.mean()
            speedup = HYDRUS_MS[days] / mean_ms
            flag = "ok" if speedup >= TARGET_SPEEDUP else "MISSED"
            print(f"  {model} {days:5d} d: {mean_ms:7.1f} ms  (median {sel.ms.median():.1f}, max {sel.ms.max():.1f})"
                  f"  HYDRUS {HYDRUS_MS[days]:.0f} ms -> {speedup:.2f}x  [target {TARGET_SPEEDUP}x: {flag}]")
            if speedup < TARGET_SPEEDUP:
                failures.append(f"{model} {days}-day speed-up {speedup:.2f}x < {TARGET_SPEEDUP}x")
    acc = df[(df.model == "vgm") & (df.days == 365) & df.valid]
    n_done = int(acc.ok.sum())
    print(f"\naccuracy vs HYDRUS-1D (VGM, {n_done}/{len(acc)} HYDRUS-valid cases completed): "
          f"RMSE median {acc.rmse.median():.4f}, max {acc.rmse.max():.4f}")
    if n_done < len(acc) or acc.rmse.max() > 0.008 or acc.rmse.median() > 0.003:
        failures.append("accuracy bar missed")
    incomplete = df[~df.ok]
    if len(incomplete):
        print(f"\ncases that did not complete ({len(incomplete)}):", ", ".join(incomplete.case + "/" + incomplete.model))

    print(f"\nbatch throughput on all {os.cpu_count()} cores (365-day runs, batch of cases x {args.copies}):")
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_NUM_THREADS"}
    for model in ("vgm", "fxw"):
        out = subprocess.run([sys.executable, __file__, "--batch-child", model, "--copies", str(args.copies)],
                             env=env, capture_output=True, text=True, check=True).stdout.split()
        rate, ok, n = float(out[0]), int(out[1]), int(out[2])
        single = df[(df.model == model) & (df.days == 365) & df.ok].ms.mean()
        print(f"  {model}: {rate:.1f} simulations/s ({ok}/{n} completed); "
              f"one core: {1000.0 / single:.1f}/s -> {rate * single / 1000.0:.2f}x")
    if failures:
        print("\nTARGETS MISSED: " + "; ".join(failures))
        return 1
    print("\nall targets met")
    return 0


if __name__ == "__main__":
    sys.exit(main())
