"""Ray Train (V2) wrappers: TorchTrainer around the plain loops in `loops.py`.

- Surrogate: the shards are streamed with Ray Data (read_parquet -> SurrogateBatcher ->
  get_dataset_shard -> iter_torch_batches); the train set is split across workers, the
  validation set is read whole by every worker.
- SPTF: site-year arrays are small; each worker takes its slice of a seeded permutation.
- A checkpoint (model, optimizer, RNG state) every epoch; FailureConfig(max_failures) restarts
  workers from the latest one; calling again with the same `name` and `storage_path` resumes
  a stopped run (Ray Train V2 resumes an existing run directory by itself).
- Metrics: `<run_dir>/metrics.jsonl` (one JSON line per epoch, written by a controller-side
  callback) and a progress line per epoch; the bundle goes to `<run_dir>/bundle` from the
  checkpoint best on validation.
- Where it trained: each rank of the last attempt writes `<run_dir>/workers/rank-<r>.json`
  (node, CPU, torch device and accelerator); the bundle's provenance.json carries them.
"""
from __future__ import annotations

import dataclasses
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from sptf_ray import storage
from sptf_ray.config import config_to_dict, load_config, save_config
from sptf_ray.errors import StageFailed
from sptf_ray.models import Normalizer, SPTFConfig, SurrogateConfig

METRICS_FILE = "metrics.jsonl"
LEARNING_CURVE_FILE = "learning_curve.png"  # beside metrics.jsonl, remade when the run finishes
NORMALIZATION_FILE = "normalization.json"
CONFIG_FILE = "config.yaml"
WORKERS_DIR = "workers"

__all__ = ["ScalingArgs", "SurrogateTrainConfig", "SPTFTrainConfig", "train_surrogate", "train_sptf",
           "MetricsCallback", "TrainOutcome", "read_workers", "check_cluster_fits", "check_inputs"]


@dataclass
class ScalingArgs:
    num_workers: int = 1
    use_gpu: bool = False
    cpus_per_worker: float = 0.5  # fractional on small machines, so Ray Data's readers get a CPU
    gpus_per_worker: float = 1.0

    def validate(self) -> None:
        if self.num_workers < 1:
            raise ValueError("scaling.num_workers must be >= 1")
        if self.cpus_per_worker < 0.1:
            raise ValueError("scaling.cpus_per_worker must be >= 0.1")
        if self.use_gpu and self.gpus_per_worker <= 0:
            raise ValueError("scaling.gpus_per_worker must be > 0 with use_gpu")

    def to_ray(self):
        from ray.train import ScalingConfig

        resources = {"CPU": self.cpus_per_worker}
        if self.use_gpu:
            resources["GPU"] = self.gpus_per_worker
        return ScalingConfig(num_workers=self.num_workers, use_gpu=self.use_gpu, resources_per_worker=resources)


def _check_schedule(schedule: str, final_fraction: float) -> None:
    from sptf_ray.training.schedule import LR_SCHEDULES

    if schedule not in LR_SCHEDULES:
        raise ValueError(f"lr_schedule must be one of {list(LR_SCHEDULES)}, got {schedule!r}")
    if not 0.0 < final_fraction <= 1.0:
        raise ValueError(f"lr_final_fraction must be in (0, 1], got {final_fraction}")


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


@dataclass
class _RunArgs:
    storage_path: str = ""  # run directories live under it (local path or URI)
    name: str = ""  # run name; the same name under the same storage_path resumes that run
    epochs: int = 10
    batch_size: int = 64
    lr: float = 1e-3
    lr_schedule: str = "constant"  # or "cosine": lr -> lr * lr_final_fraction over the epochs
    lr_final_fraction: float = 0.01
    seed: int = 0
    grad_clip: float = 1.0
    max_failures: int = 0
    num_to_keep: int = 2
    # Stop once the validation score has not improved for this many epochs (None: run them all);
    # the kept checkpoint is the best either way, so it only saves the epochs past the optimum.
    patience: Optional[int] = None
    # Ray Train's own console lines (worker group started, checkpoint saved, each report): at
    # INFO they outnumber the epoch lines ten to one; the run's files keep every level.
    log_level: str = "WARNING"
    scaling: ScalingArgs = field(default_factory=ScalingArgs)

    def _validate_run(self) -> None:
        if not self.storage_path:
            raise ValueError("storage_path is required (where run directories go)")
        if not self.name:
            raise ValueError("name is required (the run directory under storage_path)")
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0:
            raise ValueError("epochs and batch_size must be >= 1 and lr > 0")
        _check_schedule(self.lr_schedule, self.lr_final_fraction)
        if self.max_failures < -1 or self.num_to_keep < 1:
            raise ValueError("max_failures must be >= -1 and num_to_keep >= 1")
        if self.patience is not None and self.patience < 1:
            raise ValueError(f"patience must be >= 1 epochs (or None: no early stop), got {self.patience}")
        if self.log_level not in LOG_LEVELS:
            raise ValueError(f"log_level must be one of {list(LOG_LEVELS)}, got {self.log_level!r}")

    @property
    def run_dir(self) -> str:
        return storage.join(self.storage_path, self.name)


@dataclass
class SurrogateTrainConfig(_RunArgs):
    data: str = ""  # directory of shard-*.parquet
    name: str = "surrogate"
    network: SurrogateConfig = field(default_factory=SurrogateConfig)
    seq_len: int | None = None  # first days of each simulation only (None: all)
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    stats_max_shards: int = 8
    preserve_order: bool = True  # deterministic Ray Data order (resume reproduces a run)
    shuffle_buffer: int = 256
    # Read and preprocess the shards once into the object store: streaming them anew every
    # epoch cost 30 s an epoch on 3,072 sims (2 s of training). False streams sets too big for it.
    materialize: bool = True

    def validate(self) -> None:
        self._validate_run()
        if not self.data:
            raise ValueError("data (the shard directory) is required")
        if not (0 < self.val_fraction < 1 and 0 <= self.test_fraction < 1 and self.val_fraction + self.test_fraction < 1):
            raise ValueError("val_fraction and test_fraction must leave a training set")


@dataclass
class SPTFTrainConfig(_RunArgs):
    data: str = ""  # site dataset directory
    surrogate: str = ""  # surrogate bundle directory
    name: str = "sptf"
    network: SPTFConfig = field(default_factory=SPTFConfig)
    lr: float = 1e-4  # paper 2.1
    batch_size: int = 32
    split_seed: int = 0

    def validate(self) -> None:
        self._validate_run()
        if not self.data or not self.surrogate:
            raise ValueError("data (site dataset) and surrogate (bundle) are required")


@dataclass
class TrainOutcome:
    run_dir: str
    bundle: str
    best_metrics: dict
    history: list
    workers: list = field(default_factory=list)  # read_workers(run_dir): where each rank trained


# ------------------------------------------------------------------------------ callback
def read_metrics(run_dir) -> list[dict]:
    uri = storage.join(run_dir, METRICS_FILE)
    if not storage.exists(uri):
        return []
    return [json.loads(line) for line in storage.read_text(uri).splitlines() if line.strip()]


def _make_metrics_callback(run_dir: str, label: str, epochs: int):
    from ray.train import UserCallback

    class MetricsCallback(UserCallback):
        """Controller side: append rank 0's metrics to <run_dir>/metrics.jsonl and print progress.

        A restarted epoch (after a worker failure) replaces the lines from that epoch on. The file's
        "epoch" is the 0-based index that checkpoints carry; the progress line counts from 1 of `epochs`.
        """

        def after_report(self, run_context, metrics, checkpoint):
            m = dict(metrics[0]) if metrics else {}
            if "epoch" not in m:
                return
            rows = [r for r in read_metrics(run_dir) if r.get("epoch", -1) < m["epoch"]]
            rows.append(m)
            storage.atomic_write_text(storage.join(run_dir, METRICS_FILE),
                                      "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))
            shown = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in sorted(m.items())
                             if k != "epoch")
            print(f"[{label}] epoch {m['epoch'] + 1}/{epochs}: {shown}", flush=True)

    return MetricsCallback()


MetricsCallback = _make_metrics_callback  # factory (ray imported lazily)


# ------------------------------------------------------------------------------ helpers in workers
def quiet_ray_console(level: str) -> None:
    """Show Ray Data's and Ray Train's per-epoch console lines in this process only at `level`
    or above (Ray Data's log file keeps them). LoggingConfig cannot: Train logs each report
    through a logger named by its file's path, outside `ray.train`."""
    import importlib.util
    import logging

    for handler in logging.getLogger("ray.data").handlers:
        if isinstance(handler, logging.StreamHandler):
            handler.setLevel(level)
    try:
        spec = importlib.util.find_spec("ray.train.v2._internal.execution.context")
    except ImportError:  # another Ray layout: its lines stay, nothing else changes
        spec = None
    if spec is not None and spec.origin:
        logging.getLogger(spec.origin).setLevel(level)


def _worker_setup(seed: int, log_level: str):
    import ray.train
    import ray.train.torch

    from sptf_ray.training.loops import seed_everything

    quiet_ray_console(log_level)
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    seed_everything(seed + rank)
    return rank, world, ray.train.torch.get_device()


def _restore(model, optimizer, device) -> int:
    import ray.train

    from sptf_ray.training.loops import CHECKPOINT_FILE, load_checkpoint

    ckpt = ray.train.get_checkpoint()
    if ckpt is None:
        return 0
    with ckpt.as_directory() as d:
        state = load_checkpoint(os.path.join(d, CHECKPOINT_FILE), model, optimizer, map_location=device)
    return int(state["epoch"]) + 1


def _record_worker(run_dir: str, rank: int, world: int, device, start_epoch: int) -> None:
    """Write where this rank trains: on a cluster the driver's host says nothing of the workers', and a
    use_gpu run has to show it ran on a GPU."""
    import torch

    from sptf_ray.provenance import host_info

    accelerator = torch.cuda.get_device_name(device) if device.type == "cuda" else None
    record = {"rank": rank, "world_size": world, "device": str(device), "accelerator": accelerator,
              "from_epoch": start_epoch, "torch": torch.__version__, **host_info()}
    storage.atomic_write_text(storage.join(run_dir, WORKERS_DIR, f"rank-{rank}.json"),
                              json.dumps(record, sort_keys=True) + "\n")


def read_workers(run_dir) -> list[dict]:
    """The rank records of a run's last attempt, by rank ([] when none were written)."""
    uri = storage.join(run_dir, WORKERS_DIR)
    if not storage.exists(uri):
        return []
    records = [json.loads(storage.read_text(f)) for f in storage.list_files(uri, ".json")]
    return sorted(records, key=lambda r: r["rank"])


def _report(metrics: dict, rank: int, model, optimizer, epoch: int) -> None:
    import ray.train

    from sptf_ray.training.loops import CHECKPOINT_FILE, save_checkpoint

    if rank == 0:
        with tempfile.TemporaryDirectory() as d:
            save_checkpoint(os.path.join(d, CHECKPOINT_FILE), model, optimizer, epoch, metrics)
            ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(d))
    else:
        ray.train.report(metrics, checkpoint=None)


# A validation score must beat the best before it by this fraction to count as progress: float
# noise between two epochs of a converged model is not.
MIN_IMPROVEMENT = 1e-6


def epochs_since_best(scores: list[float]) -> int:
    """How many epochs have passed since the validation score last improved (0: the last is the best)."""
    best, since = None, 0
    for score in scores:
        if best is None or score < best - MIN_IMPROVEMENT * abs(best):
            best, since = score, 0
        else:
            since += 1  # NaN included: never an improvement
    return since


def _scores_so_far(cfg, start: int, score: str) -> list[float]:
    """The validation scores of the epochs before `start` (a resumed run's), for early stopping."""
    if cfg.patience is None or start == 0:
        return []
    return [m[score] for m in read_metrics(cfg.run_dir) if m.get("epoch", -1) < start]


def _stalled(cfg, scores: list[float], rank: int, device) -> bool:
    """Rank 0's early-stop decision, given to every rank: they must leave the epoch loop together."""
    if cfg.patience is None:
        return False
    import torch
    import torch.distributed as dist

    stop = torch.tensor([float(epochs_since_best(scores) >= cfg.patience)], device=device)
    if dist.is_available() and dist.is_initialized():
        dist.broadcast(stop, src=0)
    if stop.item() and rank == 0:
        # To the process's own stdout: Train V2's print patch both tees and logs a plain print (twice on screen).
        print(f"[{cfg.name}] stopping after epoch {len(scores)}: no validation improvement in the last "
              f"{cfg.patience} epoch(s) (patience)", file=sys.__stdout__ or sys.stdout, flush=True)
    return bool(stop.item())


def _set_epoch_lr(optimizer, cfg, epoch: int) -> float:
    from sptf_ray.training.loops import scheduled_lr, set_lr

    lr = scheduled_lr(cfg.lr, epoch, cfg.epochs, cfg.lr_schedule, cfg.lr_final_fraction)
    set_lr(optimizer, lr)
    return lr


def _epoch_seed(seed: int, epoch: int, rank: int) -> int:
    return (seed * 1_000_003 + epoch * 1009 + rank) % 2**31


# ------------------------------------------------------------------------------ surrogate
def _surrogate_loop(config: dict) -> None:
    import ray.train
    import ray.train.torch
    import torch

    from sptf_ray.models import Surrogate
    from sptf_ray.training.loops import evaluate_surrogate, seed_everything, train_surrogate_epoch

    cfg = load_config(SurrogateTrainConfig, config["cfg"])
    rank, world, device = _worker_setup(cfg.seed, cfg.log_level)
    model = ray.train.torch.prepare_model(Surrogate(cfg.network))
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    start = _restore(model, optimizer, device)
    _record_worker(cfg.run_dir, rank, world, device, start)
    train_shard = ray.train.get_dataset_shard("train")
    val_shard = ray.train.get_dataset_shard("val")
    scores = _scores_so_far(cfg, start, "val_mse")
    for epoch in range(start, cfg.epochs):
        if _stalled(cfg, scores, rank, device):
            break
        t0 = time.time()
        lr = _set_epoch_lr(optimizer, cfg, epoch)
        seed_everything(_epoch_seed(cfg.seed, epoch, rank))
        batches = train_shard.iter_torch_batches(
            batch_size=cfg.batch_size, local_shuffle_buffer_size=cfg.shuffle_buffer or None,
            local_shuffle_seed=_epoch_seed(cfg.seed, epoch, rank) if cfg.shuffle_buffer else None)
        tr = train_surrogate_epoch(model, batches, optimizer, device, cfg.grad_clip)
        va = evaluate_surrogate(model, val_shard.iter_torch_batches(batch_size=cfg.batch_size), device)
        metrics = {"epoch": epoch, "train_loss": tr["loss"], "n_train": tr["n"] * world, "val_mse": va["mse"],
                   "val_rmse": va["rmse"], "n_val": va["n"], "lr": lr, "epoch_s": time.time() - t0}
        _report(metrics, rank, model, optimizer, epoch)
        scores.append(metrics["val_mse"])


def _shard_dataset(paths, batcher, filesystem, materialize: bool = True, preserve_order: bool = True):
    import ray.data

    ds = ray.data.read_parquet(paths, filesystem=filesystem).select_columns(
        ["sim_id", "model", "params", "precip", "pet", "lai", "swc"])
    ds = ds.map_batches(batcher, batch_format="pyarrow", zero_copy_batch=True)
    # Materializing runs here, not under the trainer's DataConfig: the order is fixed now.
    ds.context.execution_options.preserve_order = preserve_order
    ds.context.print_on_execution_start = False  # two log lines per split per epoch otherwise
    return ds.materialize() if materialize else ds


def _run_dir_state(cfg, compute_norm) -> dict:
    """Normalization computed once per run and reused on resume."""
    uri = storage.join(cfg.run_dir, NORMALIZATION_FILE)
    if storage.exists(uri):
        return json.loads(storage.read_text(uri))
    norm = compute_norm()
    storage.atomic_write_text(uri, json.dumps(norm, indent=2) + "\n")
    return norm


# Train V2's controller takes a worker's report only at its health-check poll (default every
# 2 s, the driver's value propagates to the controller): a 0.2 s SPTF epoch then took 2.2 s.
_CONTROLLER_POLL_ENV, _CONTROLLER_POLL_S = "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.2"


def _with_absolute_paths(cfg):
    """cfg with its local paths absolute: Train's controller and workers do not share the caller's
    working directory (a relative storage_path is 'URI has empty scheme' to Ray Train)."""
    paths = {k: storage.absolute(getattr(cfg, k)) for k in ("storage_path", "data", "surrogate") if getattr(cfg, k, "")}
    return dataclasses.replace(cfg, **paths)


def check_inputs(cfg: "SurrogateTrainConfig | SPTFTrainConfig") -> None:
    """The run's inputs are there: checked before Ray starts, and before Tune launches trials
    that would each fail on the same missing path."""
    if isinstance(cfg, SurrogateTrainConfig):
        from sptf_ray.training.data import shard_paths

        shard_paths(cfg.data, verify=False)  # the run verifies the manifest itself
        return
    from sptf_ray.data.validate import require_site_dataset
    from sptf_ray.training.bundle import require_bundle

    require_site_dataset(cfg.data)
    require_bundle(cfg.surrogate, "surrogate")


def check_cluster_fits(scaling: ScalingArgs) -> None:
    """Refuse at once the workers a local Ray instance cannot hold: Train V2 retries an
    unschedulable worker group without end, waiting for an autoscaler. Without Ray yet it
    starts the instance Train would (with the dashboard Train V2 needs), or joins RAY_ADDRESS."""
    from sptf_ray.jobs_common import check_resources, connect_ray

    connect_ray(None, include_dashboard=True)

    per_worker = {"CPU": scaling.cpus_per_worker, **({"GPU": scaling.gpus_per_worker} if scaling.use_gpu else {})}
    hint = " (drop --use-gpu on a machine without one)" if scaling.use_gpu else ""
    check_resources(per_worker, scaling.num_workers, "training workers",
                    f": lower scaling.num_workers or the per-worker resources, or join a bigger cluster "
                    f"with --address{hint}")


def _fit(trainer_factory, cfg, score: str):
    os.environ.setdefault(_CONTROLLER_POLL_ENV, _CONTROLLER_POLL_S)  # a user's own setting wins
    storage.remove(storage.join(cfg.run_dir, WORKERS_DIR))  # an earlier attempt's ranks may not recur
    result = trainer_factory().fit()
    if result.error:
        raise StageFailed(f"training run {cfg.run_dir} failed: {result.error}")
    best = [(c, m) for c, m in (result.best_checkpoints or []) if score in m]
    if not best:
        raise StageFailed(f"training run {cfg.run_dir} produced no checkpoint")
    ckpt, metrics = min(best, key=lambda cm: cm[1][score])
    return ckpt, dict(metrics)


def _finish_run(cfg, bundle: str, best: dict) -> TrainOutcome:
    """The outcome of a finished run, its learning curve drawn beside its metrics."""
    from sptf_ray.plotting import learning_curves_figure

    history = read_metrics(cfg.run_dir)
    png = learning_curves_figure({cfg.name: history})
    if png is not None:
        storage.atomic_write_bytes(storage.join(cfg.run_dir, LEARNING_CURVE_FILE), png)
    return TrainOutcome(cfg.run_dir, bundle, best, history, read_workers(cfg.run_dir))


def _load_ckpt_model(model, ckpt):
    from sptf_ray.training.loops import CHECKPOINT_FILE, load_checkpoint

    with ckpt.as_directory() as d:
        load_checkpoint(os.path.join(d, CHECKPOINT_FILE), model, restore_rng=False)
    return model


def train_surrogate(config, callbacks=None) -> TrainOutcome:
    """Fit the surrogate with Ray Train on the shards; bundle the best-on-validation checkpoint."""
    import ray.train
    from ray.data import ExecutionOptions
    from ray.train.torch import TorchTrainer

    from sptf_ray.models import Surrogate
    from sptf_ray.training.bundle import write_bundle
    from sptf_ray.training.data import SurrogateBatcher, fit_forcing_normalizer, shard_paths

    cfg = _with_absolute_paths(load_config(SurrogateTrainConfig, config))
    check_cluster_fits(cfg.scaling)  # before any data is read or written
    quiet_ray_console(cfg.log_level)
    paths = shard_paths(cfg.data)
    _require_validation_sims(cfg, paths)
    storage.makedirs(cfg.run_dir)
    save_config(cfg, storage.join(cfg.run_dir, CONFIG_FILE))
    norms = _run_dir_state(cfg, lambda: {"forcing": config_to_dict(
        fit_forcing_normalizer(paths, cfg.network.model, cfg.seed, cfg.stats_max_shards))})
    forcing_norm = load_config(Normalizer, norms["forcing"])
    fs, _ = storage.resolve(paths[0])
    local = [storage.resolve(p)[1] for p in paths]

    def batcher(split):
        return SurrogateBatcher(cfg.network.model, forcing_norm, split, cfg.seed, cfg.seq_len, cfg.val_fraction,
                                cfg.test_fraction)

    def factory():
        datasets = {split: _shard_dataset(local, batcher(split), fs, cfg.materialize, cfg.preserve_order)
                    for split in ("train", "val")}
        return TorchTrainer(
            _surrogate_loop,
            train_loop_config={"cfg": config_to_dict(cfg)},
            scaling_config=cfg.scaling.to_ray(),
            datasets=datasets,
            dataset_config=ray.train.DataConfig(
                datasets_to_split=["train"],
                execution_options=ExecutionOptions(preserve_order=cfg.preserve_order)),
            run_config=_run_config(cfg, "val_mse", cfg.name, callbacks),
        )

    ckpt, best = _fit(factory, cfg, "val_mse")
    model = _load_ckpt_model(Surrogate(cfg.network), ckpt)
    bundle = storage.join(cfg.run_dir, "bundle")
    workers = read_workers(cfg.run_dir)
    write_bundle(bundle, "surrogate", model, {"forcing": forcing_norm}, config_to_dict(cfg), best, trained_on=workers)
    return _finish_run(cfg, bundle, best)


def _require_validation_sims(cfg, paths) -> None:
    """The best checkpoint is chosen on validation MSE: without validation simulations there is none."""
    from sptf_ray.training.data import count_split

    n_val = count_split(paths, cfg.network.model, "val", cfg.seed, cfg.val_fraction, cfg.test_fraction)
    if n_val == 0:
        raise ValueError(f"surrogate dataset {cfg.data}: no {cfg.network.model} simulation falls in the validation "
                         f"split (val_fraction={cfg.val_fraction}); build more simulations or raise val_fraction")


def _run_config(cfg, score: str, label: str, callbacks=None):
    import ray.train

    return ray.train.RunConfig(
        name=cfg.name,
        storage_path=cfg.storage_path,
        failure_config=ray.train.FailureConfig(max_failures=cfg.max_failures),
        checkpoint_config=ray.train.CheckpointConfig(num_to_keep=cfg.num_to_keep, checkpoint_score_attribute=score,
                                                     checkpoint_score_order="min"),
        callbacks=[_make_metrics_callback(cfg.run_dir, label, cfg.epochs)] + list(callbacks or []),
        logging_config=ray.train.LoggingConfig(log_level=cfg.log_level),
    )


# ------------------------------------------------------------------------------ SPTF
def _sptf_loop(config: dict) -> None:
    import ray.train
    import ray.train.torch
    import torch

    from sptf_ray.models import SPTF
    from sptf_ray.training.bundle import load_bundle
    from sptf_ray.training.data import iterate_batches
    from sptf_ray.training.loops import SPTFContext, evaluate_sptf, seed_everything, train_sptf_epoch

    cfg = load_config(SPTFTrainConfig, config["cfg"])
    rank, world, device = _worker_setup(cfg.seed, cfg.log_level)
    sur = load_bundle(cfg.surrogate, map_location=device)
    norms = {k: load_config(Normalizer, v) for k, v in config["norms"].items()}
    ctx = SPTFContext(sur.model, cfg.network.model, norms["daily"], norms["static"], sur.normalization["forcing"])
    model = ray.train.torch.prepare_model(SPTF(cfg.network))
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    start = _restore(model, optimizer, device)
    _record_worker(cfg.run_dir, rank, world, device, start)
    train, val = config["train"], config["val"]
    n = len(train["static"])
    scores = _scores_so_far(cfg, start, "val_loss")
    for epoch in range(start, cfg.epochs):
        if _stalled(cfg, scores, rank, device):
            break
        t0 = time.time()
        lr = _set_epoch_lr(optimizer, cfg, epoch)
        seed = _epoch_seed(cfg.seed, epoch, 0)
        seed_everything(_epoch_seed(cfg.seed, epoch, rank))
        # every rank gets the same number of samples (DDP needs equal batch counts)
        order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).numpy()[: (n // world) * world]
        mine = {k: v[order[rank::world]] for k, v in train.items()}
        tr = train_sptf_epoch(model, ctx, iterate_batches(mine, cfg.batch_size), optimizer, device, cfg.grad_clip)
        va = evaluate_sptf(model, ctx, iterate_batches(val, cfg.batch_size), device)
        metrics = {"epoch": epoch, "train_loss": tr["loss"], "n_train": tr["n"] * world, "val_loss": va["loss"],
                   "val_rmse": va["rmse"], "n_val": va["n"], "lr": lr, "epoch_s": time.time() - t0}
        _report(metrics, rank, model, optimizer, epoch)
        scores.append(metrics["val_loss"])


def train_sptf(config, callbacks=None) -> TrainOutcome:
    """Fit the SPTF through the frozen surrogate; bundle (with its surrogate) the best-on-validation checkpoint."""
    from ray.train.torch import TorchTrainer

    from sptf_ray.models import SPTF
    from sptf_ray.training.bundle import load_bundle, write_bundle
    from sptf_ray.training.data import build_sptf_arrays, fit_sptf_normalizers, load_site_samples

    cfg = _with_absolute_paths(load_config(SPTFTrainConfig, config))
    check_cluster_fits(cfg.scaling)  # before any data is read or written
    sur = load_bundle(cfg.surrogate)
    if sur.kind != "surrogate":
        raise ValueError(f"{cfg.surrogate} is a {sur.kind!r} bundle, not a surrogate")
    if sur.network_config.model != cfg.network.model:
        raise ValueError(f"the surrogate emulates {sur.network_config.model!r} but the SPTF is set for "
                         f"{cfg.network.model!r}")
    static, daily, samples = load_site_samples(cfg.data, cfg.split_seed)
    arrays = build_sptf_arrays(static, daily, samples)
    for key, why in arrays.rejected.items():
        print(f"[sptf] rejected {key}: {why}", flush=True)
    split = samples.set_index(["site_id", "hist_year"])["split"]
    labels = np.array([split.get((s, y), "") for s, y in zip(arrays.site_id, arrays.hist_year)])
    train, val = arrays.subset(labels == "train"), arrays.subset(labels == "val")
    if len(train) == 0 or len(val) == 0:
        raise ValueError(f"need training and validation samples, got {len(train)} and {len(val)}")
    storage.makedirs(cfg.run_dir)
    save_config(cfg, storage.join(cfg.run_dir, CONFIG_FILE))

    def compute():
        d, s = fit_sptf_normalizers(train)
        return {"daily": config_to_dict(d), "static": config_to_dict(s)}

    norms = _run_dir_state(cfg, compute)

    def factory():
        return TorchTrainer(
            _sptf_loop,
            train_loop_config={"cfg": config_to_dict(cfg), "norms": norms, "train": train.tensors(),
                               "val": val.tensors()},
            scaling_config=cfg.scaling.to_ray(),
            run_config=_run_config(cfg, "val_loss", cfg.name, callbacks),
        )

    ckpt, best = _fit(factory, cfg, "val_loss")
    model = _load_ckpt_model(SPTF(cfg.network), ckpt)
    bundle = storage.join(cfg.run_dir, "bundle")
    normalization = {k: load_config(Normalizer, v) for k, v in norms.items()}
    workers = read_workers(cfg.run_dir)
    write_bundle(bundle, "sptf", model, normalization, config_to_dict(cfg), best, surrogate_uri=cfg.surrogate,
                 trained_on=workers)
    return _finish_run(cfg, bundle, best)
