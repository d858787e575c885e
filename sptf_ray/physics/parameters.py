"""Free parameters of the two hydraulic models and their bounds (paper Table 1).

Pure data plus small helpers; used by the solver's input checks, the surrogate's
parameter sampling, the SPTF output layer and SCE-UA.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MODELS = ("vgm", "fxw")

PARAM_NAMES = {
    "vgm": ("theta_r", "theta_s", "alpha", "n", "Ks", "H50"),
    "fxw": ("theta_s", "alpha", "n", "m", "Ks", "H50"),
}

# Table 1. theta_s's upper bound is max(0.41, max observed SWC of the historical year)
# per site (see theta_s_upper); THETA_S_UPPER_DEFAULT is the value without observations.
THETA_S_UPPER_DEFAULT = 0.41
# The surrogate training set samples theta_s wider than Table 1 so that every site's
# bound max(0.41, max SWC) is covered (DESIGN.md section 0).
THETA_S_SAMPLING_RANGE = (0.32, 0.65)

_BOUNDS = {
    "vgm": {
        "theta_r": (0.0, 0.15),
        "theta_s": (0.32, THETA_S_UPPER_DEFAULT),
        "alpha": (0.0015, 0.23),
        "n": (1.05, 8.0),
        "Ks": (0.3, 8000.0),
        "H50": (-2000.0, -50.0),
    },
    "fxw": {
        "theta_s": (0.32, THETA_S_UPPER_DEFAULT),
        "alpha": (0.0015, 0.2),
        "n": (1.05, 13.5),
        "m": (0.2, 1.6),
        "Ks": (0.5, 8000.0),
        "H50": (-2000.0, -50.0),
    },
}

# Parameters spanning decades are sampled and scaled in log10 space.
LOG_SCALED = frozenset({"alpha", "Ks"})


@dataclass(frozen=True)
class ParameterSpace:
    """Bounds of one model's six parameters, in Table 1 column order."""

    model: str
    names: tuple
    lower: np.ndarray
    upper: np.ndarray
    log_scaled: np.ndarray  # bool per parameter

    def to_unit(self, params: np.ndarray) -> np.ndarray:
        """Map physical parameters to [0, 1] (log10 for log-scaled ones)."""
        p = np.asarray(params, dtype=np.float64)
        lo, hi = self._transformed_bounds()
        return (self._forward(p) - lo) / (hi - lo)

    def from_unit(self, unit: np.ndarray) -> np.ndarray:
        """Inverse of to_unit."""
        u = np.asarray(unit, dtype=np.float64)
        lo, hi = self._transformed_bounds()
        x = lo + u * (hi - lo)
        return np.where(self.log_scaled, 10.0 ** x, x)

    def with_theta_s_upper(self, upper: float) -> "ParameterSpace":
        i = self.names.index("theta_s")
        new_upper = self.upper.copy()
        new_upper[i] = upper
        return ParameterSpace(self.model, self.names, self.lower.copy(), new_upper, self.log_scaled)

    def _forward(self, p):
        return np.where(self.log_scaled, np.log10(np.where(self.log_scaled, p, 1.0)), p)

    def _transformed_bounds(self):
        return self._forward(self.lower), self._forward(self.upper)


def parameter_space(model: str, theta_s_upper: float | None = None) -> ParameterSpace:
    """Table 1 bounds of `model` ("vgm" or "fxw"); theta_s_upper overrides 0.41."""
    model = check_model(model)
    names = PARAM_NAMES[model]
    lower = np.array([_BOUNDS[model][k][0] for k in names])
    upper = np.array([_BOUNDS[model][k][1] for k in names])
    log_scaled = np.array([k in LOG_SCALED for k in names])
    space = ParameterSpace(model, names, lower, upper, log_scaled)
    if theta_s_upper is not None:
        space = space.with_theta_s_upper(float(theta_s_upper))
    return space


def theta_s_upper(max_observed_swc: float) -> float:
    """Table 1: theta_s upper bound = max(0.41, max SWC of the historical year)."""
    if not np.isfinite(max_observed_swc):
        return THETA_S_UPPER_DEFAULT
    return float(max(THETA_S_UPPER_DEFAULT, max_observed_swc))


def check_model(model: str) -> str:
    key = str(model).lower().replace("-", "").replace("_", "")
    aliases = {"vgm": "vgm", "vg": "vgm", "vangenuchten": "vgm", "fxw": "fxw", "fxwm3": "fxw"}
    if key not in aliases:
        raise ValueError(f"unknown hydraulic model {model!r}: expected 'vgm' or 'fxw'")
    return aliases[key]
