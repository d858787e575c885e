"""Shuffled Complex Evolution (SCE-UA; Duan et al. 1992, 1993, 1994), pure numpy.

Minimises ``objective`` over the box ``lower <= x <= upper``.

Algorithm (Duan et al. 1994, recommended settings, not user-tunable here)
---------------------------------------------------------------------------
* n parameters, ``n_complexes`` = p complexes of m = 2n+1 points each; population
  s = p*m, drawn uniformly in the box (``x0`` rows, if given, replace the first rows).
* Each shuffling loop: every complex makes beta = 2n+1 competitive complex evolution
  (CCE) steps; each step picks a sub-complex of q = n+1 points (the complex's best
  point always, the other n by Duan's triangular probability, best-ranked most likely,
  without replacement) and replaces the sub-complex's worst point once (alpha = 1) by
  its reflection through the centroid of the other q-1 points; if that is worse than
  the worst point, by the contraction half-way between worst point and centroid; if
  that is worse too, by a random point (accepted whatever its value). Then the
  complexes are merged, sorted and dealt out again (point k to complex k mod p).
* All complexes evolve in lockstep: each CCE step calls ``objective`` once with one
  reflection per complex, once more with the contractions of the complexes whose
  reflection failed, and once more with the random points of those whose contraction
  failed too. Random numbers are drawn in a fixed order that depends only on the
  objective's values, so a seed's result does not depend on how the objective
  evaluates its batch (serially, vectorised, in parallel).

Which of Duan's variants (his Fortran ``sceua.f`` and MATLAB ``sceua.m`` differ)
-------------------------------------------------------------------------------
* Random ("mutation") point and infeasible reflection: drawn uniformly in the
  smallest hypercube that contains the *complex*, as in Duan et al. (1992, 1994)
  CCE step (iv). The MATLAB code (and spotpy) draws in the full bounds, the Fortran
  code draws from a normal around the sub-complex's best point with the population's
  standard deviation. Measured on the six functions of ``benchmark_functions`` with
  their n_complexes, 50 seeds each (Griewank-10: 20): the hypercube reached the
  optimum in 50/50 runs everywhere; the full bounds succeeded in 48-50/50 but needed
  18-30 % more evaluations to reach it on Rosenbrock, six-hump camel and Griewank,
  and most of its runs never let the population converge, so they ran kstop more
  loops before stopping; the Gaussian was at most ~7 % cheaper but missed 3/50 on
  Hartmann-6. A point drawn in the full box is nearly always rejected
  once the complex has contracted, wasting the evaluation; the hypercube keeps
  exploring the region the complex still spans, and it lies inside the bounds.
* A reflection outside the bounds is not evaluated there: it is replaced by the
  random point above (all three codes replace it, they differ in where they draw).
* Failure test: a new point fails when its value is strictly greater than the
  worst point's (Fortran/MATLAB ``fnew > fw``), so ties are accepted and a complex
  can move across plateaus.

Stopping (checked after the initial population and after every shuffling loop, in
this order; ``reason`` names the first that holds)
------------------------------------------------------------------------------------
* ``"max_evals"``: the number of evaluations (rows passed to ``objective``) reached
  ``max_evals``, or the next batch would exceed it (the run stops before that call,
  so ``n_evals <= max_evals`` always; the interrupted loop counts in ``n_loops``).
* ``"converged_population"``: Duan's normalised geometric range
  ``gnrng = exp(mean_j(log((max_j - min_j) / (upper_j - lower_j))))`` over the whole
  population is below ``peps``.
* ``"no_improvement"``: once at least ``kstop`` loops ran, with ``b_k`` the best value
  after loop k (loop 1 is the first evolution loop) and L the current loop,
  ``100 * |b_L - b_{L-kstop+1}| / mean(|b_{L-kstop+1}|, ..., |b_L|) <= pcento``
  (a zero mean counts as 0; an infinite one, all values NaN/inf so far, never stops). This is spotpy's and MATLAB ``sceua.m``'s
  percentage-type criterion: ``pcento`` is in percent, so the default 1e-7 asks for
  a relative change below 1e-9 over the window.

Objective values: NaN counts as an evaluation and is treated as +inf (the point is
never preferred to a finite one), so a model that fails on part of the box can still
be calibrated. Any other non-numeric or wrongly shaped return raises ``ValueError``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

REASONS = ("max_evals", "no_improvement", "converged_population")

HISTORY_DTYPE = np.dtype([("n_evals", np.int64), ("best_f", np.float64)])


@dataclass(frozen=True)
class SCEUAResult:
    """Outcome of one SCE-UA run.

    ``history`` is a structured array with fields ``n_evals`` and ``best_f``: row 0
    after the initial population, row k after shuffling loop k (the last row is the
    final state, also when ``max_evals`` interrupted a loop), so it has
    ``n_loops + 1`` rows.
    """

    best_x: np.ndarray
    best_f: float
    n_evals: int
    n_loops: int
    reason: str
    history: np.ndarray


@dataclass(frozen=True)
class SCEUAProgress:
    """What ``callback`` receives after each shuffling loop."""

    n_loops: int
    n_evals: int
    best_x: np.ndarray
    best_f: float
    gnrng: float


class _BudgetExhausted(Exception):
    """Raised instead of calling the objective with more rows than the budget left."""


class _Evaluations:
    """Hands batches out (``yield``) and takes their values back; enforces the budget and
    the objective's contract, and tracks the best point."""

    def __init__(self, max_evals: int):
        self.max_evals = max_evals
        self.n_evals = 0
        # Tracked here, not read off the population, so a point evaluated in a CCE
        # step that the budget cut short is not lost.
        self.best_x: Optional[np.ndarray] = None
        self.best_f = np.inf

    def __call__(self, points: np.ndarray):
        """Generator: ``values = yield from evaluate(points)``."""
        n_points = points.shape[0]
        if self.n_evals + n_points > self.max_evals:
            raise _BudgetExhausted
        # A copy, so an objective that scribbles on its input cannot corrupt the search.
        values = yield points.copy()
        self.n_evals += n_points
        values = _checked_values(values, n_points)
        best = int(np.argmin(values))
        if self.best_x is None or values[best] < self.best_f:
            self.best_x, self.best_f = points[best].copy(), float(values[best])
        return values


def _checked_values(values, n_points: int) -> np.ndarray:
    try:
        values = np.asarray(values, dtype=float)
    except (TypeError, ValueError) as err:
        raise ValueError(f"objective must return {n_points} real numbers: {err}") from err
    if values.shape != (n_points,):
        raise ValueError(
            f"objective returned shape {values.shape} for a batch of {n_points} points; "
            f"it must return one value per row, shape ({n_points},)"
        )
    return np.where(np.isnan(values), np.inf, values)


def _validated_bounds(lower, upper) -> tuple[np.ndarray, np.ndarray]:
    lower = np.atleast_1d(np.asarray(lower, dtype=float))
    upper = np.atleast_1d(np.asarray(upper, dtype=float))
    if lower.ndim != 1 or lower.shape != upper.shape or lower.size == 0:
        raise ValueError(
            f"lower and upper must be 1-D of equal, non-zero length; got shapes "
            f"{lower.shape} and {upper.shape}"
        )
    if not (np.all(np.isfinite(lower)) and np.all(np.isfinite(upper))):
        raise ValueError("lower and upper must be finite")
    if not np.all(lower < upper):
        bad = np.flatnonzero(~(lower < upper)).tolist()
        raise ValueError(f"lower must be < upper in every dimension; not in {bad}")
    return lower, upper


def _validated_x0(x0, lower: np.ndarray, upper: np.ndarray, population_size: int):
    if x0 is None:
        return np.empty((0, lower.size))
    x0 = np.atleast_2d(np.asarray(x0, dtype=float))
    if x0.ndim != 2 or x0.shape[1] != lower.size or x0.shape[0] > population_size:
        raise ValueError(
            f"x0 must have shape ({lower.size},) or (k, {lower.size}) with "
            f"k <= {population_size}; got {x0.shape}"
        )
    if not np.all((x0 >= lower) & (x0 <= upper)):
        raise ValueError("x0 must lie within [lower, upper]")
    return x0


def _validated_settings(max_evals, n_complexes, kstop, pcento, peps, population_size_per_complex):
    for name, value in (("max_evals", max_evals), ("n_complexes", n_complexes), ("kstop", kstop)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be a positive integer; got {value!r}")
    for name, value in (("pcento", pcento), ("peps", peps)):
        if not (np.isfinite(value) and value >= 0):
            raise ValueError(f"{name} must be a finite number >= 0; got {value!r}")
    population_size = n_complexes * population_size_per_complex
    if max_evals <= population_size:
        raise ValueError(
            f"max_evals ({max_evals}) must exceed the population size "
            f"n_complexes * (2n+1) = {population_size}, or no evolution can happen"
        )
    return population_size


def _uniform_in_box(rng: np.random.Generator, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    return low + rng.random(np.shape(low)) * (high - low)


def _normalized_geometric_range(points: np.ndarray, lower, upper) -> float:
    spans = (points.max(axis=0) - points.min(axis=0)) / (upper - lower)
    with np.errstate(divide="ignore"):
        return float(np.exp(np.mean(np.log(spans))))


def _sorted_complexes(points: np.ndarray, values: np.ndarray, n_complexes: int):
    """Merge, sort and deal out: the k-th best point goes to complex k mod p."""
    order = np.argsort(values, kind="stable")
    n_params = points.shape[1]
    complexes = points[order].reshape(-1, n_complexes, n_params).transpose(1, 0, 2)
    complex_values = values[order].reshape(-1, n_complexes).T
    return np.ascontiguousarray(complexes), np.ascontiguousarray(complex_values)


def _select_subcomplexes(rng: np.random.Generator, n_complexes: int, m: int, q: int):
    """Rows of (sorted) positions: 0 always, q-1 others by Duan's triangular law.

    Duan draws rank i (0-based) with probability 2(m-i)/(m(m+1)) and redraws
    repeats; that is weighted sampling without replacement, done here for all
    complexes at once with Efraimidis-Spirakis keys u**(1/w) (largest keys win).
    """
    weights = (m - np.arange(1, m)).astype(float)
    keys = np.log(rng.random((n_complexes, m - 1))) / weights
    others = np.argsort(-keys, axis=1)[:, : q - 1] + 1
    chosen = np.concatenate([np.zeros((n_complexes, 1), dtype=int), others], axis=1)
    return np.sort(chosen, axis=1)


def _random_points(rng, complexes: np.ndarray, which: np.ndarray) -> np.ndarray:
    """Uniform points in the smallest hypercube holding each selected complex."""
    chosen = complexes[which]
    return _uniform_in_box(rng, chosen.min(axis=1), chosen.max(axis=1))


def _evolve_once(rng, complexes, complex_values, evaluate, lower, upper):
    """One lockstep CCE step (alpha = 1) of every complex, in place (a generator of batches)."""
    n_complexes, m, n_params = complexes.shape
    rows = np.arange(n_complexes)
    positions = _select_subcomplexes(rng, n_complexes, m, n_params + 1)
    simplex = complexes[rows[:, None], positions]
    worst, worst_f = simplex[:, -1], complex_values[rows, positions[:, -1]]
    centroid = simplex[:, :-1].mean(axis=1)

    candidate = 2.0 * centroid - worst
    outside = np.any((candidate < lower) | (candidate > upper), axis=1)
    if outside.any():
        candidate[outside] = _random_points(rng, complexes, np.flatnonzero(outside))
    candidate_f = yield from evaluate(candidate)

    failed = np.flatnonzero(candidate_f > worst_f)
    if failed.size:
        candidate[failed] = 0.5 * (worst[failed] + centroid[failed])
        candidate_f[failed] = yield from evaluate(candidate[failed])
        failed = failed[candidate_f[failed] > worst_f[failed]]
    if failed.size:
        candidate[failed] = _random_points(rng, complexes, failed)
        candidate_f[failed] = yield from evaluate(candidate[failed])

    complexes[rows, positions[:, -1]] = candidate
    complex_values[rows, positions[:, -1]] = candidate_f
    order = np.argsort(complex_values, axis=1, kind="stable")
    complexes[:] = np.take_along_axis(complexes, order[:, :, None], axis=1)
    complex_values[:] = np.take_along_axis(complex_values, order, axis=1)


def _no_improvement(best_per_loop: list[float], kstop: int, pcento: float) -> bool:
    """spotpy's / sceua.m's percentage change of the best value over kstop loops."""
    if len(best_per_loop) < kstop:
        return False
    window = np.asarray(best_per_loop[-kstop:])
    mean_magnitude = np.mean(np.abs(window))
    if not np.isfinite(mean_magnitude):
        return False
    if mean_magnitude == 0.0:
        return True
    return 100.0 * abs(window[-1] - window[0]) / mean_magnitude <= pcento


def sceua(
    objective: Callable[[np.ndarray], np.ndarray],
    lower,
    upper,
    *,
    seed,
    max_evals: int,
    n_complexes: int,
    kstop: int = 100,
    pcento: float = 1e-7,
    peps: float = 1e-7,
    x0=None,
    callback: Optional[Callable[[SCEUAProgress], None]] = None,
) -> SCEUAResult:
    """Minimise ``objective`` on the box [lower, upper] with SCE-UA (see module doc).

    ``objective`` maps a batch of points, shape (P, n), to values, shape (P,).
    ``seed`` feeds ``numpy.random.default_rng``. ``callback``, if given, is called
    with an :class:`SCEUAProgress` after every shuffling loop.
    """
    search = SCEUASearch(lower, upper, seed=seed, max_evals=max_evals, n_complexes=n_complexes,
                         kstop=kstop, pcento=pcento, peps=peps, x0=x0, callback=callback)
    while not search.done:
        search.tell(objective(search.ask()))
    return search.result


class SCEUASearch:
    """SCE-UA as ask/tell: ``ask()`` gives the next batch of points, ``tell(values)`` takes
    their objective values, until ``done``; then ``result``. Same arguments, rules and random
    stream as :func:`sceua`, which is this driven by one objective; the caller owns the
    evaluation, so many searches can share one batched forward call (:func:`run_lockstep`).
    """

    def __init__(self, lower, upper, *, seed, max_evals: int, n_complexes: int, kstop: int = 100,
                 pcento: float = 1e-7, peps: float = 1e-7, x0=None,
                 callback: Optional[Callable[[SCEUAProgress], None]] = None):
        lower, upper = _validated_bounds(lower, upper)
        m = 2 * lower.size + 1
        population_size = _validated_settings(max_evals, n_complexes, kstop, pcento, peps, m)
        start_points = _validated_x0(x0, lower, upper, population_size)
        if seed is None:
            raise ValueError("seed must be given (an int, SeedSequence or Generator) so runs repeat")
        self.result: Optional[SCEUAResult] = None
        self._steps = _search(np.random.default_rng(seed), lower, upper, n_complexes, population_size,
                              start_points, _Evaluations(max_evals), kstop, pcento, peps, callback)
        self._pending: Optional[np.ndarray] = None
        self._advance(lambda: next(self._steps))

    @property
    def done(self) -> bool:
        return self.result is not None

    def ask(self) -> np.ndarray:
        """The points to evaluate next, shape (P, n) (a copy: the caller may modify it)."""
        if self.done:
            raise RuntimeError("the search is done: read .result")
        return self._pending.copy()

    def tell(self, values) -> None:
        """The objective's values for the points of the last ``ask()``, shape (P,)."""
        if self.done:
            raise RuntimeError("the search is done: read .result")
        self._advance(lambda: self._steps.send(values))

    def _advance(self, step) -> None:
        try:
            self._pending = step()
        except StopIteration as stop:
            self._pending, self.result = None, stop.value


def run_lockstep(searches: list[SCEUASearch],
                 evaluate_all: Callable[[list[int], list[np.ndarray]], list[np.ndarray]]) -> list[SCEUAResult]:
    """Drive several searches together: each round, ``evaluate_all(indices, batches)`` gets the
    indices (into ``searches``) of the unfinished searches and the batch each asks for, and
    returns their values in that order. Each search's result is what it would be alone (its
    random stream is its own)."""
    while True:
        active = [i for i, s in enumerate(searches) if not s.done]
        if not active:
            return [s.result for s in searches]
        values = evaluate_all(active, [searches[i].ask() for i in active])
        if len(values) != len(active):
            raise ValueError(f"evaluate_all returned {len(values)} value arrays for {len(active)} batches")
        for i, v in zip(active, values):
            searches[i].tell(v)


def _search(rng, lower, upper, n_complexes, population_size, start_points, evaluate, kstop, pcento, peps,
            callback):
    """The SCE-UA run as a generator: yields batches, receives their values, returns the result."""
    n_params = lower.size
    m = 2 * n_params + 1
    points = _uniform_in_box(rng, np.broadcast_to(lower, (population_size, n_params)), upper)
    points[: len(start_points)] = start_points
    values = yield from evaluate(points)
    complexes, complex_values = _sorted_complexes(points, values, n_complexes)

    history = [(evaluate.n_evals, evaluate.best_f)]
    best_per_loop: list[float] = []
    n_loops = 0
    reason = _reason_to_stop(evaluate, complexes, lower, upper, peps, best_per_loop, kstop, pcento)
    while reason is None:
        n_loops += 1
        try:
            for _ in range(m):
                yield from _evolve_once(rng, complexes, complex_values, evaluate, lower, upper)
        except _BudgetExhausted:
            reason = "max_evals"
        all_points = complexes.reshape(-1, n_params)
        complexes, complex_values = _sorted_complexes(all_points, complex_values.ravel(), n_complexes)
        best_per_loop.append(evaluate.best_f)
        history.append((evaluate.n_evals, evaluate.best_f))
        if reason is None:
            reason = _reason_to_stop(evaluate, complexes, lower, upper, peps, best_per_loop, kstop, pcento)
        if callback is not None:
            callback(SCEUAProgress(n_loops, evaluate.n_evals, evaluate.best_x.copy(),
                                   evaluate.best_f,
                                   _normalized_geometric_range(all_points, lower, upper)))

    return SCEUAResult(
        best_x=evaluate.best_x,
        best_f=evaluate.best_f,
        n_evals=evaluate.n_evals,
        n_loops=n_loops,
        reason=reason,
        history=np.array(history, dtype=HISTORY_DTYPE),
    )


def _reason_to_stop(evaluate, complexes, lower, upper, peps, best_per_loop, kstop, pcento):
    if evaluate.n_evals >= evaluate.max_evals:
        return "max_evals"
    all_points = complexes.reshape(-1, complexes.shape[-1])
    if _normalized_geometric_range(all_points, lower, upper) < peps:
        return "converged_population"
    if _no_improvement(best_per_loop, kstop, pcento):
        return "no_improvement"
    return None
