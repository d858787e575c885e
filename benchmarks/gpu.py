"""GPU vs CPU training: the same runs with use_gpu, their speed-up and their metrics (issue 6).

On one surrogate set (and its network's site data), for each device asked for (cpu, cuda):

1. the plain surrogate loop (`train_surrogate_epoch`, no Ray), paper size (256 hidden), the
   same initial weights and batch order on every device: seconds per epoch and validation MSE
   after the last epoch;
2. the batched surrogate forward pass (inference, one year per simulation): simulations/s; and
   forward + backward through the frozen surrogate as the SPTF trains, the library's path (cuDNN
   off on cuda, since cuDNN's RNN backward refuses eval mode) against the LSTM in training mode
   with cuDNN: how much the guard costs, and whether the gradients agree;
3. Ray Train: `train_surrogate` with ScalingConfig(use_gpu=...) over the same epochs: median
   epoch seconds (`epoch_s` of metrics.jsonl), best validation MSE;
4. Ray Train: `train_sptf` through the first device's surrogate bundle (one surrogate for all,
   so the metrics compare): median epoch seconds, best validation loss (eq. 3).

Then each cuda row's speed-up over cpu and the relative difference of its metrics. Results go
to OUT/gpu.json and OUT/gpu.md after every step, so a run cut short still leaves what it did.
Exit 1 when cuda is asked for but absent, a metric differs by more than --tolerance, or a
Ray Train row's ranks recorded (workers/rank-*.json) another device than the one asked for.

    sptf run configs/quickstart.yaml --out RUN --stop-after dataset
    python benchmarks/gpu.py --run RUN --out DIR [--devices cpu,cuda] [--epochs 5] [--sptf-epochs 20]

`--devices cpu` runs everything on CPU (how a machine without a GPU checks the script itself;
tests/test_gpu_benchmark.py does); `--no-ray` keeps to steps 1-2. CPU rows use every core:
torch's threads in the plain loop, one Ray Train worker with all but one CPU (one left to Ray
Data). The plain-loop metrics are bitwise reproducible on CPU, so a cuda row's difference is
the device's arithmetic (cuDNN's LSTM), not the run.

A GPU machine with PyTorch but no Ray and no package index: pack Ray, its missing deps and the
run's inputs here with benchmarks/offline_kit.py (29 MB for Ray 2.60 on CPython 3.12, plus the
quickstart set's 25 MB), carry `.gpu-kit`, and there, from the repository root:

    mkdir -p /tmp/kit && tar -xJf .gpu-kit/site.tar.xz -C /tmp/kit
    export PYTHONPATH=/tmp/kit/site:$PWD PYTHONUNBUFFERED=1 RAY_TMPDIR=/tmp/ray HOME=/tmp/home
    mkdir -p $RAY_TMPDIR $HOME && python3 benchmarks/gpu.py --run .gpu-kit/run --out /tmp/gpu --sptf-epochs 10

Measured: not yet on a GPU (no session has had one since this script was written). Here (2
cores, CPU only, quickstart set, 256 hidden): the plain loop 10.3 s an epoch, the forward pass
635 simulations/s (512 x 365 days); forward + backward through the frozen surrogate 153
simulations/s (64 x 365 days, benchmark set, 2026-12-06); a CPython 3.12 venv holding only the GPU image's packages
(benchmarks/gpu_image_packages.txt) plus the kit ran every step.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

DEFAULT_EPOCHS, DEFAULT_SPTF_EPOCHS = 5, 20


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--run", required=True, help="`sptf run` directory with dataset/ and network/ (or sites/)")
    p.add_argument("--out", help="results and training runs (default: a temporary directory)")
    p.add_argument("--devices", default="cpu,cuda", help="comma-separated torch devices (default %(default)s)")
    p.add_argument("--model", choices=("vgm", "fxw"), default="vgm")
    p.add_argument("--hidden", type=int, default=256, help="surrogate hidden size (paper: 256)")
    p.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS, help="surrogate epochs (default %(default)s)")
    p.add_argument("--sptf-epochs", type=int, default=DEFAULT_SPTF_EPOCHS)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--tolerance", type=float, default=0.10,
                   help="largest relative metric difference from cpu accepted (default %(default)s)")
    p.add_argument("--no-ray", action="store_true", help="only the plain loop and the forward pass")
    args = p.parse_args(argv)
    args.devices = [d.strip() for d in args.devices.split(",") if d.strip()]
    if not args.devices or args.epochs < 1 or args.sptf_epochs < 1:
        p.error("need at least one device and >= 1 epoch")
    return args


def run_inputs(run_dir: str) -> tuple[str, str]:
    """(surrogate set, site data) of a `sptf run` directory; a clear error when either is missing."""
    dataset = os.path.join(run_dir, "dataset")
    sites = next((os.path.join(run_dir, d) for d in ("network", "sites") if os.path.isdir(os.path.join(run_dir, d))),
                 None)
    if not os.path.isdir(dataset) or sites is None:
        raise SystemExit(f"{run_dir}: needs dataset/ and network/ (run `sptf run CONFIG --out {run_dir} "
                         f"--stop-after dataset` first)")
    return dataset, sites


def check_devices(devices) -> None:
    import torch

    for d in devices:
        if torch.device(d).type == "cuda" and not torch.cuda.is_available():
            raise SystemExit(f"device {d!r} asked for but torch {torch.__version__} sees no CUDA device")


def _sync(device) -> None:
    import torch

    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


# ------------------------------------------------------------------------------ plain loop
def surrogate_arrays(dataset: str, model: str):
    from sptf_ray.training.data import SurrogateBatcher, fit_forcing_normalizer, read_surrogate_arrays, shard_paths

    paths = shard_paths(dataset)
    norm = fit_forcing_normalizer(paths, model)
    return {split: read_surrogate_arrays(paths, SurrogateBatcher(model, norm, split)) for split in ("train", "val")}


def plain_surrogate(arrays, device: str, args) -> dict:
    """Same seed, same initial weights, same batch order on every device."""
    import torch

    from sptf_ray.models import Surrogate, SurrogateConfig
    from sptf_ray.training.data import iterate_batches
    from sptf_ray.training.loops import evaluate_surrogate, seed_everything, train_surrogate_epoch

    seed_everything(0)
    model = Surrogate(SurrogateConfig(model=args.model, hidden_size=args.hidden)).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    epoch_s, losses = [], []
    for epoch in range(args.epochs):
        t0 = time.perf_counter()
        tr = train_surrogate_epoch(model, iterate_batches(arrays["train"], args.batch_size, True, epoch), optimizer,
                                   device)
        _sync(device)
        epoch_s.append(time.perf_counter() - t0)
        losses.append(tr["loss"])
    va = evaluate_surrogate(model, iterate_batches(arrays["val"], 256), device)
    return {"epoch_s": _steady(epoch_s), "train_loss": losses[-1], "val_mse": va["mse"], "n_train": tr["n"]}


def forward_throughput(arrays, device: str, args, batch: int = 512, repeats: int = 3) -> dict:
    import torch

    from sptf_ray.models import Surrogate, SurrogateConfig

    model = Surrogate(SurrogateConfig(model=args.model, hidden_size=args.hidden)).to(device).eval()
    n = min(batch, len(arrays["val"]["params"]))
    params = torch.as_tensor(arrays["val"]["params"][:n], device=device)
    forcing = torch.as_tensor(arrays["val"]["forcing"][:n], device=device)
    with torch.no_grad():
        model(params, forcing)  # warm-up (cuDNN plans, allocator)
        _sync(device)
        t0 = time.perf_counter()
        for _ in range(repeats):
            model(params, forcing)
        _sync(device)
    return {"sims_per_s": repeats * n / (time.perf_counter() - t0), "batch": n, "days": int(forcing.shape[1])}


def frozen_backward(arrays, device: str, args, batch: int = 64, repeats: int = 3) -> dict:
    """Forward + backward through the frozen surrogate, as the SPTF trains: the library's path (eval
    mode, cuDNN off on cuda, `loops._cudnn_guard`) against the LSTM in training mode with cuDNN on
    (a 1-layer LSTM has no dropout, so the arithmetic is the same; only cuDNN's kernels differ).

    sims_per_s is the library's path; cudnn_gain how many times faster the other is, grad_difference
    the relative difference of their input gradients (what reaches the SPTF)."""
    import torch

    from sptf_ray.models import Surrogate, SurrogateConfig, freeze
    from sptf_ray.training.loops import _cudnn_guard

    torch.manual_seed(0)
    model = freeze(Surrogate(SurrogateConfig(model=args.model, hidden_size=args.hidden)).to(device))
    n = min(batch, len(arrays["train"]["params"]))
    params = torch.as_tensor(arrays["train"]["params"][:n], device=device)
    forcing = torch.as_tensor(arrays["train"]["forcing"][:n], device=device)

    def guarded():
        with _cudnn_guard(device):
            return model(params.requires_grad_(), forcing)

    def with_cudnn():
        model.lstm.train()
        try:
            return model(params.requires_grad_(), forcing)
        finally:
            model.lstm.eval()

    rates, grads = {}, {}
    for name, forward in (("guarded", guarded), ("cudnn", with_cudnn)):
        params.grad = None
        forward().square().mean().backward()  # warm-up, and the gradient compared
        grads[name] = params.grad.detach().clone()
        _sync(device)
        t0 = time.perf_counter()
        for _ in range(repeats):
            forward().square().mean().backward()
        _sync(device)
        rates[name] = repeats * n / (time.perf_counter() - t0)
    scale = grads["guarded"].abs().max().clamp_min(1e-30)
    return {"sims_per_s": rates["guarded"], "cudnn_sims_per_s": rates["cudnn"],
            "cudnn_gain": rates["cudnn"] / rates["guarded"],
            "grad_difference": float((grads["cudnn"] - grads["guarded"]).abs().max() / scale),
            "grad_max": float(scale),
            "batch": n, "days": int(forcing.shape[1])}


def _steady(epoch_s: list[float]) -> float:
    """Median epoch time without the first (warm-up: allocator, cuDNN plans, numba) when there are more."""
    return statistics.median(epoch_s[1:] if len(epoch_s) > 1 else epoch_s)


# ------------------------------------------------------------------------------ Ray Train
def scaling_for(device: str) -> dict:
    if device.startswith("cuda"):
        return {"num_workers": 1, "use_gpu": True, "cpus_per_worker": 1, "gpus_per_worker": 1}
    return {"num_workers": 1, "use_gpu": False, "cpus_per_worker": max(1, (os.cpu_count() or 2) - 1)}


def ray_surrogate(dataset: str, device: str, args, storage_path: str) -> tuple[dict, str]:
    from sptf_ray.training.ray_train import train_surrogate

    out = train_surrogate({
        "data": dataset, "storage_path": storage_path, "name": f"surrogate-{_tag(device)}", "epochs": args.epochs,
        "batch_size": args.batch_size, "lr": args.lr, "network": {"model": args.model, "hidden_size": args.hidden},
        "scaling": scaling_for(device)})
    return {"epoch_s": _steady([m["epoch_s"] for m in out.history]),
            "val_mse": float(out.best_metrics["val_mse"]), **_ran_on(out.workers)}, out.bundle


def ray_sptf(sites: str, bundle: str, device: str, args, storage_path: str) -> dict:
    from sptf_ray.training.ray_train import train_sptf

    out = train_sptf({
        "data": sites, "surrogate": bundle, "storage_path": storage_path, "name": f"sptf-{_tag(device)}",
        "epochs": args.sptf_epochs, "network": {"model": args.model}, "scaling": scaling_for(device)})
    return {"epoch_s": _steady([m["epoch_s"] for m in out.history]),
            "val_loss": float(out.best_metrics["val_loss"]), **_ran_on(out.workers)}


def _ran_on(workers: list[dict]) -> dict:
    """The torch device and accelerator (or CPU) each Ray Train rank recorded it trained on."""
    return {"worker_devices": [w["device"] for w in workers],
            "ran_on": [w["accelerator"] or w["cpu"] for w in workers]}


def _on_device(asked: str, r: dict) -> bool:
    """A Ray Train row whose ranks all trained on the kind of device asked for (plain rows: by construction)."""
    return all(d.split(":")[0] == asked.split(":")[0] for d in r.get("worker_devices", [asked]))


def _tag(device: str) -> str:
    return device.replace(":", "")


# ------------------------------------------------------------------------------ report
METRIC = {"plain surrogate": "val_mse", "surrogate forward": None, "frozen surrogate backward": None, "Ray Train surrogate": "val_mse",
          "Ray Train SPTF": "val_loss"}


def compare(results: dict, tolerance: float) -> list[dict]:
    """Each non-cpu device's speed-up over cpu and its metric's relative difference, per step; a row is
    not ok when its metric differs by more than `tolerance` or its Ray Train ranks ran off the device."""
    rows = []
    for step, by_device in results.items():
        cpu = by_device.get("cpu")
        for device, r in by_device.items():
            if device == "cpu" or cpu is None:
                continue
            on_device = _on_device(device, r) and _on_device("cpu", cpu)
            metric = METRIC[step]
            if metric is None:
                speedup, diff = r["sims_per_s"] / cpu["sims_per_s"], math.nan
            else:
                speedup = cpu["epoch_s"] / r["epoch_s"]
                diff = abs(r[metric] - cpu[metric]) / abs(cpu[metric])
            rows.append({"step": step, "device": device, "speedup": speedup, "metric": metric,
                         "relative_difference": diff, "on_device": on_device,
                         "ok": on_device and (metric is None or diff <= tolerance)})
    return rows


def markdown(results: dict, rows: list[dict], header: str) -> str:
    lines = [header, "", "| step | device | time | metric | trained on |", "|---|---|---|---|---|"]
    for step, by_device in results.items():
        for device, r in by_device.items():
            time_s = (f"{r['sims_per_s']:,.0f} sims/s" if "sims_per_s" in r else f"{r['epoch_s']:.3f} s/epoch")
            metric = METRIC[step]
            ran_on = "; ".join(f"{d} {name}" for d, name in zip(r.get("worker_devices", []), r.get("ran_on", [])))
            lines.append(f"| {step} | {device} | {time_s} | {f'{metric} {r[metric]:.4g}' if metric else '-'} "
                         f"| {ran_on or '-'} |")
    if rows:
        lines += ["", "| step | device | speed-up over cpu | metric difference |", "|---|---|---|---|"]
        for r in rows:
            diff = "-" if r["metric"] is None else f"{100 * r['relative_difference']:.1f} %"
            if not r.get("on_device", True):
                diff += " (!) its Ray Train ranks ran off the device"
            elif not r["ok"]:
                diff += " (!)"
            lines.append(f"| {r['step']} | {r['device']} | {r['speedup']:.1f}x | {diff} |")
    for device, r in results.get("frozen surrogate backward", {}).items():
        same = "" if device.startswith("cuda") else " (off cuda both paths run the same kernels: timing noise)"
        lines.append(f"\nFrozen surrogate backward [{device}]: the LSTM in training mode with cuDNN runs "
                     f"{r['cudnn_gain']:.2f}x the library's guarded path (eval mode, cuDNN off on cuda){same}; "
                     f"input gradients differ by {r['grad_difference']:.1e} of their largest.")
    return "\n".join(lines) + "\n"


def write_results(out: str, results: dict, args, header: str) -> list[dict]:
    from sptf_ray import storage

    rows = compare(results, args.tolerance)
    payload = {"settings": {k: v for k, v in vars(args).items()}, "results": results, "comparison": rows}
    storage.atomic_write_text(os.path.join(out, "gpu.json"), json.dumps(payload, indent=2, default=str) + "\n")
    storage.atomic_write_text(os.path.join(out, "gpu.md"), markdown(results, rows, header))
    return rows


def environment() -> str:
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no CUDA device"
    from sptf_ray.provenance import host_info

    host = host_info()
    return f"torch {torch.__version__}, {host['cpu']}, {host['cpus']} CPUs, {gpu}"


def main(argv=None) -> int:
    args = parse_args(argv)
    check_devices(args.devices)
    dataset, sites = run_inputs(args.run)
    out = args.out or tempfile.mkdtemp(prefix="sptf-bench-gpu-")
    os.makedirs(out, exist_ok=True)
    header = (f"GPU check ({environment()}): {args.model} surrogate {args.hidden} hidden, {args.epochs} epochs, "
              f"SPTF {args.sptf_epochs} epochs, batch {args.batch_size}")
    print(header, flush=True)
    results: dict = {}

    def record(step, device, value):
        results.setdefault(step, {})[device] = value
        print(f"{step} [{device}]: {value}", flush=True)
        write_results(out, results, args, header)

    import torch

    arrays = surrogate_arrays(dataset, args.model)
    threads = torch.get_num_threads()
    torch.set_num_threads(os.cpu_count() or 1)
    try:
        for device in args.devices:
            record("plain surrogate", device, plain_surrogate(arrays, device, args))
            record("surrogate forward", device, forward_throughput(arrays, device, args))
            record("frozen surrogate backward", device, frozen_backward(arrays, device, args))
    finally:
        torch.set_num_threads(threads)
    if not args.no_ray:
        from sptf_ray.training.cli import ensure_ray

        ensure_ray()
        bundles = []
        for device in args.devices:
            value, bundle = ray_surrogate(dataset, device, args, os.path.join(out, "runs"))
            record("Ray Train surrogate", device, value)
            bundles.append(bundle)
        for device in args.devices:  # all through one surrogate, so the SPTF metrics compare
            record("Ray Train SPTF", device, ray_sptf(sites, bundles[0], device, args, os.path.join(out, "runs")))
    rows = write_results(out, results, args, header)
    print("\n" + markdown(results, rows, header) + f"\nwritten to {out}/gpu.md and gpu.json")
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
