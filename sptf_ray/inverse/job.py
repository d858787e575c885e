"""`invert` stage: SCE-UA inversion of many sites, spread over Ray actors, resumable.

Layout under ``out`` (any storage URI):

- ``config.yaml``: the resolved `InvertConfig` (written first; a re-run into the same ``out``
  must match it in every setting that changes results, else it refuses);
- ``sites/<site>.parquet``: one small result file per site, written atomically by whoever
  inverted it, with the host and a digest of the site data it read in its Parquet metadata; a
  site with a file from the same data is done and is skipped on a re-run (resume), one whose
  data has changed since is inverted again;
- ``inversion.parquet``: all selected sites' rows, written at the end, with ``hosts.json`` (per
  site, the host that inverted it: node, CPU, ISA, from each site file's Parquet metadata; null
  for files written before it was recorded), then ``manifest.json`` (its ``left_out_years``: per
  site, each year that cannot be inverted and why, the site's other year pairs inverted; its
  ``qc_rejected_sites``: selected sites QC rejected, and why).

The data are read through QC (`data.validate.validate_sites`), as training and predict read
them: short SWC gaps are interpolated, years and sites QC rejects are left out and named (a site
named in ``sites`` that QC rejects is an error).

With ``ray.enabled`` the sites go to a pool of actors (``num_actors`` x ``cpus_per_actor``), each
holding its forward model with ``numba.set_num_threads(cpus_per_actor)``, in tasks of
``sites_per_batch`` sites inverted in lockstep (one forward call per model and SCE-UA round for
all of them). An actor that dies is restarted (``max_restarts``) and its batch retried
(``max_task_retries``). Without Ray the same batch function runs in a loop in this process.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import re
import sys
import time
import zlib
from dataclasses import dataclass, field
from typing import Callable, Literal, Optional

import numpy as np
import pandas as pd

from sptf_ray import storage
from sptf_ray.config import config_hash, config_to_dict, load_config, save_config
from sptf_ray.errors import StageFailed
from sptf_ray.inverse.site import (MODES, SCEUASettings, SimulationsFailed, SiteYear, invert_sites, make_forward,
                                   all_site_years, results_frame, validate_site)
from sptf_ray.physics.parameters import MODELS, check_model
from sptf_ray.provenance import host_info

CONFIG_FILE = "config.yaml"
SITES_DIR = "sites"
RESULTS_FILE = "inversion.parquet"
HOSTS_FILE = "hosts.json"
HOST_KEY = "sptf_ray.host"  # Parquet metadata key of a site file: the host that inverted it
DATA_KEY = "sptf_ray.data_sha256"  # ... and the digest of the site data it was inverted from


@dataclass
class RayOptions:
    enabled: bool = True
    address: Optional[str] = None  # None: an already-initialised Ray, else a new local instance
    num_actors: int = 0  # 0: as many as the cluster's CPUs allow
    cpus_per_actor: float = 1.0
    max_restarts: int = 3
    max_task_retries: int = 3

    def validate(self) -> None:
        if self.num_actors < 0:
            raise ValueError("ray.num_actors must be >= 0 (0 = fill the cluster)")
        if not self.cpus_per_actor > 0:
            raise ValueError("ray.cpus_per_actor must be > 0")
        if self.max_restarts < 0 or self.max_task_retries < 0:
            raise ValueError("ray.max_restarts and ray.max_task_retries must be >= 0")


@dataclass
class InvertConfig:
    """Everything `sptf invert` / `jobs/invert.py` needs."""

    data: str  # site dataset dir (sites.parquet + daily.parquet)
    out: str  # results dir (URI)
    models: list[str] = field(default_factory=lambda: list(MODELS))
    modes: list[str] = field(default_factory=lambda: ["historical"])  # and/or "same_year"
    split: Optional[str] = None  # "train" | "val" | "test": sites of that split (splits.parquet in data)
    sites: Optional[list[str]] = None  # explicit site ids (intersected with split, if both given)
    max_sites: Optional[int] = None  # the first N selected sites (sorted), for small runs
    samples: Literal["all", "last"] = "all"  # year pairs per site
    forward: str = "solver"  # or a surrogate bundle URI (issue 6)
    min_valid_days: int = 30  # unfrozen days needed in a year
    sceua: SCEUASettings = field(default_factory=SCEUASettings)
    # Sites inverted together (one actor task): every round of their SCE-UA searches goes through
    # one forward call per model. Results do not depend on it; a surrogate runs much faster with
    # bigger batches, while a bigger group means coarser progress and more work redone on a failure.
    sites_per_batch: int = 1
    ray: RayOptions = field(default_factory=RayOptions)
    progress: bool = True

    def validate(self) -> None:
        if not self.data or not self.out:
            raise ValueError("data and out must be given")
        if not self.models:
            raise ValueError("models is empty: give 'vgm' and/or 'fxw'")
        self.models = [check_model(m) for m in self.models]
        if len(set(self.models)) != len(self.models):
            raise ValueError(f"models has duplicates: {self.models}")
        bad = [m for m in self.modes if m not in MODES]
        if bad or not self.modes:
            raise ValueError(f"modes must be a non-empty subset of {MODES}, got {self.modes}")
        if self.split is not None and self.split not in ("train", "val", "test"):
            raise ValueError(f"split must be train, val or test, got {self.split!r}")
        if self.max_sites is not None and self.max_sites < 1:
            raise ValueError("max_sites must be >= 1")
        if self.min_valid_days < 1:
            raise ValueError("min_valid_days must be >= 1")
        if self.sites_per_batch < 1:
            raise ValueError("sites_per_batch must be >= 1")

    def result_key(self) -> dict:
        """The settings a finished site's results depend on (resume must match them)."""
        d = config_to_dict(self)
        return {k: d[k] for k in ("models", "modes", "samples", "forward", "min_valid_days", "sceua")}


def site_file(out: str, site_id: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", str(site_id))[:80]
    return storage.join(out, SITES_DIR, f"{safe}-{zlib.crc32(str(site_id).encode()):08x}.parquet")


# --------------------------------------------------------------------------- per-site work
def _payload(years: dict[int, SiteYear]) -> dict:
    return {y: {k: getattr(s, k) for k in ("swc", "precip", "pet", "lai", "lst_c")} for y, s in years.items()}


def payload_digest(payload: dict) -> str:
    """sha256 of what a site's inversion reads (every year's arrays as float64), so a resumed run
    can tell a finished site whose data has since changed from one it may keep."""
    digest = hashlib.sha256()
    for year in sorted(payload, key=int):
        digest.update(str(int(year)).encode())
        for key in ("swc", "precip", "pet", "lai", "lst_c"):
            digest.update(key.encode())
            digest.update(np.ascontiguousarray(payload[year][key], dtype=np.float64).tobytes())
    return digest.hexdigest()


def _unpayload(site_id: str, payload: dict) -> dict[int, SiteYear]:
    return {int(y): SiteYear(site_id, int(y), **arrays) for y, arrays in payload.items()}


def invert_site_batch(config: InvertConfig, forward, payloads: dict[str, dict]) -> list[dict]:
    """Invert sites {site_id: payload} in lockstep, write each one's result file atomically;
    returns one small summary per site (`seconds`: its share of the batch's wall time)."""
    t0 = time.perf_counter()
    sites = {sid: _unpayload(sid, payload) for sid, payload in payloads.items()}
    failure = None
    try:
        table = invert_sites(sites, forward, models=config.models, modes=config.modes, samples=config.samples,
                             settings=config.sceua, min_valid_days=config.min_valid_days)
    except SimulationsFailed as exc:  # keep the sites that did run; a site file is only ever complete
        failure = exc
        table = results_frame([r.to_row() for r in exc.results if r is not None])
    seconds = (time.perf_counter() - t0) / len(sites)
    host = json.dumps(host_info(), sort_keys=True)
    summaries = []
    for sid in sites:
        if failure is not None and sid in failure.failed_sites:
            continue
        df = table[table["site_id"] == sid].reset_index(drop=True)
        metadata = {HOST_KEY: host, DATA_KEY: payload_digest(payloads[sid])}
        storage.atomic_write_parquet(df, site_file(config.out, sid), metadata=metadata)
        summaries.append({"site_id": sid, "rows": len(df), "seconds": seconds, "pid": os.getpid(),
                          "failed_simulations": int(df["failed_simulations"].sum())})
    if failure is not None:
        raise BatchFailed(str(failure), summaries)
    return summaries


class BatchFailed(RuntimeError):
    """Some sites of a batch failed; `summaries` are the batch's sites that finished (files written)."""

    def __init__(self, message: str, summaries: list[dict]):
        super().__init__(message)
        self.summaries = summaries

    def __reduce__(self):  # crosses the Ray boundary with its summaries
        return (BatchFailed, (str(self), self.summaries))


class InversionWorker:
    """Actor body: holds the forward model; numba threads = the actor's CPUs."""

    def __init__(self, config: dict, num_threads: int):
        self.config = load_config(InvertConfig, config)
        self.forward = make_forward(self.config.forward, num_threads=num_threads)

    def pid(self) -> int:
        return os.getpid()

    def invert(self, payloads: dict[str, dict]) -> list[dict]:
        return invert_site_batch(self.config, self.forward, payloads)


# --------------------------------------------------------------------------- selection
def select_sites(config: InvertConfig, static: pd.DataFrame,
                 qc_rejected: dict[str, str] | None = None) -> tuple[list[str], dict[str, str]]:
    """The sites to invert, and {site: why} for the selected ones QC rejected (left out). A site
    named in `sites` that QC rejected is an error: the user asked for it by name."""
    qc_rejected = qc_rejected or {}
    ids = sorted(set(static["site_id"].astype(str)) | set(qc_rejected))
    if config.split is not None:
        from sptf_ray.data.splits import SPLITS_FILE, load_splits

        if not storage.exists(storage.join(config.data, SPLITS_FILE)):
            raise FileNotFoundError(f"split {config.split!r} asked for but {config.data} has no {SPLITS_FILE} "
                                    "(make the splits first, or pass site ids)")
        splits = load_splits(config.data)
        chosen = set(splits.loc[splits["split"] == config.split, "site_id"].astype(str))
        ids = [s for s in ids if s in chosen]
    if config.sites is not None:
        unknown = sorted(set(config.sites) - set(ids))
        if unknown:
            raise ValueError(f"site(s) not in the dataset: {unknown[:10]}")
        named_rejected = [s for s in sorted(set(config.sites)) if s in qc_rejected]
        if named_rejected:
            raise ValueError(f"{len(named_rejected)} site(s) asked for were rejected by QC: "
                             + "; ".join(f"{s}: {qc_rejected[s]}" for s in named_rejected[:10]))
        wanted = set(config.sites)
        ids = [s for s in ids if s in wanted]
    skipped = {s: qc_rejected[s] for s in ids if s in qc_rejected}
    ids = [s for s in ids if s not in qc_rejected]
    if config.max_sites is not None:
        ids = ids[: config.max_sites]
    if not ids:
        if skipped:
            raise ValueError(f"all {len(skipped)} selected site(s) were rejected by QC: "
                             + "; ".join(f"{s}: {why}" for s, why in list(skipped.items())[:10]))
        raise ValueError("no sites selected (check split / sites)")
    return ids, skipped


def _check_resume(config: InvertConfig) -> None:
    uri = storage.join(config.out, CONFIG_FILE)
    if storage.exists(uri):
        old = load_config(InvertConfig, uri)
        if config_hash_of(old) != config_hash_of(config):
            raise ValueError(f"{config.out} holds results of a different inversion config "
                             f"(was {old.result_key()}, now {config.result_key()}); use another --out")


def config_hash_of(config: InvertConfig) -> str:
    @dataclass
    class _Key:
        key: dict

    return config_hash(_Key(config.result_key()))


class Progress:
    """One line per finished site: done/total, rate, ETA."""

    def __init__(self, total: int, skipped: int, enabled: bool = True, stream=None):
        self.total, self.skipped, self.enabled = total, skipped, enabled
        self.done = 0
        self.t0 = time.perf_counter()
        self.stream = stream or sys.stderr

    def update(self, site_id: str, info: str = "") -> str:
        self.done += 1
        elapsed = time.perf_counter() - self.t0
        rate = self.done / elapsed if elapsed > 0 else float("nan")
        left = self.total - self.skipped - self.done
        eta = left / rate if rate > 0 else float("nan")
        line = (f"invert: {self.skipped + self.done}/{self.total} sites done ({self.skipped} resumed), "
                f"{rate * 60:.2f} sites/min, ETA {_fmt(eta)} - {site_id} {info}")
        if self.enabled:
            print(line, file=self.stream, flush=True)
        return line


def _fmt(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    m, s = divmod(int(round(seconds)), 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"


# --------------------------------------------------------------------------- the stage
def run_inversion(config, on_site_done: Optional[Callable[[dict, dict], None]] = None) -> pd.DataFrame:
    """Invert the selected sites; returns the combined table (also written to out/inversion.parquet).

    `on_site_done(summary, state)` is called on the driver after each site (state has the
    actors' pids under "pids" when Ray is used): a hook for progress and fault-injection tests.
    """
    from sptf_ray.data.validate import load_site_dataset, rejected_years_of_kept_sites, rejection_reasons

    config = load_config(InvertConfig, config)
    if config.forward != "solver":
        make_forward(config.forward)  # fail fast (a missing or broken bundle) before any work
    # QC as training and predict see the data: short SWC gaps interpolated, bad years rejected
    dataset = load_site_dataset(config.data, validate=True)
    site_ids, qc_skipped = select_sites(config, dataset.static, rejection_reasons(dataset.report))
    payloads, left_out = _site_payloads(config, site_ids, dataset.daily)
    for sid, reasons in rejected_years_of_kept_sites(dataset.report).items():
        if sid in payloads:
            left_out[sid] = [f"site {sid!r} {why} (rejected by QC)" for why in reasons] + left_out.get(sid, [])
    _say_what_is_left_out(config, qc_skipped, left_out)

    _check_resume(config)
    storage.makedirs(config.out)
    save_config(config, storage.join(config.out, CONFIG_FILE))
    todo = [sid for sid in site_ids if not _site_done(config.out, sid, payloads[sid])]
    redone = [sid for sid in todo if storage.exists(site_file(config.out, sid))]
    if redone and config.progress:
        print(f"invert: {len(redone)} finished site(s) were inverted from other data than {config.data} "
              f"holds now; inverting them again: {', '.join(redone[:5])}", file=sys.stderr, flush=True)
    progress = Progress(len(site_ids), len(site_ids) - len(todo), config.progress)
    state: dict = {"pids": {}, "summaries": []}

    def done(summary):
        state["summaries"].append(summary)
        progress.update(summary["site_id"], f"({summary['seconds']:.1f} s)")
        if on_site_done is not None:
            on_site_done(summary, state)

    if todo:
        if config.ray.enabled:
            _run_ray(config, todo, payloads, done, state)
        else:
            forward = make_forward(config.forward)
            failures = []
            for batch in _batches(todo, config.sites_per_batch):
                try:
                    summaries = invert_site_batch(config, forward, {sid: payloads[sid] for sid in batch})
                except BatchFailed as exc:
                    failures.append(f"{','.join(batch)}: {exc}")
                    summaries = exc.summaries
                for summary in summaries:
                    done(summary)
            _raise_failures(failures)

    return _write_results(config.out, site_ids, left_out, qc_skipped)


def _say_what_is_left_out(config: InvertConfig, qc_skipped: dict[str, str], left_out: dict) -> None:
    if not config.progress:
        return
    if qc_skipped:
        print(f"invert: {len(qc_skipped)} site(s) rejected by QC are left out: "
              + "; ".join(f"{s}: {why}" for s, why in list(qc_skipped.items())[:5]), file=sys.stderr, flush=True)
    if left_out:
        reasons = [r for rs in left_out.values() for r in rs]
        print(f"invert: {len(reasons)} site-year(s) left out, the other years of their sites are inverted: "
              + "; ".join(reasons[:5]), file=sys.stderr, flush=True)


def _site_payloads(config: InvertConfig, site_ids: list[str], daily: pd.DataFrame) -> tuple[dict, dict]:
    """Each site's usable years as a task payload, and the years left out per site; every site
    that cannot be inverted at all is named in one error, before any work."""
    by_site = all_site_years(daily[daily["site_id"].astype(str).isin(site_ids)])
    problems, payloads, left_out = [], {}, {}
    for sid in site_ids:
        try:
            if sid not in by_site:
                raise ValueError(f"site {sid!r}: no rows in the daily table")
            years, dropped = _usable_years(by_site[sid], config.min_valid_days)
            try:
                validate_site(sid, years, config.samples, config.min_valid_days)
            except ValueError as exc:
                raise ValueError("; ".join(dropped) + " (no year pair left)" if dropped else str(exc)) from None
            payloads[sid] = _payload(years)
            if dropped:
                left_out[sid] = dropped
        except ValueError as exc:
            problems.append(str(exc))
    if problems:
        raise ValueError(f"{len(problems)} site(s) cannot be inverted: " + "; ".join(problems[:10]))
    return payloads, left_out


def _write_results(out: str, site_ids: list[str], left_out: dict, qc_skipped: dict) -> pd.DataFrame:
    """The per-site files combined into the results table, each site's host, and the manifest (last)."""
    read = [storage.read_parquet_and_metadata(site_file(out, sid)) for sid in site_ids]
    table = pd.concat([df for df, _ in read], ignore_index=True) if read else results_frame([])
    storage.atomic_write_parquet(table, storage.join(out, RESULTS_FILE))
    hosts = {sid: _host_of(meta) for sid, (_, meta) in zip(site_ids, read)}
    storage.atomic_write_text(storage.join(out, HOSTS_FILE), json.dumps(hosts, indent=1, sort_keys=True) + "\n")
    storage.write_manifest(out, [CONFIG_FILE, RESULTS_FILE, HOSTS_FILE],
                           {"stage": "invert", "n_sites": len(site_ids), "n_rows": len(table),
                            "left_out_years": left_out, "qc_rejected_sites": qc_skipped})
    return table


def _usable_years(years: dict[int, SiteYear], min_valid_days: int) -> tuple[dict[int, SiteYear], list[str]]:
    """The years a site can be inverted on, and why each other one cannot (one all-frozen or
    gappy year leaves the site's other year pairs to invert, rather than stopping every site)."""
    kept, dropped = {}, []
    for year, site_year in sorted(years.items()):
        try:
            kept[year] = site_year.validate(min_valid_days)
        except ValueError as exc:
            dropped.append(str(exc))
    return kept, dropped


def _site_done(out: str, site_id: str, payload: dict) -> bool:
    """A site file exists and was inverted from the data the site holds now (a file from before
    the digest was kept is taken as done)."""
    uri = site_file(out, site_id)
    if not storage.exists(uri):
        return False
    recorded = storage.read_parquet_key_values(uri).get(DATA_KEY)
    return recorded is None or recorded == payload_digest(payload)


def _host_of(site_file_metadata: dict) -> dict | None:
    """The host record a site file carries (None for a file from before they were kept)."""
    raw = site_file_metadata.get(HOST_KEY)
    return json.loads(raw) if raw else None


def _raise_failures(failures: list[str]) -> None:
    if failures:
        raise StageFailed(f"{len(failures)} batch(es) of sites failed (re-run to retry them; finished sites are "
                           "kept): " + " | ".join(f[:500] for f in failures[:5]))


def _batches(site_ids: list[str], size: int) -> list[list[str]]:
    return [site_ids[i:i + size] for i in range(0, len(site_ids), size)]


def _run_ray(config: InvertConfig, todo: list[str], payloads: dict, done: Callable, state: dict) -> None:
    import ray

    from sptf_ray.jobs_common import check_resources

    if not ray.is_initialized():
        # Inside `ray job submit` (RAY_ADDRESS set) join that cluster; else start a local one.
        address = config.ray.address or (None if os.environ.get("RAY_ADDRESS") else "local")
        ray.init(address, log_to_driver=False)
    cpus = config.ray.cpus_per_actor
    n_actors = config.ray.num_actors or max(1, int(ray.cluster_resources().get("CPU", 1) // cpus))
    queue = _batches(todo, config.sites_per_batch)
    n_actors = min(n_actors, len(queue))
    check_resources({"CPU": cpus}, n_actors, "inversion actors",
                    ": lower ray.num_actors or ray.cpus_per_actor, or join a bigger cluster (ray.address)")
    threads = max(1, int(cpus))
    Worker = ray.remote(InversionWorker).options(num_cpus=cpus, max_restarts=config.ray.max_restarts,
                                                 max_task_retries=config.ray.max_task_retries)
    cfg = config_to_dict(config)
    actors = [Worker.remote(cfg, threads) for _ in range(n_actors)]
    try:
        state["actors"] = actors
        state["pids"] = dict(enumerate(ray.get([a.pid.remote() for a in actors])))
        running = {}  # ObjectRef -> (actor index, site ids)
        failures = []

        def submit(i):
            if queue:
                batch = queue.pop(0)
                running[actors[i].invert.remote({sid: payloads[sid] for sid in batch})] = (i, batch)

        for i in range(n_actors):
            submit(i)
        while running:
            ready, _ = ray.wait(list(running), num_returns=1)
            ref = ready[0]
            i, batch = running.pop(ref)
            summaries = []
            try:
                summaries = ray.get(ref)
            except Exception as exc:  # retries exhausted or a site itself failed
                cause = getattr(exc, "cause", exc)
                failures.append(f"{','.join(batch)}: {type(cause).__name__}: {cause}")
                summaries = getattr(cause, "summaries", [])
            for summary in summaries:
                done(summary)
            submit(i)
        _raise_failures(failures)
    finally:
        for a in actors:
            ray.kill(a)
