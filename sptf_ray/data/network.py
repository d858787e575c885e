"""The virtual network: synthetic sites whose true hydraulic parameters are known.

`build_network(config, out)` writes, under `out` (local path or URI):

- `sites.parquet`   static table in the schema.py format (source = "virtual");
- `daily.parquet`   daily table in the schema.py format plus `swc_true` (noise-free SWC) and
                    `tair_c` (air temperature, the frozen-mask fallback);
- `truth.parquet`   site_id, truth_model, both models' six true parameters (`vgm_<name>`,
                    `fxw_<name>`), the sensor's noise sd and bias, the solver's status flags;
- `climate.parquet` the weather generator's parameters of every site;
- `config.yaml`     the resolved NetworkConfig;
- `network_report.md` / `.png`  how the network compares with the paper's ISMN data;
- `manifest.json`   written last: the directory is complete only when it verifies.

SWC at 5 cm follows DESIGN section 0's forward protocol: every 365-day year is simulated on
its own from a cold start (h = -100 cm), with the site's truth model and true parameters;
the observed `swc` adds a per-site bias and Gaussian sensor noise, clipped to [0, 1].

Sites are drawn on the driver (cheap); weather, simulation and noise run per batch of
sites, each batch seeded by (seed, batch index) and written as its own shard, so a killed
build resumes where it stopped. Batches run as Ray tasks when Ray is initialized or an
address is given, in this process otherwise (the solver is numba-parallel either way).
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from sptf_ray import storage
from sptf_ray.config import config_hash, load_config, save_config
from sptf_ray.data import schema
from sptf_ray.data.soils import (RandomEffectConfig, sample_bulk_density, sample_texture,
                                 texture_class, true_parameters)
from sptf_ray.data.weather import DAYS_PER_YEAR, Climate, generate_weather, sample_climates
from sptf_ray.physics.parameters import PARAM_NAMES

TRUTH_FILE = "truth.parquet"
CLIMATE_FILE = "climate.parquet"
CONFIG_FILE = "config.yaml"
SHARDS_DIR = "_shards"

MAX_SENSOR_ERROR_SD = 0.1  # m3/m3

# Independent random streams, so adding draws to one never shifts another.
_STREAM_SITES, _STREAM_WEATHER, _STREAM_NOISE = 0, 1, 2


@dataclass(frozen=True)
class NetworkConfig:
    """Everything that determines a virtual network (saved beside it as config.yaml)."""

    n_sites: int = 1200
    n_years: int = 3  # >= 3: at least two consecutive (historical, target) year pairs
    seed: int = 0
    start_year: int = 2015
    vgm_fraction: float = 0.5  # share of sites whose truth_model is VGM (the rest FXW-M3)
    # Per-site Gaussian sensor noise sd, drawn uniformly in [min, max].
    sensor_noise_sd_min: float = 0.01
    sensor_noise_sd_max: float = 0.02
    sensor_bias_sd: float = 0.01  # per-site constant offset ~ N(0, sd)
    sites_per_task: int = 25  # batch size: one shard, one Ray task (weather depends on it)
    cpus_per_task: int = 1  # Ray CPUs per task, also the numba threads inside it
    random_effects: RandomEffectConfig = field(default_factory=RandomEffectConfig)

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        if self.n_sites < 1:
            raise ValueError(f"n_sites must be >= 1, got {self.n_sites}")
        if self.n_years < 3:
            raise ValueError(f"n_years must be >= 3 (two historical/target pairs), got {self.n_years}")
        if not 0.0 <= self.vgm_fraction <= 1.0:
            raise ValueError(f"vgm_fraction must lie in [0, 1], got {self.vgm_fraction}")
        if not 0.0 <= self.sensor_noise_sd_min <= self.sensor_noise_sd_max:
            raise ValueError("need 0 <= sensor_noise_sd_min <= sensor_noise_sd_max, got "
                             f"{self.sensor_noise_sd_min}, {self.sensor_noise_sd_max}")
        if self.sensor_bias_sd < 0:
            raise ValueError(f"sensor_bias_sd must be >= 0, got {self.sensor_bias_sd}")
        # In m3/m3: SWC itself spans ~0.05-0.5, so a larger error only clips readings to 0 or 1.
        if max(self.sensor_noise_sd_max, self.sensor_bias_sd) > MAX_SENSOR_ERROR_SD:
            raise ValueError(f"sensor_noise_sd_max ({self.sensor_noise_sd_max}) and sensor_bias_sd "
                             f"({self.sensor_bias_sd}) must be <= {MAX_SENSOR_ERROR_SD} m3/m3")
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")
        if self.sites_per_task < 1 or self.cpus_per_task < 1:
            raise ValueError("sites_per_task and cpus_per_task must be >= 1")
        if not 1900 <= self.start_year <= 2200:
            raise ValueError(f"start_year out of range: {self.start_year}")

    @property
    def n_days(self) -> int:
        return self.n_years * DAYS_PER_YEAR


@dataclass(frozen=True)
class VirtualSites:
    """Site-level draws: static table, truth table and climate table, one row per site."""

    sites: pd.DataFrame
    truth: pd.DataFrame
    climate: pd.DataFrame


# --------------------------------------------------------------------------- site draws
def draw_sites(config: NetworkConfig) -> VirtualSites:
    """Climate, soil, land cover, truth model, true parameters and sensor of every site."""
    n = config.n_sites
    rng = np.random.default_rng([config.seed, _STREAM_SITES])
    site_id = np.array([f"V{i:05d}" for i in range(n)], dtype=object)
    climate = sample_climates(n, rng)
    texture = sample_texture(n, rng)
    bulk_density = sample_bulk_density(texture[:, 0], rng)
    classes = texture_class(*texture.T)
    params = true_parameters(classes, bulk_density, climate.land_cover, rng, config.random_effects)
    n_vgm = int(round(n * config.vgm_fraction))
    truth_model = rng.permutation(np.array(["vgm"] * n_vgm + ["fxw"] * (n - n_vgm), dtype=object))
    lon = np.round(rng.uniform(-180.0, 180.0, n), 4)

    sites = pd.DataFrame({
        "site_id": site_id, "lat": np.round(climate.lat, 4), "lon": lon,
        "sand": texture[:, 0], "silt": texture[:, 1], "clay": texture[:, 2],
        "bulk_density": bulk_density, "texture_class": classes,
        "land_cover": climate.land_cover, "source": "virtual",
    })
    sites = sites.astype({**schema.STATIC_COLUMNS, **schema.STATIC_OPTIONAL_COLUMNS})

    truth = {"site_id": site_id, "truth_model": truth_model}
    for model in ("vgm", "fxw"):
        for j, name in enumerate(PARAM_NAMES[model]):
            truth[f"{model}_{name}"] = params[model][:, j]
    truth["noise_sd"] = rng.uniform(config.sensor_noise_sd_min, config.sensor_noise_sd_max, n)
    truth["bias"] = rng.normal(0.0, config.sensor_bias_sd, n)
    truth = pd.DataFrame(truth).astype({"site_id": "string", "truth_model": "string"})

    climate_table = pd.DataFrame({"site_id": site_id, **climate.to_columns()})
    climate_table = climate_table.astype({"site_id": "string", "land_cover": "string"})
    return VirtualSites(sites=sites, truth=truth, climate=climate_table)


def truth_parameters(truth: pd.DataFrame) -> np.ndarray:
    """(S, 6) parameters of each row's own truth_model, Table 1 column order."""
    out = np.empty((len(truth), 6))
    for model in ("vgm", "fxw"):
        rows = (truth["truth_model"] == model).to_numpy()
        out[rows] = truth.loc[rows, [f"{model}_{k}" for k in PARAM_NAMES[model]]].to_numpy()
    return out


# --------------------------------------------------------------------------- simulation
def simulate_years(truth_model, params, precip_cm, pet_cm, lai):
    """Noise-free SWC at 5 cm, each 365-day year simulated from a cold start.

    truth_model (S,) of "vgm"/"fxw", params (S, 6), forcings (S, T) with T a whole number of
    years. Returns (swc (S, T), solver status bit flags per site OR-ed over its years (S,)).
    A simulation that fails is not raised: its site is flagged (see failed_status) and its
    later days are NaN, so one bad draw never sinks a whole build.
    """
    from sptf_ray.physics import bulk_config, simulate  # the numba solver; imported late (compile cost)

    truth_model = np.asarray(truth_model)
    precip_cm, pet_cm, lai = (np.asarray(a, dtype=np.float64) for a in (precip_cm, pet_cm, lai))
    n_sites, n_days = precip_cm.shape
    if n_days % DAYS_PER_YEAR:
        raise ValueError(f"forcing length {n_days} is not a whole number of {DAYS_PER_YEAR}-day years")
    n_years = n_days // DAYS_PER_YEAR
    swc = np.full((n_sites, n_days), np.nan)
    status = np.zeros(n_sites, dtype=np.int64)
    for model in ("vgm", "fxw"):
        idx = np.flatnonzero(truth_model == model)
        if idx.size == 0:
            continue
        # (sites, years*365) -> (sites*years, 365): row k is site k // n_years, year k % n_years.
        by_year = lambda a: a[idx].reshape(idx.size * n_years, DAYS_PER_YEAR)  # noqa: E731
        result = simulate(model, np.repeat(params[idx], n_years, axis=0),
                          by_year(precip_cm), by_year(pet_cm), by_year(lai), config=bulk_config(),
                          raise_on_failure=False)
        swc[idx] = np.asarray(result.swc).reshape(idx.size, n_days)
        status[idx] = np.bitwise_or.reduce(np.asarray(result.status).reshape(idx.size, n_years), axis=1)
    unknown = ~np.isin(truth_model, ("vgm", "fxw"))
    if unknown.any():
        raise ValueError(f"unknown truth_model values {sorted(set(truth_model[unknown]))}")
    return swc, status


def failed_status(status) -> np.ndarray:
    """True where a solver status says the run failed (NaN days), not merely flagged."""
    import sptf_ray.physics as physics

    # Bits for "failed, later days NaN"; other bits (e.g. "needed tiny steps") are benign.
    fatal = getattr(physics, "STATUS_FAILED", 2) | getattr(physics, "STATUS_STEP_LIMIT", 4)
    return (np.asarray(status) & fatal) != 0


def year_dates(start_year: int, n_years: int) -> pd.DatetimeIndex:
    """365 dates per year from 1 January (leap years lose 31 December, DESIGN section 0)."""
    return pd.DatetimeIndex(np.concatenate([
        pd.date_range(f"{start_year + y}-01-01", periods=DAYS_PER_YEAR, freq="D").to_numpy()
        for y in range(n_years)
    ]))


def simulate_batch(config: NetworkConfig, batch_index: int, climate: pd.DataFrame,
                   truth: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
    """Weather, noise-free and observed SWC of one batch: (daily rows, solver status per site)."""
    weather = generate_weather(Climate.from_columns(climate), config.n_days,
                               np.random.default_rng([config.seed, _STREAM_WEATHER, batch_index]))
    swc_true, status = simulate_years(truth["truth_model"].to_numpy(), truth_parameters(truth),
                                      weather.precip_cm, weather.pet_cm, weather.lai)
    noise_rng = np.random.default_rng([config.seed, _STREAM_NOISE, batch_index])
    noise = noise_rng.standard_normal(swc_true.shape) * truth["noise_sd"].to_numpy()[:, None]
    swc = np.clip(swc_true + truth["bias"].to_numpy()[:, None] + noise, 0.0, 1.0)

    n_sites, n_days = swc.shape
    daily = pd.DataFrame({
        "site_id": np.repeat(truth["site_id"].to_numpy(dtype=object), n_days),
        "date": np.tile(year_dates(config.start_year, config.n_years).to_numpy(), n_sites),
        "swc": swc.ravel(), "precip_cm": weather.precip_cm.ravel(), "pet_cm": weather.pet_cm.ravel(),
        "lai": weather.lai.ravel(), "lst_c": weather.lst_c.ravel(),
        # Beyond the schema: the noise-free truth, and air temperature for the frost fallback.
        "swc_true": swc_true.ravel(), "tair_c": weather.tair_c.ravel(),
    })
    return daily.astype({"site_id": "string", "date": "datetime64[ns]"}), status


def _run_batch(config: NetworkConfig, batch_index: int, climate: pd.DataFrame,
               truth: pd.DataFrame, shard_uri: str, numba_threads: int | None = None) -> dict:
    """Simulate one batch and write its shard atomically; returns a small summary."""
    if numba_threads is not None:
        import numba

        numba.set_num_threads(max(1, min(numba_threads, numba.config.NUMBA_NUM_THREADS)))
    daily, status = simulate_batch(config, batch_index, climate, truth)
    daily["status"] = np.repeat(status, config.n_days)
    storage.atomic_write_parquet(daily, shard_uri)
    return {"batch": batch_index, "n_sites": len(truth), "n_failed": int(failed_status(status).sum())}


# --------------------------------------------------------------------------- orchestration
def _batches(n_sites: int, size: int) -> list[np.ndarray]:
    return [np.arange(start, min(start + size, n_sites)) for start in range(0, n_sites, size)]


def _use_ray(executor: str, address: str | None) -> bool:
    if executor not in ("auto", "ray", "local"):
        raise ValueError(f"executor must be 'auto', 'ray' or 'local', got {executor!r}")
    if executor != "auto":
        return executor == "ray"
    if address:
        return True
    ray = sys.modules.get("ray")  # never import Ray just to learn it is not running
    return bool(ray is not None and ray.is_initialized())


def _run_pending(config, pending, climate, truth, shard_uri, executor, address, progress):
    """Run the batches not yet on disk, in Ray tasks or in this process, reporting progress."""
    total_sites = sum(len(idx) for _, idx in pending)
    done_sites, started = 0, time.time()

    def report(summary):
        nonlocal done_sites
        done_sites += summary["n_sites"]
        elapsed = time.time() - started
        eta = elapsed / done_sites * (total_sites - done_sites)
        failed = f", {summary['n_failed']} failed" if summary["n_failed"] else ""
        progress(f"build-network: batch {summary['batch']} done{failed} "
                 f"({done_sites}/{total_sites} sites, {elapsed:.0f} s, ~{eta:.0f} s left)")

    if not _use_ray(executor, address):
        for b, idx in pending:
            report(_run_batch(config, b, climate.iloc[idx], truth.iloc[idx], shard_uri(b)))
        return
    import ray

    if not ray.is_initialized():
        ray.init(address=address)
    from sptf_ray.jobs_common import check_resources

    check_resources({"CPU": config.cpus_per_task}, 1, "network tasks", ": lower cpus_per_task")
    task = ray.remote(num_cpus=config.cpus_per_task)(_run_batch)
    refs = [task.remote(config, b, climate.iloc[idx], truth.iloc[idx], shard_uri(b), config.cpus_per_task)
            for b, idx in pending]
    while refs:
        ready, refs = ray.wait(refs, num_returns=1)
        report(ray.get(ready[0]))


def build_network(config, out: str, address: str | None = None, executor: str = "auto",
                  progress=print) -> dict:
    """Build (or finish, or confirm) the virtual network `config` under `out`; returns its manifest.

    executor: "ray" (tasks; joins `address` if Ray is not initialized), "local" (this
    process), or "auto": Ray when it is initialized or an address is given, else local.
    """
    config = load_config(NetworkConfig, config)
    out = str(out)
    digest = config_hash(config)
    if storage.verify_manifest(out):
        manifest = storage.read_manifest(out)
        if manifest["extra"].get("config_hash") == digest:
            progress(f"build-network: {out} already complete")
            return manifest
        raise ValueError(f"{out} holds a different virtual network; choose another --out or delete it")
    storage.makedirs(out)
    drawn = draw_sites(config)
    # Shards live under the config's hash, so a changed config never mixes with old shards.
    shard_dir = storage.join(out, SHARDS_DIR, digest[:16])
    shard_uri = lambda b: storage.join(shard_dir, f"daily-{b:05d}.parquet")  # noqa: E731
    batches = list(enumerate(_batches(config.n_sites, config.sites_per_task)))
    pending = [(b, idx) for b, idx in batches if not storage.exists(shard_uri(b))]
    if len(pending) < len(batches):
        progress(f"build-network: resuming, {len(batches) - len(pending)}/{len(batches)} batches on disk")
    _run_pending(config, pending, drawn.climate, drawn.truth, shard_uri, executor, address, progress)
    return _assemble(config, out, drawn, [shard_uri(b) for b, _ in batches], digest, progress)


def _assemble(config, out, drawn: VirtualSites, shard_uris, digest, progress) -> dict:
    """Join the shards into the final tables, write the report, then the manifest last."""
    from sptf_ray.data.network_report import write_report

    daily = pd.concat([storage.read_parquet(u) for u in shard_uris], ignore_index=True)
    status = daily.groupby("site_id", sort=False)["status"].first()
    daily = daily.drop(columns="status")
    truth = drawn.truth.copy()
    truth["solver_status"] = status.reindex(truth["site_id"]).to_numpy().astype(np.int64)
    n_failed = int(failed_status(truth["solver_status"]).sum())
    if n_failed:
        progress(f"build-network: warning: the solver failed at {n_failed} sites (solver_status in "
                 f"{TRUTH_FILE}); their SWC is NaN from the failing day on, so QC will reject them")

    storage.atomic_write_parquet(drawn.sites, storage.join(out, schema.STATIC_FILE))
    storage.atomic_write_parquet(daily, storage.join(out, schema.DAILY_FILE))
    storage.atomic_write_parquet(truth, storage.join(out, TRUTH_FILE))
    storage.atomic_write_parquet(drawn.climate, storage.join(out, CLIMATE_FILE))
    save_config(config, storage.join(out, CONFIG_FILE))
    report_files = write_report(out, drawn.sites, daily)
    files = [schema.STATIC_FILE, schema.DAILY_FILE, TRUTH_FILE, CLIMATE_FILE, CONFIG_FILE, *report_files]
    manifest = storage.write_manifest(out, files, extra={
        "config_hash": digest, "kind": "virtual-network", "n_sites": config.n_sites,
        "n_years": config.n_years, "n_solver_failures": n_failed,
    })
    storage.remove(storage.join(out, SHARDS_DIR))
    progress(f"build-network: wrote {config.n_sites} sites x {config.n_years} years to {out}")
    return manifest


def load_network(out: str) -> dict:
    """{"sites", "daily", "truth", "climate"} DataFrames of a complete network directory."""
    if not storage.verify_manifest(out):
        raise FileNotFoundError(f"{out} is not a complete virtual network (manifest missing or stale)")
    names = {"sites": schema.STATIC_FILE, "daily": schema.DAILY_FILE,
             "truth": TRUTH_FILE, "climate": CLIMATE_FILE}
    return {key: storage.read_parquet(storage.join(out, name)) for key, name in names.items()}


def resimulate_site(network: dict, site_id: str) -> np.ndarray:
    """Noise-free SWC of one site re-simulated from its stored truth and forcing, shape (T,)."""
    truth = network["truth"].set_index("site_id")
    if site_id not in truth.index:
        raise KeyError(f"no site {site_id!r} in the network")
    daily = network["daily"]
    days = daily[daily["site_id"] == site_id].sort_values("date")
    row = truth.loc[[site_id]].reset_index()
    swc, _ = simulate_years(row["truth_model"].to_numpy(), truth_parameters(row),
                            days["precip_cm"].to_numpy()[None], days["pet_cm"].to_numpy()[None],
                            days["lai"].to_numpy()[None])
    return swc[0]
