"""`build-dataset`: the surrogate's training set as Parquet shards, one Ray task per shard.

Layout under the output URI (local path or any pyarrow filesystem, e.g. s3://):

- `shard-00000.parquet` ...  one per shard, zstd, schema `SCHEMA` (rows = simulations that
  succeeded, ordered by sim_id = shard * per_shard + row);
- `shard-00000.json` ...     the shard's sidecar: rows, size, sha256, failed simulations
  (sim_id + solver message), the content hash of the config that produced it, and the host
  (node, CPU, ISA) whose numba build simulated it;
- `config.yaml`              the resolved DatasetConfig;
- `manifest.json`            written last: config, content hash, counts, failures, and the size
  and sha256 of every file above. The dataset is complete only when it verifies.

Shard i depends only on the content fields of the config and i (see sampling.py), so a re-run
skips every shard whose Parquet file is readable, has the recorded row count and matches the
checksum in its sidecar, and rebuilds the others; Ray retries a shard whose worker died.
"""
from __future__ import annotations

import hashlib
import json
import sys
import time
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import pyarrow as pa

from sptf_ray import storage
from sptf_ray.config import config_to_dict, load_config, save_config
from sptf_ray.dataset import sampling
from sptf_ray.errors import StageFailed
from sptf_ray.provenance import host_info

FORMAT_VERSION = 1
CONFIG_FILE = "config.yaml"
N_PARAMS = 6

SCHEMA = pa.schema([
    pa.field("sim_id", pa.int64(), nullable=False),
    pa.field("model", pa.string(), nullable=False),
    pa.field("params", pa.list_(pa.float32(), N_PARAMS), nullable=False),  # Table 1 order of `model`
    pa.field("precip", pa.list_(pa.float32())),  # cm/d, length T
    pa.field("pet", pa.list_(pa.float32())),  # cm/d
    pa.field("lai", pa.list_(pa.float32())),  # m2/m2
    pa.field("swc", pa.list_(pa.float32())),  # cm3/cm3 at 5 cm, end of each day
    pa.field("balance_error", pa.float32()),  # signed relative mass-balance error (DESIGN section 0)
    pa.field("forcing_source", pa.string()),  # "weather" or "site"
])


@dataclass(frozen=True)
class DatasetConfig:
    """Everything that determines a surrogate dataset (saved beside it as config.yaml).

    Content fields (shard contents depend on them): seed, per_shard, model, days, sites (through
    the checksum of its daily.parquet), site_fraction. `shards` only says how many shards to
    build: shard i is the same for any `shards`; cpus_per_task and max_retries are execution.
    """

    shards: int = 4
    per_shard: int = 256
    model: str = "both"  # "vgm", "fxw" or "both" (each shard split evenly between the two)
    days: int = 365  # sequence length; the paper's set uses 1,095
    seed: int = 0
    sites: Optional[str] = None  # site dataset dir (daily.parquet) for real forcings
    site_fraction: float = 0.5  # share of rows forced by real site-years when `sites` is set
    cpus_per_task: float = 1.0
    max_retries: int = 3  # Ray retries of a shard whose worker died (or hit an I/O error)

    def validate(self) -> None:
        sampling.models_for(self.model)
        if self.shards < 1 or self.per_shard < 1 or self.days < 1:
            raise ValueError(f"shards, per_shard and days must be >= 1 (got {self.shards}, "
                             f"{self.per_shard}, {self.days})")
        if not 0.0 <= self.site_fraction <= 1.0:
            raise ValueError(f"site_fraction must lie in [0, 1], got {self.site_fraction}")
        if self.cpus_per_task <= 0 or self.max_retries < 0:
            raise ValueError("cpus_per_task must be > 0 and max_retries >= 0")
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")


@dataclass
class BuildResult:
    out: str
    actions: list  # per shard: "built", "rebuilt" or "skipped"
    shards: list  # per-shard summaries (sidecar contents + action)
    manifest: dict
    seconds: float
    simulated: int  # simulations run by this call (0 when everything was skipped)
    failed: list = field(default_factory=list)  # [{"sim_id", "message"}] over the whole dataset


def shard_name(i: int) -> str:
    return f"shard-{i:05d}.parquet"


def sidecar_name(i: int) -> str:
    return f"shard-{i:05d}.json"


def content_spec(config: DatasetConfig, sites_sha256: str | None) -> dict:
    """The fields shard contents depend on (hashed into every sidecar and the manifest)."""
    from sptf_ray.physics import bulk_config

    use_sites = config.sites is not None and config.site_fraction > 0
    return {
        "format": FORMAT_VERSION,
        "seed": config.seed,
        "per_shard": config.per_shard,
        "model": config.model,
        "days": config.days,
        "site_fraction": config.site_fraction if use_sites else 0.0,
        "sites_daily_sha256": sites_sha256 if use_sites else None,
        "solver": config_to_dict(bulk_config()),
    }


def content_hash(spec: dict) -> str:
    canonical = json.dumps(spec, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


# --------------------------------------------------------------------------- one shard
def shard_table(inputs: sampling.ShardInputs, keep: np.ndarray, swc: np.ndarray,
                balance_error: np.ndarray) -> pa.Table:
    """The Arrow table of the rows `keep` (bool mask) of a shard."""
    n = int(keep.sum())
    n_days = inputs.precip.shape[1]

    def seq(a):
        flat = pa.array(np.ascontiguousarray(a[keep], dtype=np.float32).ravel())
        offsets = pa.array(np.arange(0, (n + 1) * n_days, n_days, dtype=np.int32)[: n + 1])
        return pa.ListArray.from_arrays(offsets, flat)

    params = pa.FixedSizeListArray.from_arrays(
        pa.array(np.ascontiguousarray(inputs.params[keep], dtype=np.float32).ravel()), N_PARAMS)
    arrays = [
        pa.array(inputs.sim_id[keep], pa.int64()),
        pa.array(inputs.model[keep].tolist(), pa.string()),
        params,
        seq(inputs.precip), seq(inputs.pet), seq(inputs.lai), seq(swc),
        pa.array(np.asarray(balance_error[keep], dtype=np.float32)),
        pa.array(inputs.forcing_source[keep].tolist(), pa.string()),
    ]
    return pa.Table.from_arrays(arrays, schema=SCHEMA)


def simulate_shard(inputs: sampling.ShardInputs):
    """Run the solver on every row; returns (swc, balance_error, ok, failures)."""
    from sptf_ray.physics import bulk_config, simulate

    n, n_days = inputs.precip.shape
    swc = np.full((n, n_days), np.nan)
    balance = np.full(n, np.nan)
    ok = np.zeros(n, dtype=bool)
    failures = []
    for model in dict.fromkeys(inputs.model.tolist()):
        idx = np.flatnonzero(inputs.model == model)
        result = simulate(model, inputs.params[idx], inputs.precip[idx], inputs.pet[idx], inputs.lai[idx],
                          config=bulk_config(), raise_on_failure=False)
        good = np.asarray(result.ok) & np.isfinite(result.swc).all(axis=1) & np.isfinite(result.balance_error)
        swc[idx], balance[idx], ok[idx] = result.swc, result.balance_error, good
        messages = {}
        for line in result.messages:  # "simulation {b}: ..."
            head, _, rest = line.partition(":")
            try:
                messages[int(head.split()[-1])] = rest.strip()
            except ValueError:
                continue
        for b in np.flatnonzero(~good):
            failures.append({"sim_id": int(inputs.sim_id[idx[b]]), "model": model,
                             "message": messages.get(int(b), "non-finite SWC or balance error")})
    failures.sort(key=lambda f: f["sim_id"])
    return swc, balance, ok, failures


def check_shard(out: str, i: int, expected_hash: str) -> dict | None:
    """The sidecar of shard i if the shard is complete and valid for `expected_hash`, else None.

    Valid: the sidecar parses, names this shard and content hash, and the Parquet file has its
    recorded size and sha256, is readable, has the schema and the recorded row count.
    """
    import pyarrow.parquet as pq

    try:
        meta = json.loads(storage.read_text(storage.join(out, sidecar_name(i))))
        if meta.get("shard") != i or meta.get("content_hash") != expected_hash:
            return None
        uri = storage.join(out, shard_name(i))
        size, sha = storage.file_sha256(uri)
        if size != meta.get("size") or sha != meta.get("sha256"):
            return None
        fs, path = storage.resolve(uri)
        with fs.open_input_file(path) as f:
            pf = pq.ParquetFile(f)
            if pf.metadata.num_rows != meta.get("rows") or not pf.schema_arrow.equals(SCHEMA):
                return None
    except (FileNotFoundError, ValueError, KeyError, OSError, TypeError):
        return None
    return meta


def build_shard(config: DatasetConfig, i: int, out: str, chash: str, pool=None) -> dict:
    """Build shard i unless a valid copy exists; returns its sidecar plus "action"."""
    config = load_config(DatasetConfig, config)
    meta = check_shard(out, i, chash)
    if meta is not None:
        return {**meta, "action": "skipped"}
    uri, side_uri = storage.join(out, shard_name(i)), storage.join(out, sidecar_name(i))
    action = "rebuilt" if storage.exists(uri) or storage.exists(side_uri) else "built"
    t0 = time.perf_counter()
    inputs = sampling.shard_inputs(
        i, seed=config.seed, per_shard=config.per_shard, model=config.model, days=config.days,
        site_fraction=config.site_fraction if pool is not None else 0.0, pool=pool)
    swc, balance, ok, failures = simulate_shard(inputs)
    storage.atomic_write_parquet(shard_table(inputs, ok, swc, balance), uri, compression="zstd")
    size, sha = storage.file_sha256(uri)
    meta = {
        "shard": i, "rows": int(ok.sum()), "simulations": int(len(ok)), "failed": failures,
        "size": size, "sha256": sha, "content_hash": chash,
        "seconds": round(time.perf_counter() - t0, 3),
        "host": host_info(),  # numba compiled the solver for this CPU: shards from two kinds may differ
    }
    storage.atomic_write_text(side_uri, json.dumps(meta, indent=1, sort_keys=True) + "\n")
    return {**meta, "action": action}


def _shard_task(config_dict: dict, i: int, out: str, chash: str, pool) -> dict:
    """Ray task body: numba gets the task's CPUs (Ray sets OMP threads, not numba's)."""
    import numba
    import ray

    cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 1.0)
    numba.set_num_threads(max(1, min(int(round(cpus)) or 1, numba.config.NUMBA_NUM_THREADS)))
    return build_shard(config_dict, i, out, chash, pool)


# --------------------------------------------------------------------------- progress
class Progress:
    """One plain line per finished shard (throttled), fit for terminals and `ray job submit` logs."""

    def __init__(self, n_shards: int, per_shard: int, stream=None, enabled: bool = True, every_s: float = 1.0):
        self.n_shards, self.per_shard = n_shards, per_shard
        self.stream = stream or sys.stdout
        self.enabled, self.every_s = enabled, every_s
        self.t0 = time.perf_counter()
        self.done = self.skipped = self.simulated = 0
        self._last = -1e9

    def update(self, summary: dict) -> None:
        self.done += 1
        if summary["action"] == "skipped":
            self.skipped += 1
        else:
            self.simulated += summary["simulations"]
        now = time.perf_counter()
        if not self.enabled or (now - self._last < self.every_s and self.done < self.n_shards):
            return
        self._last = now
        elapsed = now - self.t0
        rate = self.simulated / elapsed if elapsed > 0 else 0.0
        remaining = (self.n_shards - self.done) * self.per_shard
        eta = _fmt_s(remaining / rate) if rate > 0 else ("0s" if remaining == 0 else "?")
        print(f"build-dataset: shards {self.done}/{self.n_shards} ({self.skipped} skipped) | "
              f"sims {self.done * self.per_shard}/{self.n_shards * self.per_shard} "
              f"({self.simulated} simulated) | {rate:.1f} sims/s | elapsed {_fmt_s(elapsed)} | ETA {eta}",
              file=self.stream, flush=True)


def _fmt_s(s: float) -> str:
    s = int(round(s))
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}h{m:02d}m{sec:02d}s" if h else (f"{m}m{sec:02d}s" if m else f"{sec}s")


# --------------------------------------------------------------------------- driver
def _use_ray(executor: str) -> bool:
    if executor not in ("auto", "ray", "local"):
        raise ValueError(f"executor must be 'auto', 'ray' or 'local', got {executor!r}")
    if executor != "auto":
        return executor == "ray"
    ray = sys.modules.get("ray")  # never import Ray just to learn it is not running
    return bool(ray is not None and ray.is_initialized())


def build_dataset(config, out: str, *, executor: str = "auto", overwrite: bool = False,
                  progress: bool = True, stream=None) -> BuildResult:
    """Build (or complete) the dataset described by `config` under `out`.

    executor: "ray" (one task per shard on the initialized Ray; the caller connects),
    "local" (in this process, numba over all cores), "auto" (Ray when initialized).
    A directory holding a dataset of different content raises ValueError unless `overwrite`.
    """
    config = load_config(DatasetConfig, config)
    out = str(out)
    t0 = time.perf_counter()
    pool, sites_sha = None, None
    if config.sites is not None and config.site_fraction > 0:
        from sptf_ray.data import schema

        pool = sampling.load_site_pool(config.sites)
        sites_sha = storage.file_sha256(storage.join(config.sites, schema.DAILY_FILE))[1]
    spec = content_spec(config, sites_sha)
    chash = content_hash(spec)
    _check_existing(out, chash, overwrite)
    storage.makedirs(out)
    save_config(config, storage.join(out, CONFIG_FILE))

    bar = Progress(config.shards, config.per_shard, stream=stream, enabled=progress)
    summaries: dict[int, dict] = {}
    errors: dict[int, str] = {}
    if _use_ray(executor):
        _run_ray(config, out, chash, pool, summaries, errors, bar)
    else:
        for i in range(config.shards):
            summaries[i] = build_shard(config, i, out, chash, pool)
            bar.update(summaries[i])
    if errors:
        raise StageFailed(f"build-dataset: {len(errors)} shard(s) failed (re-run to resume): "
                           + "; ".join(f"shard {i}: {e}" for i, e in sorted(errors.items())))

    shards = [summaries[i] for i in range(config.shards)]
    failed = [f for s in shards for f in s["failed"]]
    files = [CONFIG_FILE] + [n for i in range(config.shards) for n in (shard_name(i), sidecar_name(i))]
    simulated = sum(s["simulations"] for s in shards if s["action"] != "skipped")
    seconds = time.perf_counter() - t0
    extra = {
        "kind": "sptf-surrogate-dataset",
        "config": config_to_dict(config),
        "content": spec,
        "content_hash": chash,
        "schema": SCHEMA.to_string(show_schema_metadata=False),
        "counts": {"shards": config.shards, "simulations": config.shards * config.per_shard,
                   "rows": sum(s["rows"] for s in shards), "failed": len(failed)},
        "shard_rows": {shard_name(s["shard"]): s["rows"] for s in shards},
        "failed": failed,
        "last_build": {"seconds": round(seconds, 3), "simulated": simulated,
                       "actions": {a: sum(s["action"] == a for s in shards) for a in ("built", "rebuilt", "skipped")}},
    }
    manifest = storage.write_manifest(out, files, extra)
    return BuildResult(out=out, actions=[s["action"] for s in shards], shards=shards, manifest=manifest,
                       seconds=seconds, simulated=simulated, failed=failed)


def _check_existing(out: str, chash: str, overwrite: bool) -> None:
    try:
        manifest = storage.read_manifest(out)
    except (FileNotFoundError, ValueError):
        return
    old = manifest.get("extra", {}).get("content_hash")
    if old is not None and old != chash and not overwrite:
        raise ValueError(f"{out} holds a dataset of different content (hash {old[:12]}, this config "
                         f"{chash[:12]}): choose another --out or pass --overwrite")


def _run_ray(config, out, chash, pool, summaries, errors, bar) -> None:
    import ray

    from sptf_ray.jobs_common import check_resources

    check_resources({"CPU": config.cpus_per_task}, 1, "dataset tasks", ": lower cpus_per_task")
    task = ray.remote(_shard_task).options(
        num_cpus=config.cpus_per_task, max_retries=config.max_retries, retry_exceptions=[OSError],
        name="sptf_build_shard")
    pool_ref = ray.put(pool) if pool is not None else None
    cfg = config_to_dict(config)
    refs = {task.remote(cfg, i, out, chash, pool_ref): i for i in range(config.shards)}
    pending = list(refs)
    while pending:
        ready, pending = ray.wait(pending, num_returns=1)
        i = refs[ready[0]]
        try:
            summaries[i] = ray.get(ready[0])
        except Exception as exc:  # a shard that failed after its retries: report, keep going
            errors[i] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            continue
        bar.update(summaries[i])


def load_dataset(out: str, verify: bool = True):
    """The shards of a complete dataset as one pyarrow Table (checks the manifest first)."""
    import pyarrow.parquet as pq

    if verify and not storage.verify_manifest(out):
        raise ValueError(f"{out}: no verifying manifest (incomplete or modified dataset)")
    manifest = storage.read_manifest(out)
    tables = []
    for name in sorted(n for n in manifest["files"] if n.endswith(".parquet")):
        fs, path = storage.resolve(storage.join(out, name))
        with fs.open_input_file(path) as f:
            tables.append(pq.read_table(f))
    return pa.concat_tables(tables) if tables else SCHEMA.empty_table()


__all__ = ["DatasetConfig", "BuildResult", "SCHEMA", "build_dataset", "build_shard", "check_shard",
           "load_dataset", "shard_name", "sidecar_name", "content_spec", "content_hash"]
