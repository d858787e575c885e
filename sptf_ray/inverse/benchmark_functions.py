"""Standard global-optimisation test functions (Duan et al. 1992's set), vectorised.

Each takes a batch of points, shape (P, n), and returns (P,). Shared by
``tests/test_sceua.py`` and ``benchmarks/sceua.py`` so both check the same problems.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np


def goldstein_price(x: np.ndarray) -> np.ndarray:
    x1, x2 = x[:, 0], x[:, 1]
    a = 1 + (x1 + x2 + 1) ** 2 * (19 - 14 * x1 + 3 * x1**2 - 14 * x2 + 6 * x1 * x2 + 3 * x2**2)
    b = 30 + (2 * x1 - 3 * x2) ** 2 * (18 - 32 * x1 + 12 * x1**2 + 48 * x2 - 36 * x1 * x2 + 27 * x2**2)
    return a * b


def rosenbrock(x: np.ndarray) -> np.ndarray:
    return np.sum(100.0 * (x[:, 1:] - x[:, :-1] ** 2) ** 2 + (1.0 - x[:, :-1]) ** 2, axis=1)


def six_hump_camel(x: np.ndarray) -> np.ndarray:
    x1, x2 = x[:, 0], x[:, 1]
    return (4 - 2.1 * x1**2 + x1**4 / 3) * x1**2 + x1 * x2 + (-4 + 4 * x2**2) * x2**2


_SHEKEL_A = np.array(
    [[4, 4, 4, 4], [1, 1, 1, 1], [8, 8, 8, 8], [6, 6, 6, 6], [3, 7, 3, 7],
     [2, 9, 2, 9], [5, 5, 3, 3], [8, 1, 8, 1], [6, 2, 6, 2], [7, 3.6, 7, 3.6]],
    dtype=float,
)
_SHEKEL_C = np.array([0.1, 0.2, 0.2, 0.4, 0.4, 0.6, 0.3, 0.7, 0.5, 0.5])


def shekel10(x: np.ndarray) -> np.ndarray:
    squared_distances = np.sum((x[:, None, :] - _SHEKEL_A[None]) ** 2, axis=2)
    return -np.sum(1.0 / (squared_distances + _SHEKEL_C), axis=1)


_HARTMANN6_ALPHA = np.array([1.0, 1.2, 3.0, 3.2])
_HARTMANN6_A = np.array(
    [[10, 3, 17, 3.5, 1.7, 8], [0.05, 10, 17, 0.1, 8, 14],
     [3, 3.5, 1.7, 10, 17, 8], [17, 8, 0.05, 10, 0.1, 14]]
)
_HARTMANN6_P = 1e-4 * np.array(
    [[1312, 1696, 5569, 124, 8283, 5886], [2329, 4135, 8307, 3736, 1004, 9991],
     [2348, 1451, 3522, 2883, 3047, 6650], [4047, 8828, 8732, 5743, 1091, 381]]
)


def hartmann6(x: np.ndarray) -> np.ndarray:
    inner = np.sum(_HARTMANN6_A[None] * (x[:, None, :] - _HARTMANN6_P[None]) ** 2, axis=2)
    return -np.sum(_HARTMANN6_ALPHA * np.exp(-inner), axis=1)


def griewank(x: np.ndarray) -> np.ndarray:
    i = np.arange(1, x.shape[1] + 1)
    return 1.0 + np.sum(x**2, axis=1) / 4000.0 - np.prod(np.cos(x / np.sqrt(i)), axis=1)


@dataclass(frozen=True)
class Problem:
    """A test problem and the SCE-UA settings a user following Duan (1994) would pick.

    n_complexes is about n, more (2n) for Shekel's many nearly equal minima, and 3
    for the 2-D problems, where two complexes of 5 points collapse too early.
    max_evals is generous: runs normally end by population convergence long before.
    """

    name: str
    function: Callable[[np.ndarray], np.ndarray]
    lower: np.ndarray
    upper: np.ndarray
    f_star: float
    n_complexes: int
    max_evals: int


def _box(low: float, high: float, n: int):
    return np.full(n, float(low)), np.full(n, float(high))


PROBLEMS = {
    p.name: p
    for p in (
        Problem("goldstein_price", goldstein_price, *_box(-2, 2, 2), 3.0, 3, 10_000),
        Problem("rosenbrock", rosenbrock, *_box(-5, 5, 2), 0.0, 3, 10_000),
        Problem("six_hump_camel", six_hump_camel, *_box(-5, 5, 2), -1.0316284535, 3, 10_000),
        Problem("shekel10", shekel10, *_box(0, 10, 4), -10.536409816, 8, 20_000),
        Problem("hartmann6", hartmann6, *_box(0, 1, 6), -3.322368011, 6, 30_000),
        Problem("griewank10", griewank, *_box(-600, 600, 10), 0.0, 10, 100_000),
    )
}
