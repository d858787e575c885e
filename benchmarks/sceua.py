"""sptf_ray's SCE-UA against spotpy's on Duan's six test functions.

    python benchmarks/sceua.py            # 20 seeds per function (a few minutes)
    python benchmarks/sceua.py --quick    # 3 seeds per function, smoke run

Both optimisers get the same problem, seeds, n_complexes, stopping rules (kstop=100,
pcento=1e-7, peps=1e-7) and budget of TRUE evaluations, counted here by wrapping the
objective (spotpy's own counter also counts each saved point a second time, so it
overstates; its ratio to the true count is shown). spotpy is given a nominal
``repetitions`` of twice the budget so its counter never stops it first, and the
wrapper ends it when the true budget is spent.

Metrics per function: success = the best value came within 1e-3 of f*; evaluations
to reach = the true evaluation count at which it first did (for ours the whole batch
that contained the hit is counted). Since SCE-UA never loses its best point, a run
that reached the tolerance succeeds, so spotpy runs are ended at the hit to save
time; ours run to their own stop. Exits 1 unless, for every function, ours succeeds
at least as often as spotpy (one seed of slack) with a median evaluations-to-reach
at most 1.25x spotpy's.

Needs the ``bench`` extra (spotpy).
"""
from __future__ import annotations

import argparse
import contextlib
import io
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sptf_ray.inverse import sceua  # noqa: E402
from sptf_ray.provenance import host_line  # noqa: E402
from sptf_ray.inverse.benchmark_functions import PROBLEMS, Problem  # noqa: E402

TOLERANCE = 1e-3
STOPPING = dict(kstop=100, pcento=1e-7, peps=1e-7)
MAX_EVALS_RATIO = 1.25


class _StopRun(Exception):
    """Ends a spotpy run: its budget of true evaluations is spent or it hit f*."""


class _EvaluationTracker:
    """Counts true evaluations and remembers when the optimum was first reached."""

    def __init__(self, problem: Problem, stop_at_hit: bool):
        self.problem = problem
        self.stop_at_hit = stop_at_hit
        self.n_evals = 0
        self.evals_to_reach = None

    def __call__(self, points: np.ndarray) -> np.ndarray:
        if self.n_evals + len(points) > self.problem.max_evals:
            raise _StopRun
        values = self.problem.function(points)
        self.n_evals += len(points)
        if self.evals_to_reach is None and np.any(np.abs(values - self.problem.f_star) <= TOLERANCE):
            self.evals_to_reach = self.n_evals
            if self.stop_at_hit:
                raise _StopRun
        return values


@dataclass
class RunOutcome:
    success: bool
    evals_to_reach: int | None
    n_evals: int
    counter_ratio: float = float("nan")


def run_ours(problem: Problem, seed: int) -> RunOutcome:
    tracker = _EvaluationTracker(problem, stop_at_hit=False)
    result = sceua(tracker, problem.lower, problem.upper, seed=seed,
                   max_evals=problem.max_evals, n_complexes=problem.n_complexes, **STOPPING)
    success = abs(result.best_f - problem.f_star) <= TOLERANCE
    return RunOutcome(success, tracker.evals_to_reach, tracker.n_evals)


class _SpotpySetup:
    def __init__(self, problem: Problem, tracker: _EvaluationTracker):
        import spotpy

        self._tracker = tracker
        # Explicit min/maxbound: spotpy otherwise rounds them from 1000 random draws.
        self._params = [
            spotpy.parameter.Uniform(f"x{i}", low, high, minbound=low, maxbound=high)
            for i, (low, high) in enumerate(zip(problem.lower, problem.upper))
        ]

    def parameters(self):
        import spotpy

        return spotpy.parameter.generate(self._params)

    def simulation(self, vector):
        return [float(self._tracker(np.asarray(vector, dtype=float)[None])[0])]

    def evaluation(self):
        return [0.0]

    def objectivefunction(self, simulation, evaluation, params=None):
        return simulation[0]


def run_spotpy(problem: Problem, seed: int) -> RunOutcome:
    import spotpy

    tracker = _EvaluationTracker(problem, stop_at_hit=True)
    with contextlib.redirect_stdout(io.StringIO()):
        sampler = spotpy.algorithms.sceua(_SpotpySetup(problem, tracker), dbformat="ram",
                                          random_state=seed, save_sim=False)
        try:
            sampler.sample(2 * problem.max_evals, ngs=problem.n_complexes, **STOPPING)
        except _StopRun:
            pass
    ratio = sampler.status.rep / max(tracker.n_evals, 1)
    return RunOutcome(tracker.evals_to_reach is not None, tracker.evals_to_reach,
                      tracker.n_evals, ratio)


@dataclass
class Summary:
    successes: int
    median_evals_to_reach: float
    seconds: float
    counter_ratio: float


def summarise(outcomes: list[RunOutcome], seconds: float) -> Summary:
    reached = [o.evals_to_reach for o in outcomes if o.success]
    median = float(np.median(reached)) if reached else float("inf")
    counter_ratios = [o.counter_ratio for o in outcomes if np.isfinite(o.counter_ratio)]
    counter_ratio = float(np.mean(counter_ratios)) if counter_ratios else float("nan")
    return Summary(sum(o.success for o in outcomes), median, seconds, counter_ratio)


def timed_runs(run, problem: Problem, seeds) -> Summary:
    start = time.perf_counter()
    outcomes = [run(problem, seed) for seed in seeds]
    return summarise(outcomes, time.perf_counter() - start)


def meets_bar(ours: Summary, theirs: Summary) -> bool:
    return (ours.successes >= theirs.successes - 1
            and ours.median_evals_to_reach <= MAX_EVALS_RATIO * theirs.median_evals_to_reach)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 seeds per function (smoke run)")
    parser.add_argument("--seeds", type=int, default=None, help="seeds per function (default 20)")
    parser.add_argument("--functions", default=",".join(PROBLEMS), help="comma-separated subset")
    args = parser.parse_args(argv)
    n_seeds = args.seeds or (3 if args.quick else 20)
    seeds = range(n_seeds)
    print(host_line())

    header = (f"{'function':16s} {'n':>2s} {'p':>2s} {'budget':>7s} | {'success':>15s} | "
              f"{'median evals to reach':>23s} {'ratio':>5s} | {'time s':>11s} | "
              f"{'spotpy ctr/true':>15s} | bar")
    print(f"SCE-UA, {n_seeds} seeds, tolerance {TOLERANCE}: columns 'ours spotpy'")
    print(header)
    print("-" * len(header))
    all_met = True
    for name in args.functions.split(","):
        problem = PROBLEMS[name]
        ours = timed_runs(run_ours, problem, seeds)
        theirs = timed_runs(run_spotpy, problem, seeds)
        met = meets_bar(ours, theirs)
        all_met &= met
        ratio = ours.median_evals_to_reach / theirs.median_evals_to_reach
        print(f"{name:16s} {problem.lower.size:2d} {problem.n_complexes:2d} {problem.max_evals:7d} | "
              f"{ours.successes:>3d}/{n_seeds:<3d} {theirs.successes:>3d}/{n_seeds:<3d} | "
              f"{ours.median_evals_to_reach:>11.0f} {theirs.median_evals_to_reach:>11.0f} {ratio:5.2f} | "
              f"{ours.seconds:5.1f} {theirs.seconds:5.1f} | {theirs.counter_ratio:15.2f} | "
              f"{'ok' if met else 'MISSED'}", flush=True)
    print("bar: ours succeeds >= spotpy - 1 seed, median evals <= "
          f"{MAX_EVALS_RATIO}x spotpy's: {'met' if all_met else 'MISSED'}")
    return 0 if all_met else 1


if __name__ == "__main__":
    sys.exit(main())
