"""Site inversion (paper 2.3): SCE-UA on the frozen-mask MSE of SWC at 5 cm (eq. 17).

Protocol (DESIGN.md section 0):

- every simulated year starts cold (h = -100 cm everywhere at t = 0), forced by that year's
  P, PET and LAI; a year is 365 days;
- default mode ``"historical"``: calibrate on the historical year, score on the following
  (target) year, like the SPTF; mode ``"same_year"`` calibrates on the target year itself
  (an upper bound on a fit) and scores there;
- a day counts in the objective and in every metric only when LST >= 0 C (missing LST counts);
- parameters live in paper Table 1 bounds with theta_s's upper bound max(0.41, max SWC of the
  *calibration* year) (for "historical", the historical year: never the target year), and the
  search runs in unit space (log10 for alpha and Ks, `ParameterSpace.to_unit`);
- the forward model is pluggable (`ForwardModel`): the numba solver (`SolverForward`, exact)
  or the torch surrogate (`sptf_ray.models.forward.SurrogateForward`); `score_on_eval_year`
  re-scores results with another forward model (the solver, for surrogate-calibrated
  parameters); a simulation that does not converge (any non-finite day)
  scores +inf and is counted in ``n_failed``;
- many inversions run in lockstep (`invert_tasks`, `invert_sites`): each round, every
  unfinished search's batch goes into one forward call per model; each result equals the
  one the inversion gets alone (its own seed and random stream).

Nothing here imports Ray or torch.
"""
from __future__ import annotations

import time
import zlib
from dataclasses import dataclass, field
from typing import Iterable, Optional, Protocol, runtime_checkable

import numpy as np
import pandas as pd

from sptf_ray.data.validate import frozen_mask, site_year_blocks
from sptf_ray.inverse.sceua import SCEUASearch, run_lockstep
from sptf_ray.physics.parameters import MODELS, PARAM_NAMES, check_model, parameter_space, theta_s_upper

DAYS_PER_YEAR = 365
MODES = ("historical", "same_year")
# Union of both models' parameter names: the result table has one column each (NaN if unused).
ALL_PARAM_NAMES = ("theta_r", "theta_s", "alpha", "n", "m", "Ks", "H50")


# --------------------------------------------------------------------------- forward models
@runtime_checkable
class ForwardModel(Protocol):
    """Maps parameter sets and forcing to daily SWC at 5 cm, cold-started each call.

    ``simulate_batch(model, params (P, 6), precip, pet, lai (P, T) or (T,)) -> swc (P, T)``.
    A simulation that could not be completed has non-finite days in its row.
    """

    name: str

    def simulate_batch(self, model: str, params: np.ndarray, precip: np.ndarray, pet: np.ndarray,
                       lai: np.ndarray) -> np.ndarray: ...


class SolverForward:
    """The numba Richards solver (exact). Rows of failed simulations are all NaN."""

    name = "solver"

    def __init__(self, config=None, num_threads: Optional[int] = None):
        from sptf_ray.physics import bulk_config

        self.config = config if config is not None else bulk_config()
        if self.config.initial_head != -100.0:
            raise ValueError("the inversion protocol starts every year cold at h = -100 cm "
                             f"(SolverConfig.initial_head is {self.config.initial_head})")
        if num_threads is not None:
            import numba

            numba.set_num_threads(int(max(1, min(num_threads, numba.config.NUMBA_NUM_THREADS))))

    def simulate_batch(self, model, params, precip, pet, lai):
        from sptf_ray.physics import simulate

        result = simulate(model, params, precip, pet, lai, config=self.config, raise_on_failure=False)
        swc = np.array(result.swc, dtype=np.float64)
        swc[~result.ok] = np.nan
        return swc


def make_forward(spec: str = "solver", num_threads: Optional[int] = None) -> ForwardModel:
    """``"solver"`` (numba, exact) or the URI of a surrogate model bundle (torch, batched)."""
    if spec == "solver":
        return SolverForward(num_threads=num_threads)
    from sptf_ray.models.forward import SurrogateForward  # torch only when asked for

    return SurrogateForward(spec)


# --------------------------------------------------------------------------- data and metrics
def masked_mse(sim: np.ndarray, obs: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Eq. 17 per row of sim (P, T): mean squared error over the counted days.

    Rows with any non-finite counted day are +inf.
    """
    sim = np.atleast_2d(sim)
    err = sim[:, mask] - obs[mask]
    out = np.mean(err * err, axis=1)
    return np.where(np.isfinite(out), out, np.inf)


def rmse(sim, obs, mask) -> float:
    """Eq. 18 over the counted days."""
    return float(np.sqrt(masked_mse(np.asarray(sim, dtype=np.float64), obs, mask)[0]))


def nse(sim, obs, mask) -> float:
    """Eq. 19 over the counted days (NaN when the observations do not vary)."""
    s, o = np.asarray(sim, dtype=np.float64)[mask], np.asarray(obs, dtype=np.float64)[mask]
    denom = float(np.sum((o - o.mean()) ** 2))
    if not np.all(np.isfinite(s)):
        return float("-inf")
    return float(1.0 - np.sum((s - o) ** 2) / denom) if denom > 0 else float("nan")


@dataclass
class SiteYear:
    """One 365-day year of a site: observations (swc, lst_c) and forcing (precip, pet, lai)."""

    site_id: str
    year: int
    swc: np.ndarray
    precip: np.ndarray
    pet: np.ndarray
    lai: np.ndarray
    lst_c: np.ndarray

    @property
    def mask(self) -> np.ndarray:
        return frozen_mask(self.lst_c)

    def validate(self, min_valid_days: int = 30) -> "SiteYear":
        where = f"site {self.site_id!r} year {self.year}"
        for name in ("swc", "precip", "pet", "lai", "lst_c"):
            a = np.asarray(getattr(self, name), dtype=np.float64)
            setattr(self, name, a)
            if a.shape != (DAYS_PER_YEAR,):
                raise ValueError(f"{where}: {name} has {a.size} days, expected {DAYS_PER_YEAR} "
                                 "(run QC: validate_sites keeps complete 365-day years)")
        for name in ("swc", "precip", "pet", "lai"):
            a = getattr(self, name)
            bad = ~np.isfinite(a)
            if bad.any():
                raise ValueError(f"{where}: {name} has {int(bad.sum())} missing/non-finite day(s) "
                                 f"(first: day {int(np.flatnonzero(bad)[0]) + 1}); QC should have "
                                 "interpolated or rejected this year")
            if (a < 0).any():
                raise ValueError(f"{where}: {name} has negative values")
        if (self.swc > 1).any():
            raise ValueError(f"{where}: swc exceeds 1 cm3/cm3 (percent instead of a fraction?)")
        n_valid = int(self.mask.sum())
        if n_valid < min_valid_days:
            raise ValueError(f"{where}: only {n_valid} unfrozen day(s) (LST >= 0 C), fewer than "
                             f"min_valid_days={min_valid_days}: too few observations to invert")
        return self


def all_site_years(daily: pd.DataFrame) -> dict[str, dict[int, SiteYear]]:
    """{site: {calendar year: SiteYear}} of a daily table (schema.py columns), cut for every site
    at once; an incomplete year is kept, for SiteYear.validate to say what it lacks."""
    return {sid: {year: SiteYear(sid, year, *block.T.copy()) for year, block in blocks.items()}
            for sid, blocks in site_year_blocks(daily, complete_only=False).items()}


def site_years(daily: pd.DataFrame, site_id: str) -> dict[int, SiteYear]:
    """The years of one site in a daily table, keyed by calendar year (see all_site_years)."""
    rows = daily[daily["site_id"].astype(str) == str(site_id)]
    if rows.empty:
        raise ValueError(f"site {site_id!r}: no rows in the daily table")
    return all_site_years(rows)[str(site_id)]


def year_pairs(years: dict[int, SiteYear], samples: str = "all") -> list[tuple[int, int]]:
    """(historical, target) pairs of consecutive complete years; ``samples="last"`` keeps the latest."""
    full = sorted(y for y, sy in years.items() if np.size(sy.swc) == DAYS_PER_YEAR)
    pairs = [(y, y + 1) for y in full if y + 1 in full]
    if samples == "last":
        pairs = pairs[-1:]
    elif samples != "all":
        raise ValueError(f"samples must be 'all' or 'last', got {samples!r}")
    return pairs


# --------------------------------------------------------------------------- inversion
@dataclass
class SCEUASettings:
    """SCE-UA settings of a site inversion. Stopping rules default to spotpy's (DESIGN section 0)."""

    max_evals: int = 2000
    n_complexes: int = 4
    kstop: int = 100
    pcento: float = 1e-7
    peps: float = 1e-7
    seed: int = 0

    def validate(self) -> None:
        if self.max_evals < 1 or self.n_complexes < 1 or self.kstop < 1:
            raise ValueError("max_evals, n_complexes and kstop must be >= 1")
        if self.max_evals <= self.n_complexes * (2 * 6 + 1):
            raise ValueError(f"max_evals={self.max_evals} must exceed one initial population "
                             f"({self.n_complexes} complexes x 13 points)")
        if not (self.pcento >= 0 and self.peps >= 0):
            raise ValueError("pcento and peps must be >= 0")


def site_seed(seed: int, site_id: str, model: str, mode: str, year: int) -> int:
    """A per-inversion seed that does not depend on the order sites are run in."""
    key = f"{seed}|{site_id}|{model}|{mode}|{year}".encode()
    return zlib.crc32(key)


class _Objective:
    """Eq. 17 of unit-space points against one calibration year; counts failed simulations.
    The forward call is the caller's (`_forward_rows`), so many objectives share one."""

    def __init__(self, space, year: SiteYear):
        self.space, self.year = space, year
        self.n_failed = 0

    def params(self, unit: np.ndarray) -> np.ndarray:
        return self.space.from_unit(np.clip(unit, 0.0, 1.0))

    def values(self, swc: np.ndarray) -> np.ndarray:
        values = masked_mse(swc, self.year.swc, self.year.mask)
        self.n_failed += int(np.sum(~np.isfinite(values)))
        return values


def _forward_rows(forward: ForwardModel, model: str, params: list[np.ndarray], years: list[SiteYear]) -> list:
    """One batched forward call for several (params (P_i, 6), year) pairs; SWC (P_i, T) each."""
    counts = [len(p) for p in params]
    forcing = {k: np.concatenate([np.broadcast_to(getattr(y, k), (n, DAYS_PER_YEAR)) for y, n in zip(years, counts)])
               for k in ("precip", "pet", "lai")}
    swc = forward.simulate_batch(model, np.concatenate(params), forcing["precip"], forcing["pet"], forcing["lai"])
    return np.split(swc, np.cumsum(counts)[:-1])


@dataclass
class InversionResult:
    site_id: str
    model: str
    mode: str
    calib_year: int
    eval_year: int
    params: np.ndarray
    objective: float  # eq. 17 on the calibration year
    calib_rmse: float
    nse: float  # on the evaluation year (the target year)
    rmse: float
    n_evals: int
    n_failed: int
    n_loops: int
    reason: str
    seconds: float
    theta_s_upper: float
    seed: int
    forward: str
    extra: dict = field(default_factory=dict)

    def to_row(self) -> dict:
        row = {"site_id": self.site_id, "model": self.model, "mode": self.mode,
               "calib_year": self.calib_year, "eval_year": self.eval_year}
        names = PARAM_NAMES[self.model]
        row.update({k: (float(self.params[names.index(k)]) if k in names else np.nan) for k in ALL_PARAM_NAMES})
        row.update({"objective": self.objective, "calib_rmse": self.calib_rmse, "nse": self.nse,
                    "rmse": self.rmse, "evaluations": self.n_evals, "failed_simulations": self.n_failed,
                    "loops": self.n_loops, "reason": self.reason, "seconds": self.seconds,
                    "theta_s_upper": self.theta_s_upper, "seed": self.seed, "forward": self.forward})
        return row


@dataclass(frozen=True)
class InversionTask:
    """One inversion: `model` calibrated on `calib`, scored on `evaluate`."""

    model: str
    calib: SiteYear
    evaluate: SiteYear
    mode: str = "historical"
    seed: Optional[int] = None  # None: site_seed(settings.seed, ...)


def invert_year(model: str, calib: SiteYear, evaluate: Optional[SiteYear], forward: ForwardModel,
                settings: SCEUASettings | None = None, *, mode: str = "historical", seed: Optional[int] = None,
                min_valid_days: int = 30) -> InversionResult:
    """Calibrate `model` on `calib` (eq. 17), then score the best parameters on `evaluate`.

    `evaluate=None` scores on the calibration year. theta_s's upper bound comes from `calib`.
    """
    task = InversionTask(check_model(model), calib, evaluate if evaluate is not None else calib, mode, seed)
    return invert_tasks([task], forward, settings, min_valid_days=min_valid_days)[0]


def invert_tasks(tasks: list[InversionTask], forward: ForwardModel, settings: SCEUASettings | None = None, *,
                 min_valid_days: int = 30) -> list[InversionResult]:
    """Several inversions in lockstep: every round, the SCE-UA batches of all unfinished tasks of
    a model go through one forward call (a bigger batch for the surrogate or numba's threads).
    Each result is what the task gives alone; its `seconds` is its share of its model's wall time."""
    settings = settings or SCEUASettings()
    settings.validate()
    models = [check_model(t.model) for t in tasks]
    results: dict[int, Optional[InversionResult]] = {}
    for model in dict.fromkeys(models):
        group = [i for i, m in enumerate(models) if m == model]
        results.update(zip(group, _invert_model_group(model, [tasks[i] for i in group], forward, settings,
                                                      min_valid_days)))
    ordered = [results[i] for i in range(len(tasks))]
    failed = [t for t, r in zip(tasks, ordered) if r is None]
    if failed:
        raise SimulationsFailed(failed, ordered)
    return ordered


class SimulationsFailed(RuntimeError):
    """Every simulation of some tasks failed (no parameter set ran through): no best parameters.
    `results` holds the other tasks' results (None where failed), so lockstep neighbours are kept."""

    def __init__(self, failed: list[InversionTask], results: list[Optional[InversionResult]]):
        self.failed_sites = sorted({t.calib.site_id for t in failed})
        self.results = results
        which = "; ".join(f"site {t.calib.site_id!r} {t.model} ({t.mode}, year {t.calib.year})" for t in failed[:10])
        super().__init__(f"every simulation failed for {len(failed)} inversion(s): {which} (the forward model "
                         "returned no finite SWC for any parameter set: check the site's forcing)")


def _invert_model_group(model, tasks, forward, settings, min_valid_days) -> list[Optional[InversionResult]]:
    t0 = time.perf_counter()
    for t in tasks:
        t.calib.validate(min_valid_days)
        if t.evaluate is not t.calib:
            t.evaluate.validate(min_valid_days)
    uppers = [theta_s_upper(float(np.max(t.calib.swc))) for t in tasks]
    objectives = [_Objective(parameter_space(model, theta_s_upper=u), t.calib) for t, u in zip(tasks, uppers)]
    seeds = [t.seed if t.seed is not None else site_seed(settings.seed, t.calib.site_id, model, t.mode, t.calib.year)
             for t in tasks]
    searches = [SCEUASearch(np.zeros(6), np.ones(6), seed=sd, max_evals=settings.max_evals,
                            n_complexes=settings.n_complexes, kstop=settings.kstop, pcento=settings.pcento,
                            peps=settings.peps) for sd in seeds]

    def evaluate_all(indices, batches):
        params = [objectives[i].params(b) for i, b in zip(indices, batches)]
        swc = _forward_rows(forward, model, params, [tasks[i].calib for i in indices])
        return [objectives[i].values(s) for i, s in zip(indices, swc)]

    found = run_lockstep(searches, evaluate_all)
    ok = [k for k, r in enumerate(found) if np.isfinite(r.best_f)]  # the others: every simulation failed
    best = {k: objectives[k].params(found[k].best_x[None, :])[0] for k in ok}
    sims = dict(zip(ok, _final_runs(forward, model, [best[k][None, :] for k in ok], [tasks[k] for k in ok])))
    seconds = (time.perf_counter() - t0) / len(tasks)
    name = getattr(forward, "name", type(forward).__name__)
    results: list[Optional[InversionResult]] = [None] * len(tasks)
    for k in ok:
        t, r, (calib_swc, eval_swc) = tasks[k], found[k], sims[k]
        results[k] = InversionResult(
            site_id=t.calib.site_id, model=model, mode=t.mode, calib_year=t.calib.year, eval_year=t.evaluate.year,
            params=best[k], objective=float(r.best_f), calib_rmse=rmse(calib_swc, t.calib.swc, t.calib.mask),
            nse=nse(eval_swc, t.evaluate.swc, t.evaluate.mask), rmse=rmse(eval_swc, t.evaluate.swc, t.evaluate.mask),
            n_evals=int(r.n_evals), n_failed=objectives[k].n_failed, n_loops=int(r.n_loops), reason=r.reason,
            seconds=seconds, theta_s_upper=uppers[k], seed=int(seeds[k]), forward=name)
    return results


def _final_runs(forward, model, best, tasks) -> list[tuple[np.ndarray, np.ndarray]]:
    """Each task's best parameters on its calibration and its evaluation year, in one call."""
    if not tasks:
        return []
    years = [y for t in tasks for y in (t.calib, t.evaluate)]
    swc = _forward_rows(forward, model, [b for b in best for _ in range(2)], years)
    return [(swc[2 * k][0], swc[2 * k + 1][0]) for k in range(len(tasks))]


def site_tasks(site_id: str, years: dict[int, SiteYear], *, models: Iterable[str] = MODELS,
               modes: Iterable[str] = ("historical",), samples: str = "all") -> list[InversionTask]:
    """Every (year pair, model, mode) inversion of one site, in result-table order."""
    modes = tuple(modes)
    bad = [m for m in modes if m not in MODES]
    if bad:
        raise ValueError(f"unknown inversion mode(s) {bad}: expected {MODES}")
    pairs = year_pairs(years, samples)
    if not pairs:
        have = sorted(years)
        raise ValueError(f"site {site_id!r}: no two consecutive complete ({DAYS_PER_YEAR}-day) years "
                         f"(years present: {have}); a site needs a historical and a target year")
    return [InversionTask(check_model(model), years[hist] if mode == "historical" else years[target], years[target],
                          mode)
            for hist, target in pairs for model in models for mode in modes]


def invert_site(site_id: str, years: dict[int, SiteYear], forward: ForwardModel, *,
                models: Iterable[str] = MODELS, modes: Iterable[str] = ("historical",), samples: str = "all",
                settings: SCEUASettings | None = None, min_valid_days: int = 30) -> pd.DataFrame:
    """Every (model, mode, year pair) inversion of one site, as result-table rows."""
    return invert_sites({site_id: years}, forward, models=models, modes=modes, samples=samples, settings=settings,
                        min_valid_days=min_valid_days)


def invert_sites(sites: dict[str, dict[int, SiteYear]], forward: ForwardModel, *, models: Iterable[str] = MODELS,
                 modes: Iterable[str] = ("historical",), samples: str = "all", settings: SCEUASettings | None = None,
                 min_valid_days: int = 30) -> pd.DataFrame:
    """In-process inversion of several sites in lockstep (`invert_tasks`): each round, one forward
    call per model carries every unfinished site's SCE-UA batch. Rows in site order; a site's
    results equal those it gets alone. For many sites use `sptf_ray.inverse.job.run_inversion`
    (Ray actors, resumable), which hands each actor `sites_per_batch` sites at a time."""
    models, modes = tuple(models), tuple(modes)
    tasks = [t for sid, years in sites.items()
             for t in site_tasks(sid, years, models=models, modes=modes, samples=samples)]
    results = invert_tasks(tasks, forward, settings, min_valid_days=min_valid_days)
    return results_frame([r.to_row() for r in results])


def score_on_eval_year(table: pd.DataFrame, sites: dict[str, dict[int, SiteYear]],
                       forward: ForwardModel) -> pd.DataFrame:
    """`table`'s NSE and RMSE recomputed by simulating each row's parameters on its eval year with
    `forward` (same metrics and frozen mask as `invert_year`).

    For a surrogate-calibrated inversion this is the honest score: the parameters must reproduce
    the real model (the solver), not just the surrogate that was searched. Returns a copy of `table`.
    """
    out = table.copy()
    for model, rows in table.groupby("model", sort=False):
        years = [sites[str(s)][int(y)] for s, y in zip(rows["site_id"], rows["eval_year"])]
        params = rows[list(PARAM_NAMES[str(model)])].to_numpy(np.float64)
        forcing = {k: np.stack([getattr(y, k) for y in years]) for k in ("precip", "pet", "lai")}
        sims = forward.simulate_batch(str(model), params, forcing["precip"], forcing["pet"], forcing["lai"])
        out.loc[rows.index, "nse"] = [nse(s, y.swc, y.mask) for s, y in zip(sims, years)]
        out.loc[rows.index, "rmse"] = [rmse(s, y.swc, y.mask) for s, y in zip(sims, years)]
    return out


def validate_site(site_id: str, years: dict[int, SiteYear], samples: str = "all", min_valid_days: int = 30) -> None:
    """Raise ValueError naming what is wrong with a site before any simulation runs."""
    pairs = year_pairs(years, samples)
    if not pairs:
        raise ValueError(f"site {site_id!r}: no two consecutive complete ({DAYS_PER_YEAR}-day) years "
                         f"(days per year: { {y: int(np.size(s.swc)) for y, s in sorted(years.items())} }); "
                         "a site needs a historical and a target year")
    for y in sorted({y for pair in pairs for y in pair}):
        years[y].validate(min_valid_days)


RESULT_DTYPES = {
    "site_id": "string", "model": "string", "mode": "string", "calib_year": "int64", "eval_year": "int64",
    **{k: "float64" for k in ALL_PARAM_NAMES},
    "objective": "float64", "calib_rmse": "float64", "nse": "float64", "rmse": "float64",
    "evaluations": "int64", "failed_simulations": "int64", "loops": "int64", "reason": "string",
    "seconds": "float64", "theta_s_upper": "float64", "seed": "int64", "forward": "string",
}


def results_frame(rows: list[dict]) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=list(RESULT_DTYPES))
    return df.astype(RESULT_DTYPES)
