"""Input checks for the solver: clear errors that name the problem, never a silent NaN."""
from __future__ import annotations

import numpy as np

from .parameters import PARAM_NAMES


class SimulationError(RuntimeError):
    """One or more simulations could not be completed; `messages` names each one and why."""

    def __init__(self, messages):
        self.messages = list(messages)
        shown = "; ".join(self.messages[:5])
        more = f" (and {len(self.messages) - 5} more)" if len(self.messages) > 5 else ""
        super().__init__(f"{len(self.messages)} simulation(s) failed: {shown}{more}")


# Physical limits (not Table 1's prior bounds): outside these the models are undefined.
def _physical_violations(model: str, p: np.ndarray) -> list[tuple[str, np.ndarray]]:
    names = PARAM_NAMES[model]
    col = {name: p[:, i] for i, name in enumerate(names)}
    checks = [
        ("theta_s", (col["theta_s"] > 0) & (col["theta_s"] <= 1), "must be in (0, 1]"),
        ("alpha", col["alpha"] > 0, "must be > 0 (1/cm)"),
        ("n", col["n"] > 1, "must be > 1"),
        ("Ks", col["Ks"] > 0, "must be > 0 (cm/d)"),
        ("H50", col["H50"] < 0, "must be < 0 (cm)"),
    ]
    if model == "vgm":
        checks.append(("theta_r", (col["theta_r"] >= 0) & (col["theta_r"] < col["theta_s"]),
                       "must satisfy 0 <= theta_r < theta_s"))
    else:
        checks.append(("m", col["m"] > 0, "must be > 0"))
    return [(name, ~ok, rule) for name, ok, rule in checks]


def check_params(model: str, params) -> np.ndarray:
    p = np.asarray(params, dtype=np.float64)
    if p.ndim == 1:
        p = p[None, :]
    if p.ndim != 2 or p.shape[1] != 6:
        raise ValueError(f"params must have shape (6,) or (B, 6) in the order {PARAM_NAMES[model]}, "
                         f"got {np.shape(params)}")
    if p.shape[0] == 0:
        raise ValueError("params is empty: nothing to simulate")
    bad = ~np.isfinite(p)
    if bad.any():
        row, c = np.argwhere(bad)[0]
        raise ValueError(f"params[{row}] has a non-finite {PARAM_NAMES[model][c]} ({p[row, c]}); "
                         f"{bad.any(axis=1).sum()} row(s) affected")
    for name, violated, rule in _physical_violations(model, p):
        if violated.any():
            row = int(np.flatnonzero(violated)[0])
            value = p[row, PARAM_NAMES[model].index(name)]
            raise ValueError(f"params[{row}]: {model} {name} = {value!r} {rule}; "
                             f"{int(violated.sum())} row(s) affected")
    return np.ascontiguousarray(p)


def _check_forcing(name: str, x, n_sims: int) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim == 1:
        a = np.broadcast_to(a, (n_sims, a.shape[0]))
    if a.ndim != 2:
        raise ValueError(f"{name} must have shape (T,) or (B, T), got {np.shape(x)}")
    if a.shape[0] == 1 and n_sims > 1:
        a = np.broadcast_to(a, (n_sims, a.shape[1]))
    if a.shape[0] != n_sims:
        raise ValueError(f"{name} has {a.shape[0]} rows but params has {n_sims} parameter sets")
    if a.shape[1] == 0:
        raise ValueError(f"{name} has no days")
    bad = ~np.isfinite(a)
    if bad.any():
        row, day = np.argwhere(bad)[0]
        raise ValueError(f"{name}[{row}, day {day + 1}] is {a[row, day]}: forcing must be finite "
                         f"({int(bad.sum())} bad value(s)); fill gaps before simulating")
    neg = a < 0
    if neg.any():
        row, day = np.argwhere(neg)[0]
        raise ValueError(f"{name}[{row}, day {day + 1}] = {a[row, day]} is negative "
                         f"({int(neg.sum())} negative value(s))")
    return np.ascontiguousarray(a)


def check_inputs(model: str, params, precip, pet, lai):
    p = check_params(model, params)
    n_sims = p.shape[0]
    forcing = [_check_forcing(name, x, n_sims) for name, x in (("precip", precip), ("pet", pet), ("lai", lai))]
    lengths = {f.shape[1] for f in forcing}
    if len(lengths) != 1:
        raise ValueError(f"precip, pet and lai must cover the same days, got lengths "
                         f"{[f.shape[1] for f in forcing]}")
    return (p, *forcing)


def check_initial_head(initial_head, cfg, n_sims: int, n_nodes: int) -> np.ndarray:
    if initial_head is None:
        initial_head = cfg.initial_head
    h = np.asarray(initial_head, dtype=np.float64)
    if h.ndim == 0:
        h = np.full((n_sims, n_nodes), float(h))
    elif h.ndim == 1:
        if h.shape[0] != n_nodes:
            raise ValueError(f"initial_head has {h.shape[0]} values but the grid has {n_nodes} nodes")
        h = np.broadcast_to(h, (n_sims, n_nodes))
    elif h.shape != (n_sims, n_nodes):
        raise ValueError(f"initial_head must be a scalar, ({n_nodes},) or ({n_sims}, {n_nodes}), got {h.shape}")
    if not np.isfinite(h).all():
        raise ValueError("initial_head must be finite")
    return np.ascontiguousarray(h)
