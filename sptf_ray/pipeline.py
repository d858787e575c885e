"""`sptf run CONFIG --out DIR`: every stage in order, in one run directory, resumable.

Stages: network (or an ingested site dataset, `sites:`) -> dataset -> surrogate -> sptf ->
predict -> inversion -> evaluate. Layout of DIR:

    config.resolved.yaml     the PipelineConfig of the latest invocation
    stages.json              per stage: the hash of the settings it depends on, status, seconds,
                             a token of what its output holds and of the inputs it was made from,
                             the CPU and package versions of the machine that ran `sptf run`
    network/                 virtual network (site dataset + truth.parquet), unless `sites` is given
    dataset/                 surrogate training shards
    train/surrogate-<model>/ Ray Train run (checkpoints, metrics) + bundle/
    train/sptf-<model>/      Ray Train run + bundle/ (with its surrogate)
    predict/<model>/         parameters.csv, simulated.parquet, metrics.csv
    inversion/               inversion.parquet (+ per-site files)
    report.md, report.html, figures/, metrics_*.csv, evaluate.manifest.json

A stage is skipped when its output's manifest verifies, `stages.json` records the same
settings hash (its own section plus everything upstream), and its inputs hold what they held
when it ran: each finished stage records a token of what its output holds (a digest of its
manifest's checksums) and the tokens of its inputs, so when an input is made again with another
result (its output deleted and retrained, say) everything made from it is made again, never
reported from the old one; made again with the same result, nothing downstream is redone. A
`sites:` dataset is such an input: a stage also records its settings hash with the site data
left out, so after the daily table is re-ingested, a stage whose settings are unchanged is out of
date and made again, not a conflict. An
output that verifies but was made with other settings is an error naming the directory (never
silently reused or overwritten); an incomplete output is handed to the stage, which resumes it
(shards, Ray Train checkpoints, per-site inversion files). Ray: joins `ray.address` or an
initialized Ray, else starts a local instance (usage stats off) and shuts it down at the end.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import os
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

from sptf_ray import storage
from sptf_ray.config import config_to_dict, load_config, save_config
from sptf_ray.data.network import NetworkConfig
from sptf_ray.dataset.build import DatasetConfig
from sptf_ray.errors import StageFailed
from sptf_ray.evaluate.sensitivity import DEFAULT_LENGTHS
from sptf_ray.inverse.job import RayOptions
from sptf_ray.inverse.site import SCEUASettings
from sptf_ray.provenance import provenance
from sptf_ray.training.ray_train import ScalingArgs

STAGES = ("network", "dataset", "surrogate", "sptf", "predict", "inversion", "evaluate")
RESOLVED_CONFIG = "config.resolved.yaml"
STATE_FILE = "stages.json"

__all__ = ["STAGES", "PipelineConfig", "run_pipeline", "RunLayout"]


@dataclass
class SurrogateStage:
    epochs: int = 10
    batch_size: int = 64
    lr: float = 1e-3
    lr_schedule: str = "constant"  # or "cosine" (TrainConfig.lr_schedule)
    lr_final_fraction: float = 0.01
    seed: int = 0
    grad_clip: float = 1.0
    hidden_size: int = 256
    dropout: float = 0.0
    seq_len: Optional[int] = None
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    patience: Optional[int] = None  # early stop (TrainConfig.patience); None: every epoch
    max_failures: int = 0
    log_level: str = "WARNING"  # Ray Train's own console lines (TrainConfig.log_level)
    scaling: ScalingArgs = field(default_factory=ScalingArgs)


@dataclass
class SPTFStage:
    epochs: int = 10
    batch_size: int = 32
    lr: float = 1e-4
    lr_schedule: str = "constant"  # or "cosine" (TrainConfig.lr_schedule)
    lr_final_fraction: float = 0.01
    seed: int = 0
    grad_clip: float = 1.0
    hidden_size: int = 128
    dropout: float = 0.0
    patience: Optional[int] = None  # early stop (TrainConfig.patience); None: every epoch
    max_failures: int = 0
    log_level: str = "WARNING"  # Ray Train's own console lines (TrainConfig.log_level)
    scaling: ScalingArgs = field(default_factory=ScalingArgs)


@dataclass
class PredictStage:
    device: str = "cpu"


@dataclass
class InversionStage:
    enabled: bool = True
    split: str = "test"  # sites of this split ("train", "val", "test", or "all")
    max_sites: Optional[int] = None
    modes: list[str] = field(default_factory=lambda: ["historical"])
    samples: str = "all"
    forward: str = "solver"
    sceua: SCEUASettings = field(default_factory=SCEUASettings)
    sites_per_batch: int = 1  # sites inverted in lockstep per actor task (InvertConfig.sites_per_batch)
    ray: RayOptions = field(default_factory=RayOptions)

    def validate(self) -> None:
        if self.split not in ("train", "val", "test", "all"):
            raise ValueError(f"inversion.split must be train, val, test or all, got {self.split!r}")


@dataclass
class EvaluateStage:
    rosetta: bool = True
    n_timeseries: int = 4
    importance_repeats: int = 10  # permutation feature importance seeds (paper: 100); 0 skips it
    input_lengths: list[int] = field(default_factory=lambda: list(DEFAULT_LENGTHS))
    length_windows: int = 10  # random windows per input length (paper: 10); [] lengths skips it
    device: str = "cpu"


@dataclass
class RayInit:
    address: Optional[str] = None  # None: an initialized Ray, else a new local instance
    num_cpus: Optional[int] = None  # local instance only (None: all cores)
    object_store_memory_mb: Optional[int] = None


@dataclass
class PipelineConfig:
    """The whole run. Stage sections hold only settings; the pipeline fills in every path."""

    models: list[str] = field(default_factory=lambda: ["vgm", "fxw"])
    sites: Optional[str] = None  # an ingested site dataset dir; None: build the virtual network
    split_seed: int = 0  # site splits when the data dir has no splits.parquet
    dataset_site_forcing: bool = False  # dataset.sites := the site data (real forcings in the surrogate set)
    parallel_models: bool = True  # train the models' surrogates (then SPTFs) at the same time, each its own Ray Train run
    stop_after: Optional[str] = None  # run the stages up to this one only
    network: NetworkConfig = field(default_factory=NetworkConfig)
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    surrogate: SurrogateStage = field(default_factory=SurrogateStage)
    sptf: SPTFStage = field(default_factory=SPTFStage)
    predict: PredictStage = field(default_factory=PredictStage)
    inversion: InversionStage = field(default_factory=InversionStage)
    evaluate: EvaluateStage = field(default_factory=EvaluateStage)
    ray: RayInit = field(default_factory=RayInit)

    def validate(self) -> None:
        if not self.models or any(m not in ("vgm", "fxw") for m in self.models) or len(set(self.models)) != len(self.models):
            raise ValueError(f"models must be a non-empty subset of ['vgm', 'fxw'], got {self.models}")
        if self.stop_after is not None and self.stop_after not in STAGES:
            raise ValueError(f"stop_after must be one of {list(STAGES)}, got {self.stop_after!r}")
        if self.dataset.model not in ("both", *self.models) or (self.dataset.model != "both" and len(self.models) > 1):
            raise ValueError(f"dataset.model={self.dataset.model!r} does not cover models {self.models} "
                             "(use 'both' for two models)")
        # Build every stage's own config once with placeholder paths: its checks run now, not mid-run.
        layout = RunLayout("/validate")
        checks = [("surrogate", lambda m=m: _surrogate_config(self, layout, m)) for m in self.models]
        checks += [("sptf", lambda m=m: _sptf_config(self, layout, m)) for m in self.models]
        checks += [("inversion", lambda: _invert_config(self, layout, ["x"]))] if self.inversion.enabled else []
        for section, check in checks:
            try:
                check()
            except ValueError as exc:  # the stage's own config does not know which section it came from
                raise ValueError(f"{section}: {exc}") from None


@dataclass(frozen=True)
class RunLayout:
    root: str

    def p(self, *parts: str) -> str:
        return storage.join(self.root, *parts)

    @property
    def network(self) -> str:
        return self.p("network")

    @property
    def dataset(self) -> str:
        return self.p("dataset")

    @property
    def train(self) -> str:
        return self.p("train")

    def surrogate_run(self, model: str) -> str:
        return self.p("train", f"surrogate-{model}")

    def sptf_run(self, model: str) -> str:
        return self.p("train", f"sptf-{model}")

    def predict(self, model: str) -> str:
        return self.p("predict", model)

    @property
    def inversion(self) -> str:
        return self.p("inversion")


# --------------------------------------------------------------------------- stage configs
def _surrogate_config(cfg: PipelineConfig, layout: RunLayout, model: str):
    from sptf_ray.training.ray_train import SurrogateTrainConfig

    s = cfg.surrogate
    return load_config(SurrogateTrainConfig, {
        "storage_path": storage.absolute(layout.train), "name": f"surrogate-{model}", "data": layout.dataset,
        "epochs": s.epochs, "batch_size": s.batch_size, "lr": s.lr, "lr_schedule": s.lr_schedule,
        "lr_final_fraction": s.lr_final_fraction, "seed": s.seed, "grad_clip": s.grad_clip,
        "patience": s.patience, "max_failures": s.max_failures, "log_level": s.log_level, "scaling": config_to_dict(s.scaling),
        "network": {"model": model, "hidden_size": s.hidden_size, "dropout": s.dropout},
        "seq_len": s.seq_len, "val_fraction": s.val_fraction, "test_fraction": s.test_fraction})


def _sptf_config(cfg: PipelineConfig, layout: RunLayout, model: str, data: str = "/validate/data"):
    from sptf_ray.training.ray_train import SPTFTrainConfig

    s = cfg.sptf
    return load_config(SPTFTrainConfig, {
        "storage_path": storage.absolute(layout.train), "name": f"sptf-{model}", "data": data,
        "surrogate": storage.join(storage.absolute(layout.surrogate_run(model)), "bundle"),
        "epochs": s.epochs, "batch_size": s.batch_size, "lr": s.lr, "lr_schedule": s.lr_schedule,
        "lr_final_fraction": s.lr_final_fraction, "seed": s.seed, "grad_clip": s.grad_clip,
        "patience": s.patience, "max_failures": s.max_failures, "log_level": s.log_level, "scaling": config_to_dict(s.scaling), "split_seed": cfg.split_seed,
        "network": {"model": model, "hidden_size": s.hidden_size, "dropout": s.dropout}})


def _invert_config(cfg: PipelineConfig, layout: RunLayout, sites: list[str], data: str = "/validate/data"):
    from sptf_ray.inverse.job import InvertConfig

    s = cfg.inversion
    return load_config(InvertConfig, {
        "data": data, "out": layout.inversion, "models": list(cfg.models), "modes": list(s.modes),
        "sites": sites, "max_sites": s.max_sites, "samples": s.samples, "forward": s.forward,
        "sceua": config_to_dict(s.sceua), "sites_per_batch": s.sites_per_batch, "ray": config_to_dict(s.ray)})


# --------------------------------------------------------------------------- state
class _State:
    def __init__(self, root: str):
        self.uri = storage.join(root, STATE_FILE)
        self._lock = threading.Lock()
        self.data = json.loads(storage.read_text(self.uri)) if storage.exists(self.uri) else {}

    def get(self, stage: str) -> dict:
        return self.data.get(stage, {})

    def set(self, stage: str, **values) -> None:
        with self._lock:  # the models' stages may finish at the same time (parallel_models)
            self.data[stage] = {**self.data.get(stage, {}), **values}
            storage.atomic_write_text(self.uri, json.dumps(self.data, indent=2, sort_keys=True) + "\n")


# Settings that change how a stage runs, not what it produces: changing them never invalidates output.
_EXECUTION_KEYS = frozenset({"max_failures", "scaling", "ray", "max_retries", "cpus_per_task", "sites_per_batch",
                            "log_level"})
# Settings added after run directories existed, at the value that reproduces the old behaviour:
# left out of the hash there, so a run made before them still verifies and is not made again.
_NEUTRAL_LATER_SETTINGS = {"lr_schedule": "constant", "lr_final_fraction": 0.01, "patience": None}
# Execution settings that were hashed before they were seen to be such: hashed at their old
# default whatever they are, so run directories made before still verify and moving predict or
# evaluate to a GPU does not redo a finished stage.
_HASHED_AS_DEFAULT = {"device": "cpu"}


def _hash(*parts) -> str:
    import hashlib

    def content(p):
        if not dataclasses.is_dataclass(p):
            return p
        return {k: _HASHED_AS_DEFAULT.get(k, v) for k, v in config_to_dict(p).items()
                if k not in _EXECUTION_KEYS and not (k in _NEUTRAL_LATER_SETTINGS and v == _NEUTRAL_LATER_SETTINGS[k])}

    canonical = json.dumps([content(p) for p in parts],
                           sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _for_each_model(models: list[str], run_stage: Callable[[str], None], parallel: bool) -> None:
    """run_stage(model) for every model; at the same time when `parallel` (threads, as Ray Tune runs
    trainers: each model's training is its own Ray Train run, and Ray queues it when CPUs are short).
    Every model runs to its end even when another fails, so a re-run only redoes the failed one."""
    if not parallel or len(models) < 2:
        for m in models:
            run_stage(m)
        return
    from concurrent.futures import ThreadPoolExecutor

    pool = ThreadPoolExecutor(len(models), thread_name_prefix="sptf-model")
    try:
        errors = [f.exception() for f in [pool.submit(run_stage, m) for m in models]]
    finally:
        pool.shutdown(wait=False, cancel_futures=True)  # Ctrl-C: on to ray.shutdown, which ends the runs
    failed = [e for e in errors if e is not None]
    if failed:
        raise failed[0]


def _dataset_hash(ds_cfg, h_site_data: Optional[str], recorded: Optional[str]) -> str:
    """The dataset stage's digest. When the set is forced by the run's site data, free of where that
    data lies (h_site_data hashes what it holds), so a run directory that is moved or copied still
    resumes. Run directories made before 2026-12-05 recorded the digest with the site path in it:
    that one is kept where it is the one recorded, so they do not redo every stage from here on."""
    with_path = _hash("dataset", ds_cfg, h_site_data)
    if h_site_data is None or recorded == with_path:  # a path set by hand has no content hash: keep it
        return with_path
    return _hash("dataset", dataclasses.replace(ds_cfg, sites=None), h_site_data)


def _stage_digests(cfg: PipelineConfig, ds_cfg, h_data: str, recorded_dataset: Optional[str]) -> dict[str, str]:
    """Each stage's settings hash: its own section plus everything upstream, h_data standing for the
    site data (the network's settings, or what a `sites:` daily table holds)."""
    h_ds = _dataset_hash(ds_cfg, h_data if cfg.dataset_site_forcing else None, recorded_dataset)
    digests = {"dataset": h_ds,
               "inversion": _hash("inversion", cfg.inversion, cfg.models, cfg.split_seed, h_data)}
    for m in cfg.models:
        digests[f"surrogate-{m}"] = _hash("surrogate", cfg.surrogate, m, h_ds)
        digests[f"sptf-{m}"] = _hash("sptf", cfg.sptf, m, cfg.split_seed, digests[f"surrogate-{m}"], h_data)
        digests[f"predict-{m}"] = _hash("predict", cfg.predict, digests[f"sptf-{m}"])
    return digests


def _inputs_made_again(rec: dict, made_from: dict, ran_now: list[str]) -> list[str]:
    """The inputs of a stage (its record `rec`) that hold something else than when it ran: their
    output token differs from the one it recorded. A stage recorded before the tokens has none to
    compare: for it, the inputs made again in this invocation."""
    recorded = rec.get("inputs")
    if recorded is None:
        return sorted(ran_now)
    # A token recorded as None was not known then (a `sites:` dataset before its token was kept).
    return sorted(u for u, token in made_from.items() if recorded.get(u, "") not in (None, token))


def _output_token(manifest_dir: Optional[str]) -> Optional[str]:
    """What a stage's output holds, as one digest of its manifest's file checksums (not of where it
    lies or when it was written): a stage made again with the same result keeps its token, so what
    was made from it stays valid."""
    if manifest_dir is None:
        return None
    files = storage.read_manifest(manifest_dir)["files"]
    return _hash("output", {name: v for name, v in files.items() if not _PROVENANCE_ONLY.search(name)})


# Files that record where and how long something was made, not what it holds: a shard's sidecar
# (seconds, host), a bundle's provenance.json, the inversion's hosts.json. Left out of a stage's
# output token, so a stage remade to the same content on another host keeps everything after it.
_PROVENANCE_ONLY = re.compile(r"(^|/)(shard-\d+\.json|provenance\.json|hosts\.json)$")


def _site_data_digests(sites: str) -> dict[str, str]:
    """sha256 of a `sites:` dataset's statics and daily tables, read once for the stages made from it."""
    return {n: storage.file_sha256(storage.join(sites, n))[1] for n in ("sites.parquet", "daily.parquet")}


def _ensure_ray(cfg: RayInit) -> bool:
    """Join or start Ray; True when this call started it (and should shut it down)."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")  # one line per stage and epoch is enough
    import ray

    if ray.is_initialized():
        return False
    if cfg.address or os.environ.get("RAY_ADDRESS"):
        ray.init(address=cfg.address)  # None: RAY_ADDRESS (e.g. inside `ray job submit`)
    else:
        # The dashboard (on 127.0.0.1) is what Ray Train V2 cleans up through: without it every
        # training run logs "Failed to query Ray Train Controller actor state" (RAY_NOTES).
        kwargs = {"num_cpus": cfg.num_cpus, "include_dashboard": True}
        if cfg.object_store_memory_mb:
            kwargs["object_store_memory"] = cfg.object_store_memory_mb * 1024**2
        ray.init("local", **kwargs)  # never a stale cluster left in RAY_TMPDIR
    return True


# --------------------------------------------------------------------------- the pipeline
def run_pipeline(config, out: str, progress: Callable[[str], None] = print, stop_after: Optional[str] = None,
                 replace_changed: bool = False) -> dict:
    """Run (or resume) every stage of `config` under `out`. Returns {stage: "ran" | "skipped"}.

    replace_changed: a stage output made with other settings is deleted and made again (and so is
    everything downstream of it, whose settings hash includes it); default: refuse, naming it."""
    cfg = load_config(PipelineConfig, config)
    if stop_after is not None:
        cfg = dataclasses.replace(cfg, stop_after=stop_after)
        cfg.validate()
    if cfg.sites:  # before a run directory is made or Ray started for data that is not there
        from sptf_ray.data.validate import require_site_dataset

        require_site_dataset(cfg.sites)
    out = str(out)
    storage.makedirs(out)
    save_config(cfg, storage.join(out, RESOLVED_CONFIG))
    run = _Run(cfg, out, progress, replace_changed)
    steps = (run.network, run.dataset, run.surrogates, run.sptfs, run.predictions, run.inversion, run.evaluate)
    last = STAGES.index(cfg.stop_after) if cfg.stop_after else len(STAGES) - 1
    started_ray = False
    try:
        started_ray = _ensure_ray(cfg.ray)
        _preflight(cfg, last)
        for step in steps[:last + 1]:
            step()
        return run.actions
    finally:
        if started_ray:
            import ray

            ray.shutdown()


def _preflight(cfg: PipelineConfig, last: int) -> None:
    """What a later stage would fail on, found before the earlier ones spend their minutes: a
    torch device this driver lacks (predict and evaluate run here), training workers a local
    Ray instance cannot hold."""
    from sptf_ray.jobs_common import check_resources
    from sptf_ray.training.bundle import check_device
    from sptf_ray.training.ray_train import check_cluster_fits

    runs = {stage: STAGES.index(stage) <= last for stage in STAGES}
    for stage, device in (("predict", cfg.predict.device), ("evaluate", cfg.evaluate.device)):
        if runs[stage]:
            try:
                check_device(device)
            except ValueError as exc:
                raise ValueError(f"{stage}.{exc}") from None
    for stage, scaling in (("surrogate", cfg.surrogate.scaling), ("sptf", cfg.sptf.scaling)):
        if runs[stage]:
            check_cluster_fits(scaling)
    inv = cfg.inversion
    if runs["inversion"] and inv.enabled and inv.ray.enabled:
        check_resources({"CPU": inv.ray.cpus_per_actor}, 1, "inversion actors", ": lower inversion.ray.cpus_per_actor")


class _Run:
    """One invocation of the pipeline: each method makes (or skips) one stage, in STAGES order."""

    def __init__(self, cfg: PipelineConfig, out: str, progress: Callable[[str], None], replace_changed: bool):
        self.cfg, self.out, self.progress, self.replace_changed = cfg, out, progress, replace_changed
        self.layout = RunLayout(out)
        self.state = _State(out)
        self.data = cfg.sites or self.layout.network
        self.actions: dict[str, str] = {}
        self.h_data = ""  # the site data's hash: the network's settings, or what a `sites:` daily table holds
        self.digests: dict[str, str] = {}  # each stage's settings hash (_stage_digests)
        self.data_free: dict[str, str] = {}  # `sites:` only: the same with the site data left out
        self.host = provenance()  # of the driver: the machine in a local run
        self.t_start = time.time()

    # ------------------------------------------------------------------ one stage
    def stage(self, name: str, digest: str, done: Callable[[], bool], make: Callable[[], None], where: str,
              inputs: Sequence[str] = (), manifest_dir: Optional[str] = None, redo_on_change: bool = False) -> None:
        """Skip `name` when `where` verifies with the same settings and inputs; else clear what is out of
        date (or refuse output made with other settings) and make it."""
        rec = self.state.get(name)
        settings = self.data_free.get(name)
        made_from = {u: self.state.get(u).get("made") for u in inputs}
        remade = _inputs_made_again(rec, made_from, [u for u in inputs if self.actions.get(u) == "ran"])
        complete = done()
        if complete and rec.get("hash") == digest and rec.get("status") == "done" and not remade:
            self._skip(name, where, rec, made_from, settings, manifest_dir)
            return
        # same settings on other site data (a re-ingested daily table): out of date, like an input made again
        data_changed = bool(settings) and rec.get("hash") not in (None, digest) and rec.get("settings") == settings
        if ((remade and rec.get("hash") == digest) or data_changed) and storage.exists(where):
            # same settings, other inputs: out of date rather than a conflict, so no --replace-changed
            why = "the site data changed" if data_changed else f"{', '.join(remade)} made again"
            self.progress(f"[run] {name}: {why} since {where} was made: making it again")
            if not redo_on_change:
                storage.remove(where)
            complete = False
        stale = complete or (rec.get("hash") not in (None, digest) and storage.exists(where))
        if stale and not redo_on_change:
            self._replace_or_refuse(name, where, complete, settings is not None and rec.get("settings") is None)
        self.progress(f"[run] {name}: running -> {where}")
        t0 = time.time()
        self.state.set(name, hash=digest, status="started", inputs=made_from, made=None,
                       **({"settings": settings} if settings else {}))
        make()
        if not done():
            raise StageFailed(f"{name} finished but its output {where} does not verify")
        self.state.set(name, status="done", seconds=round(time.time() - t0, 1), made=_output_token(manifest_dir),
                       host=self.host)
        self.actions[name] = "ran"
        self.progress(f"[run] {name}: done in {time.time() - t0:.0f} s")

    def _skip(self, name: str, where: str, rec: dict, made_from: dict, settings: Optional[str],
              manifest_dir: Optional[str]) -> None:
        self.progress(f"[run] {name}: skipped ({where} complete)")
        self.actions[name] = "skipped"
        adopted = {}
        unknown = [u for u, token in made_from.items() if (rec.get("inputs") or {}).get(u, "") is None and token]
        if "inputs" not in rec or "made" not in rec or unknown:  # a run directory from before the tokens
            adopted.update(inputs=made_from, made=rec.get("made") or _output_token(manifest_dir))
        if settings and rec.get("settings") != settings:  # recorded before data-free hashes were kept
            adopted["settings"] = settings
        if adopted:
            self.state.set(name, **adopted)

    def _replace_or_refuse(self, name: str, where: str, complete: bool, data_unknown: bool) -> None:
        what = "a complete" if complete else "a partial"
        made = "made with other settings (or not by this pipeline)" if complete else "started with other settings"
        if data_unknown:  # recorded before the data-free hash: either may differ
            made = made.replace("other settings", "other settings or site data")
        if not self.replace_changed:
            raise ValueError(f"{where} holds {what} {name} output {made}; delete it, choose another --out, "
                             "or pass --replace-changed")
        self.progress(f"[run] {name}: {where} holds {what} output {made}: deleting it (--replace-changed)")
        storage.remove(where)

    # ------------------------------------------------------------------ the stages
    def network(self) -> None:
        cfg, layout = self.cfg, self.layout
        if cfg.sites:
            from sptf_ray.data.validate import load_site_dataset

            load_site_dataset(cfg.sites)  # schema and manifest checks before anything else
            site_files = _site_data_digests(cfg.sites)
            self.h_data = _hash("sites", site_files["daily.parquet"])
            self.progress(f"[run] network: using the site dataset {cfg.sites}")
            self.actions["network"] = "external"
            # h_data covers the daily table only: this token also tells the stages made from the
            # data when its statics (the SPTF's soil inputs) were edited since.
            self.state.set("network", status="external", made=_hash("site data", site_files))
        else:
            from sptf_ray.data.network import build_network

            self.h_data = _hash("network", cfg.network)
            self.stage("network", self.h_data, lambda: storage.verify_manifest(layout.network),
                       lambda: build_network(cfg.network, layout.network, executor="ray", progress=self.progress),
                       layout.network, manifest_dir=layout.network)

    def dataset(self) -> None:
        from sptf_ray.dataset.build import build_dataset

        cfg, layout = self.cfg, self.layout
        ds_cfg = dataclasses.replace(cfg.dataset, sites=self.data) if cfg.dataset_site_forcing else cfg.dataset
        self.digests = _stage_digests(cfg, ds_cfg, self.h_data, self.state.get("dataset").get("hash"))
        if cfg.sites:
            self.data_free = _stage_digests(cfg, ds_cfg, _hash("sites", None), None)
        self.stage("dataset", self.digests["dataset"], lambda: storage.verify_manifest(layout.dataset),
                   lambda: build_dataset(ds_cfg, layout.dataset, executor="ray"), layout.dataset,
                   inputs=["network"] if cfg.dataset_site_forcing and not cfg.sites else (),
                   manifest_dir=layout.dataset)

    def surrogates(self) -> None:
        from sptf_ray.training.ray_train import train_surrogate

        def surrogate_stage(m):
            sc = _surrogate_config(self.cfg, self.layout, m)
            bundle = storage.join(sc.run_dir, "bundle")
            self.stage(f"surrogate-{m}", self.digests[f"surrogate-{m}"], lambda: storage.verify_manifest(bundle),
                       lambda: train_surrogate(sc), sc.run_dir, inputs=["dataset"], manifest_dir=bundle)

        _for_each_model(self.cfg.models, surrogate_stage, self._side_by_side("surrogates", self.cfg.surrogate.scaling))

    def sptfs(self) -> None:
        from sptf_ray.training.ray_train import train_sptf

        def sptf_stage(m):
            sc = _sptf_config(self.cfg, self.layout, m, self.data)
            bundle = storage.join(sc.run_dir, "bundle")
            self.stage(f"sptf-{m}", self.digests[f"sptf-{m}"], lambda: storage.verify_manifest(bundle),
                       lambda: train_sptf(sc), sc.run_dir, inputs=[f"surrogate-{m}", "network"], manifest_dir=bundle)

        _for_each_model(self.cfg.models, sptf_stage, self._side_by_side("SPTFs", self.cfg.sptf.scaling))

    def _side_by_side(self, what: str, scaling) -> bool:
        """parallel_models, unless the local instance lacks the GPUs for all models at once: the
        second run would not queue quietly but retry its worker group every minute till the first ends."""
        from sptf_ray.jobs_common import ray_started_in_this_process

        if not self.cfg.parallel_models or len(self.cfg.models) < 2 or not scaling.use_gpu:
            return self.cfg.parallel_models
        import ray

        need = len(self.cfg.models) * scaling.num_workers * scaling.gpus_per_worker
        have = float(ray.cluster_resources().get("GPU", 0.0))
        if need <= have or not ray_started_in_this_process():
            return True
        self.progress(f"[run] {what}: one after the other ({need:g} GPU for the models side by side, "
                      f"this instance has {have:g})")
        return False

    def predictions(self) -> None:
        from sptf_ray.training.predict import predict

        for m in self.cfg.models:
            bundle = storage.join(_sptf_config(self.cfg, self.layout, m, self.data).run_dir, "bundle")
            where = self.layout.predict(m)
            self.stage(f"predict-{m}", self.digests[f"predict-{m}"], lambda w=where: storage.verify_manifest(w),
                       functools.partial(predict, bundle, self.data, where, device=self.cfg.predict.device,
                                         progress=self.progress), where,
                       inputs=[f"sptf-{m}", "network"], manifest_dir=where)

    def inversion(self) -> None:
        cfg, layout = self.cfg, self.layout
        if not cfg.inversion.enabled:
            self.progress("[run] inversion: disabled in the config")
            return
        from sptf_ray.inverse.job import run_inversion
        from sptf_ray.training.data import load_site_samples

        _, _, samples = load_site_samples(self.data, cfg.split_seed)
        sel = samples if cfg.inversion.split == "all" else samples[samples["split"] == cfg.inversion.split]
        sites = sorted(sel["site_id"].astype(str).unique())
        if not sites:
            raise ValueError(f"inversion: no sites in split {cfg.inversion.split!r}")
        ic = _invert_config(cfg, layout, sites, self.data)
        self.stage("inversion", self.digests["inversion"], lambda: storage.verify_manifest(layout.inversion),
                   lambda: run_inversion(ic), layout.inversion, inputs=["network"], manifest_dir=layout.inversion)

    def evaluate(self) -> None:
        from sptf_ray.evaluate.report import evaluate_run, verify_evaluation

        cfg, layout, out = self.cfg, self.layout, self.out
        ev = {"run_dir": out, "data": self.data, "predict": {m: layout.predict(m) for m in cfg.models},
              "bundles": {m: storage.join(layout.sptf_run(m), "bundle") for m in cfg.models},
              "inversion": layout.inversion, "split_seed": cfg.split_seed, **config_to_dict(cfg.evaluate)}
        # the report depends on everything upstream: re-evaluate whenever any of it changed
        upstream = [k for k in sorted(self.state.data) if k != "evaluate"]
        h_eval = _hash("evaluate", cfg.evaluate, [self.state.get(k).get("hash") for k in upstream])
        self.stage("evaluate", h_eval, lambda: verify_evaluation(out), lambda: evaluate_run(ev, progress=self.progress),
                   out, inputs=upstream, redo_on_change=True)
        self.progress(f"[run] complete in {time.time() - self.t_start:.0f} s: {storage.join(out, 'report.md')}")
