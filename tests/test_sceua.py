"""SCE-UA: known optima of Duan's test functions, validation, stopping, batching."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from sptf_ray.inverse import SCEUAResult, SCEUASearch, run_lockstep, sceua
from sptf_ray.inverse.benchmark_functions import PROBLEMS, rosenbrock

TOLERANCE = 1e-3
SEEDS = range(20)
REQUIRED_SUCCESSES = 18

def _sphere(x):
    return np.sum(x**2, axis=1)


@pytest.mark.parametrize("name", list(PROBLEMS))
def test_reaches_known_optimum(name):
    """n_complexes and max_evals as a user would pick them (see Problem)."""
    problem = PROBLEMS[name]
    errors = []
    for seed in SEEDS:
        result = sceua(problem.function, problem.lower, problem.upper, seed=seed,
                       max_evals=problem.max_evals, n_complexes=problem.n_complexes)
        errors.append(abs(result.best_f - problem.f_star))
        assert result.n_evals <= problem.max_evals
    successes = sum(e <= TOLERANCE for e in errors)
    assert successes >= REQUIRED_SUCCESSES, f"{name}: {successes}/20, errors {errors}"


def test_result_fields_are_consistent():
    problem = PROBLEMS["rosenbrock"]
    result = sceua(problem.function, problem.lower, problem.upper, seed=1, max_evals=5000, n_complexes=3)
    assert isinstance(result, SCEUAResult)
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.best_f = 0.0
    assert result.best_f == pytest.approx(float(rosenbrock(result.best_x[None])[0]))
    assert result.history.shape == (result.n_loops + 1,)
    assert result.history["n_evals"][0] == 3 * 5
    assert result.history["n_evals"][-1] == result.n_evals
    assert result.history["best_f"][-1] == result.best_f
    assert np.all(np.diff(result.history["best_f"]) <= 0), "best value must never get worse"
    assert np.all(np.diff(result.history["n_evals"]) > 0)


def test_same_seed_same_result_and_different_seed_differs():
    problem = PROBLEMS["hartmann6"]
    run = lambda seed: sceua(problem.function, problem.lower, problem.upper, seed=seed,
                             max_evals=3000, n_complexes=6)
    first, again, other = run(7), run(7), run(8)
    np.testing.assert_array_equal(first.best_x, again.best_x)
    np.testing.assert_array_equal(first.history, again.history)
    assert first.n_evals == again.n_evals and first.reason == again.reason
    assert not np.array_equal(first.best_x, other.best_x)


def test_objective_receives_whole_batches():
    """Initial population in one call, then at most one row per complex per call."""
    n_complexes, n_params = 4, 3
    batch_sizes = []

    def objective(x):
        assert x.ndim == 2 and x.shape[1] == n_params
        batch_sizes.append(len(x))
        return _sphere(x)

    result = sceua(objective, -np.ones(n_params), np.ones(n_params), seed=0,
                   max_evals=2000, n_complexes=n_complexes)
    assert batch_sizes[0] == n_complexes * (2 * n_params + 1)
    # Every CCE step starts with one reflection per complex.
    assert batch_sizes.count(n_complexes) >= result.n_loops - 1
    assert max(batch_sizes[1:]) == n_complexes
    assert sum(batch_sizes) == result.n_evals


def test_result_does_not_depend_on_how_the_batch_is_evaluated():
    problem = PROBLEMS["shekel10"]
    row_by_row = lambda x: np.array([problem.function(row[None])[0] for row in x])
    kwargs = dict(seed=3, max_evals=3000, n_complexes=4)
    batched = sceua(problem.function, problem.lower, problem.upper, **kwargs)
    serial = sceua(row_by_row, problem.lower, problem.upper, **kwargs)
    np.testing.assert_array_equal(batched.best_x, serial.best_x)
    assert batched.n_evals == serial.n_evals


def test_stops_at_max_evals_without_exceeding_it():
    problem = PROBLEMS["griewank10"]
    seen = []
    objective = lambda x: seen.append(problem.function(x)) or seen[-1]
    result = sceua(objective, problem.lower, problem.upper, seed=0, max_evals=1000, n_complexes=10)
    assert result.reason == "max_evals"
    assert result.best_f == min(v.min() for v in seen), "a point cut short by the budget was lost"
    assert result.n_evals <= 1000
    assert result.n_evals > 1000 - 10, "stopped before the budget was (nearly) spent"


def test_stops_when_population_converges():
    result = sceua(_sphere, -np.ones(2), np.ones(2), seed=0, max_evals=100_000, n_complexes=2, peps=1e-3)
    assert result.reason == "converged_population"
    assert result.n_evals < 100_000


def test_stops_without_improvement():
    flat = lambda x: np.ones(len(x))
    result = sceua(flat, -np.ones(2), np.ones(2), seed=0, max_evals=100_000, n_complexes=2, kstop=5)
    assert result.reason == "no_improvement"
    assert result.n_loops == 5


def test_no_improvement_is_a_percentage_criterion():
    """pcento is in percent: a 1e-3 relative change over the window is 0.1 %."""
    def slowly_improving(x):
        return 1.0 + 1e-6 * np.sum(x**2, axis=1)

    common = dict(seed=0, max_evals=20_000, n_complexes=2, kstop=3, peps=0.0)
    strict = sceua(slowly_improving, -np.ones(2), np.ones(2), pcento=1e-6, **common)
    loose = sceua(slowly_improving, -np.ones(2), np.ones(2), pcento=1e-3, **common)
    assert loose.reason == "no_improvement"
    assert loose.n_loops < strict.n_loops


def test_defaults_are_spotpys():
    import inspect

    params = inspect.signature(sceua).parameters
    assert (params["kstop"].default, params["pcento"].default, params["peps"].default) == (100, 1e-7, 1e-7)


def test_nan_values_count_as_evaluations_and_lose():
    def nan_on_left_half(x):
        values = _sphere(x - 0.5)
        values[x[:, 0] < 0] = np.nan
        return values

    calls = []
    result = sceua(lambda x: calls.append(len(x)) or nan_on_left_half(x), -np.ones(2), np.ones(2),
                   seed=0, max_evals=3000, n_complexes=3)
    assert np.isfinite(result.best_f) and result.best_f < 1e-6
    assert result.n_evals == sum(calls)


def test_x0_is_evaluated_in_the_initial_population():
    optimum = np.array([0.25, -0.5])
    seen = []

    def objective(x):
        seen.append(x.copy())
        return _sphere(x - optimum)

    result = sceua(objective, -np.ones(2), np.ones(2), seed=0, max_evals=200, n_complexes=2, x0=optimum)
    np.testing.assert_array_equal(seen[0][0], optimum)
    assert result.best_f == 0.0


def test_callback_sees_every_loop():
    progress = []
    result = sceua(_sphere, -np.ones(2), np.ones(2), seed=0, max_evals=1000, n_complexes=2,
                   callback=progress.append)
    assert [p.n_loops for p in progress] == list(range(1, result.n_loops + 1))
    assert progress[-1].best_f == result.best_f


@pytest.mark.parametrize(
    "lower, upper, message",
    [
        ([0.0, 1.0], [1.0, 1.0], "lower must be < upper"),
        ([0.0, 2.0], [1.0, 1.0], "lower must be < upper"),
        ([0.0, -np.inf], [1.0, 1.0], "finite"),
        ([0.0, 0.0], [1.0, np.nan], "finite"),
        ([0.0, 0.0], [1.0, 1.0, 1.0], "equal"),
        ([], [], "non-zero length"),
    ],
)
def test_rejects_bad_bounds(lower, upper, message):
    with pytest.raises(ValueError, match=message):
        sceua(_sphere, lower, upper, seed=0, max_evals=1000, n_complexes=2)


def test_rejects_budget_not_above_population_size():
    with pytest.raises(ValueError, match="population size"):
        sceua(_sphere, -np.ones(2), np.ones(2), seed=0, max_evals=10, n_complexes=2)


@pytest.mark.parametrize("field", ["max_evals", "n_complexes", "kstop"])
@pytest.mark.parametrize("value", [0, -3, 2.5, True])
def test_rejects_non_positive_integer_counts(field, value):
    kwargs = dict(seed=0, max_evals=1000, n_complexes=2, kstop=100)
    kwargs[field] = value
    with pytest.raises(ValueError, match=field):
        sceua(_sphere, -np.ones(2), np.ones(2), **kwargs)


@pytest.mark.parametrize(
    "bad_objective",
    [
        lambda x: np.zeros((len(x), 1)),
        lambda x: np.zeros(len(x) + 1),
        lambda x: 0.0,
        lambda x: ["a"] * len(x),
    ],
)
def test_rejects_objective_with_wrong_output(bad_objective):
    with pytest.raises(ValueError, match="objective"):
        sceua(bad_objective, -np.ones(2), np.ones(2), seed=0, max_evals=1000, n_complexes=2)


@pytest.mark.parametrize("field, value", [("pcento", -1.0), ("peps", np.nan), ("seed", None)])
def test_rejects_bad_settings(field, value):
    kwargs = dict(seed=0, max_evals=1000, n_complexes=2)
    kwargs[field] = value
    with pytest.raises(ValueError, match=field):
        sceua(_sphere, -np.ones(2), np.ones(2), **kwargs)


@pytest.mark.parametrize("x0", [np.zeros(3), np.full(2, 5.0), np.zeros((11, 2))])
def test_rejects_bad_x0(x0):
    with pytest.raises(ValueError, match="x0"):
        sceua(_sphere, -np.ones(2), np.ones(2), seed=0, max_evals=1000, n_complexes=2, x0=x0)


def test_module_is_pure_numpy():
    import ast
    import inspect
    import sys

    source = inspect.getsource(sys.modules["sptf_ray.inverse.sceua"])
    imported = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert imported <= {"__future__", "dataclasses", "typing", "numpy"}


# ------------------------------------------------------------------------ ask/tell, lockstep
def test_lockstep_searches_each_find_what_they_find_alone():
    gp, h6 = PROBLEMS["goldstein_price"], PROBLEMS["hartmann6"]
    jobs = [(gp, 0), (h6, 1), (gp, 2)]  # different dimensions and run lengths in one lockstep
    searches = [SCEUASearch(p.lower, p.upper, seed=s, max_evals=p.max_evals, n_complexes=p.n_complexes)
                for p, s in jobs]
    rounds = []

    def evaluate_all(indices, batches):
        rounds.append(len(batches))
        assert all(not searches[i].done for i in indices)
        return [jobs[i][0].function(b) for i, b in zip(indices, batches)]

    together = run_lockstep(searches, evaluate_all)
    for (p, seed), got in zip(jobs, together):
        alone = sceua(p.function, p.lower, p.upper, seed=seed, max_evals=p.max_evals, n_complexes=p.n_complexes)
        np.testing.assert_array_equal(got.best_x, alone.best_x)
        assert (got.best_f, got.n_evals, got.n_loops, got.reason) == (
            alone.best_f, alone.n_evals, alone.n_loops, alone.reason)
        np.testing.assert_array_equal(got.history, alone.history)
    # every round serves all unfinished searches: 3 at first, fewer as they finish
    assert rounds[0] == 3 and rounds == sorted(rounds, reverse=True) and rounds[-1] == 1
    assert all(s.done for s in searches)


def test_ask_tell_contract():
    p = PROBLEMS["rosenbrock"]
    search = SCEUASearch(p.lower, p.upper, seed=0, max_evals=200, n_complexes=2)
    first = search.ask()
    assert first.shape == (10, 2)
    first[:] = 99.0  # the caller's copy: the search keeps its own points
    assert np.all(search.ask() != 99.0)
    with pytest.raises(ValueError, match="one value per row"):
        search.tell(np.zeros(3))
    search = SCEUASearch(p.lower, p.upper, seed=0, max_evals=200, n_complexes=2)
    while not search.done:
        search.tell(rosenbrock(search.ask()))
    assert search.result.n_evals <= 200 and search.result.reason == "max_evals"
    with pytest.raises(RuntimeError, match="done"):
        search.ask()
    with pytest.raises(RuntimeError, match="done"):
        search.tell(np.zeros(1))
    with pytest.raises(ValueError, match="2 value arrays for 1"):
        run_lockstep([SCEUASearch(p.lower, p.upper, seed=0, max_evals=200, n_complexes=2)],
                     lambda indices, batches: [rosenbrock(batches[0])] * 2)
