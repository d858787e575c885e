"""build-dataset throughput: Ray with 1 and 2 workers vs the solver called directly.

Every figure is one core per worker (NUMBA_NUM_THREADS=1), on the same shards (same parameter
sets and forcings), 365-day sequences:

- direct:  `simulate_shard` on each shard's inputs in one process (solver only, no sampling or I/O);
- ray-1 / ray-2: `build_dataset(executor="ray")` end to end (sampling, solver, Parquet, sidecars,
  manifest) on a local Ray with 1 / 2 CPUs, after the workers have loaded the numba code.

Targets (exit status 1 when missed): Ray overhead = direct rate / ray-1 rate - 1 <= 10 %;
2-worker scaling = ray-2 rate / ray-1 rate >= 1.7. Also prints the projected wall time of the
paper's set (30,000 x 1,095-day simulations) on this machine's 2 cores and per extra 16-core
node, from a direct 1,095-day measurement. Finishes in a few minutes on 2 cores; on a shared
machine the figures are as noisy as the neighbours.

    python benchmarks/dataset.py [--shards 16] [--per-shard 48] [--days 365] [--repeats 3]

The three runs are interleaved and repeated; overhead and scaling are computed within each repeat
and the best repeat counts (other processes on the machine can only slow a run down).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TARGET_OVERHEAD = 0.10
TARGET_SCALING = 1.7
PAPER_SIMS, PAPER_DAYS = 30_000, 1095


def _config(args, seed=11) -> dict:
    return dict(shards=args.shards, per_shard=args.per_shard, days=args.days, model="both", seed=seed)


def run_direct(args) -> dict:
    import numba

    numba.set_num_threads(1)
    from sptf_ray.dataset.build import simulate_shard
    from sptf_ray.dataset.sampling import shard_inputs

    cfg = _config(args)
    simulate_shard(shard_inputs(0, seed=0, per_shard=2, model="both", days=5))  # load/compile numba
    per_shard_s, n = [], 0
    for i in range(cfg["shards"]):
        inputs = shard_inputs(i, seed=cfg["seed"], per_shard=cfg["per_shard"], model="both", days=cfg["days"])
        t0 = time.perf_counter()
        simulate_shard(inputs)
        per_shard_s.append(time.perf_counter() - t0)
        n += len(inputs.sim_id)
    solver_s = sum(per_shard_s)
    # The best 2 workers can do on these shards, taken in order (Ray's FIFO): a slow shard at the
    # end leaves one worker idle whatever the scheduler.
    load = [0.0, 0.0]
    for s in per_shard_s:
        load[load.index(min(load))] += s
    long = shard_inputs(0, seed=cfg["seed"], per_shard=args.long_sims, model="both", days=PAPER_DAYS)
    t0 = time.perf_counter()
    simulate_shard(long)
    long_s = time.perf_counter() - t0
    return {"sims": n, "seconds": solver_s, "rate": n / solver_s, "ideal_scaling_2": solver_s / max(load),
            "slowest_shard_s": max(per_shard_s),
            "long_rate": args.long_sims / long_s, "long_sims": args.long_sims}


def run_ray(args) -> dict:
    import ray

    from sptf_ray.dataset.build import build_dataset

    tmp = os.environ["RAY_TMPDIR"]
    ray.init("local", num_cpus=args.workers, include_dashboard=False, object_store_memory=200 * 1024**2,
             _temp_dir=tmp, log_to_driver=False,
             runtime_env={"env_vars": {"NUMBA_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}})

    @ray.remote(num_cpus=1)
    def warm():  # every worker loads numba code, scipy, Parquet before the clock starts
        from sptf_ray.dataset.build import build_shard

        build_shard(dict(per_shard=2, days=5, seed=0), 0, tempfile.mkdtemp(dir=tmp), "warm-up")
        time.sleep(1.0)
        return os.getpid()

    pids = set(ray.get([warm.remote() for _ in range(args.workers)]))
    out = os.path.join(tmp, f"ds-{args.workers}")
    t0 = time.perf_counter()
    result = build_dataset(_config(args), out, executor="ray", progress=False)
    seconds = time.perf_counter() - t0
    ray.shutdown()
    n = result.simulated
    return {"sims": n, "seconds": seconds, "rate": n / seconds, "warm_workers": len(pids),
            "failed": len(result.failed)}


def _child(mode: str, args, workers: int = 0) -> dict:
    tmp = tempfile.mkdtemp(prefix="sptf-bench-")
    env = {**os.environ, "NUMBA_NUM_THREADS": "1", "PYTHONPATH": str(REPO), "RAY_TMPDIR": tmp,
           "RAY_AUTH_MODE": "disabled", "HOME": tmp, "RAY_USAGE_STATS_ENABLED": "0"}
    cmd = [sys.executable, __file__, "--mode", mode, "--workers", str(workers), "--shards", str(args.shards),
           "--per-shard", str(args.per_shard), "--days", str(args.days), "--long-sims", str(args.long_sims), "--repeats", "1"]
    proc = subprocess.run(cmd, env=env, cwd=tmp, capture_output=True, text=True, timeout=600)
    _wait_for_processes_using(tmp)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:])
        raise SystemExit(f"benchmark child {mode} failed (exit {proc.returncode})")
    return json.loads(lines[-1][len("RESULT "):])


def _wait_for_processes_using(tmp: str, timeout: float = 60.0) -> None:
    """Wait until no process mentions `tmp` (a child's Ray session) so the next run starts quiet.

    Ray's raylet, GCS and agents outlive ray.shutdown() by seconds and would eat the next run's CPU.
    """
    deadline = time.time() + timeout
    needle = tmp.encode()
    while time.time() < deadline:
        busy = False
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    if needle in f.read():
                        busy = True
                        break
            except OSError:
                continue
        if not busy:
            return
        time.sleep(0.2)


def _fmt_h(seconds: float) -> str:
    return f"{seconds / 3600:.2f} h ({seconds / 60:.0f} min)"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shards", type=int, default=16)
    p.add_argument("--per-shard", type=int, default=48)
    p.add_argument("--days", type=int, default=365)
    p.add_argument("--long-sims", type=int, default=24, help="1,095-day simulations for the projection")
    p.add_argument("--repeats", type=int, default=3, help="interleaved repetitions; the best rate counts")
    p.add_argument("--mode", choices=("all", "direct", "ray"), default="all", help=argparse.SUPPRESS)
    p.add_argument("--workers", type=int, default=0, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.mode == "direct":
        print("RESULT " + json.dumps(run_direct(args)), flush=True)
        return 0
    if args.mode == "ray":
        print("RESULT " + json.dumps(run_ray(args)), flush=True)
        return 0

    started = time.perf_counter()
    from sptf_ray.provenance import host_line

    print(host_line(), flush=True)
    print(f"dataset benchmark: {args.shards} shards x {args.per_shard} sims x {args.days} days, both models, "
          f"NUMBA_NUM_THREADS=1 per worker, {os.cpu_count()} CPUs on this machine", flush=True)
    runs = []
    for rep in range(args.repeats):  # interleaved: the three runs of a repeat see similar neighbours
        rep_runs = {}
        for key, mode, workers in (("direct", "direct", 0), ("ray1", "ray", 1), ("ray2", "ray", 2)):
            r = _child(mode, args, workers)
            rep_runs[key] = r
            print(f"  [{rep + 1}/{args.repeats}] {key:6s}: {r['rate']:7.2f} sims/s ({r['sims']} sims, "
                  f"{r['seconds']:.1f} s)", flush=True)
        rep_runs["overhead"] = rep_runs["direct"]["rate"] / rep_runs["ray1"]["rate"] - 1.0
        rep_runs["scaling"] = rep_runs["ray2"]["rate"] / rep_runs["ray1"]["rate"]
        print(f"  [{rep + 1}/{args.repeats}] overhead {rep_runs['overhead'] * 100:+.1f} %, "
              f"scaling {rep_runs['scaling']:.2f}x", flush=True)
        runs.append(rep_runs)
    # Other processes can only slow a run down: the best repeat is the closest to a quiet machine.
    overhead = min(r["overhead"] for r in runs)
    scaling = max(r["scaling"] for r in runs)
    direct = max((r["direct"] for r in runs), key=lambda x: x["rate"])
    ray1 = max((r["ray1"] for r in runs), key=lambda x: x["rate"])
    ray2 = max((r["ray2"] for r in runs), key=lambda x: x["rate"])
    print(f"best of {args.repeats} (rates: highest; overhead and scaling: best repeat, each within one repeat):")
    print(f"  direct solver, 1 core : {direct['rate']:7.2f} sims/s (solver only)")
    print(f"  Ray, 1 worker         : {ray1['rate']:7.2f} sims/s (end to end: sampling, solver, Parquet, manifest)")
    print(f"  Ray, 2 workers        : {ray2['rate']:7.2f} sims/s")
    ok_overhead, ok_scaling = overhead <= TARGET_OVERHEAD, scaling >= TARGET_SCALING
    print(f"Ray overhead (1 worker vs direct): {overhead * 100:+.1f} % (target <= {TARGET_OVERHEAD * 100:.0f} %) "
          f"{'OK' if ok_overhead else 'MISSED'}")
    ideal = max(r["direct"]["ideal_scaling_2"] for r in runs)
    print(f"2-worker scaling: {scaling:.2f}x one worker (target >= {TARGET_SCALING}x) "
          f"{'OK' if ok_scaling else 'MISSED'}; these shards allow at most {ideal:.2f}x in submission order "
          f"(slowest shard {direct['slowest_shard_s']:.1f} s of {direct['seconds']:.1f} s solver time)")

    # Projection for the paper's set: the 1,095-day rate per core (measured directly, or the 365-day
    # rate scaled by length if that is slower: failed runs stop early, which flatters a small sample),
    # discounted by the measured Ray overhead.
    long_rate = min(direct["long_rate"], direct["rate"] * args.days / PAPER_DAYS)
    per_core = long_rate / (1.0 + max(overhead, 0.0))
    two_cores = PAPER_SIMS / (per_core * min(2.0, max(scaling, 1.0)))
    per_node = PAPER_SIMS / (per_core * 16)
    print(f"1,095-day sims: {direct['long_rate']:.2f} sims/s per core direct ({direct['long_sims']} sims); "
          f"projection uses {long_rate:.2f} sims/s per core less the Ray overhead")
    print(f"projected {PAPER_SIMS:,} x {PAPER_DAYS}-day set: {_fmt_h(two_cores)} on this machine's 2 cores; "
          f"each extra 16-core node adds {per_core * 16 * 3600:,.0f} sims/h "
          f"(2 cores + 1 node: {_fmt_h(PAPER_SIMS / (per_core * (2 + 16)))}, "
          f"+4 nodes: {_fmt_h(PAPER_SIMS / (per_core * (2 + 64)))}; one 16-core node alone {_fmt_h(per_node)})")
    print(f"benchmark wall time {time.perf_counter() - started:.0f} s. Note: cores are shared with other "
          f"processes; rates are noisy.")
    return 0 if ok_overhead and ok_scaling else 1


if __name__ == "__main__":
    sys.exit(main())
