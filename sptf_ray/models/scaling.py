"""Parameter scaling between physical units and the unit cube (torch, differentiable).

Unit space is the one of `sptf_ray.physics.ParameterSpace`: each parameter mapped linearly
to [0, 1] between its bounds, in log10 for alpha and Ks. Two spaces meet here:

- the surrogate's input space: the training set's sampling bounds (Table 1, with theta_s
  sampled over THETA_S_SAMPLING_RANGE = [0.32, 0.65]);
- the SPTF's output space: Table 1 bounds with the per-site theta_s upper bound
  max(0.41, max SWC of the historical year).

The SPTF's unit outputs go to physical parameters (`unit_to_physical`) and from there to the
surrogate's unit inputs (`physical_to_unit`), all differentiable.
"""
from __future__ import annotations

import numpy as np
import torch

from sptf_ray.physics import PARAM_NAMES, parameter_space
from sptf_ray.physics.parameters import THETA_S_SAMPLING_RANGE, THETA_S_UPPER_DEFAULT, check_model

__all__ = ["ParamBounds", "surrogate_bounds", "sptf_bounds", "unit_to_physical", "physical_to_unit",
           "site_theta_s_upper", "THETA_S_SAMPLING_RANGE"]


class ParamBounds:
    """Bounds of one model's six parameters as tensors (transformed: log10 where log-scaled)."""

    def __init__(self, model: str, theta_s_upper: float | None = None):
        self.model = check_model(model)
        self.names = PARAM_NAMES[self.model]
        space = parameter_space(self.model, theta_s_upper)
        self.theta_s_index = self.names.index("theta_s")
        self.log_scaled = torch.as_tensor(space.log_scaled, dtype=torch.bool)
        lo = np.where(space.log_scaled, np.log10(np.where(space.log_scaled, space.lower, 1.0)), space.lower)
        hi = np.where(space.log_scaled, np.log10(np.where(space.log_scaled, space.upper, 1.0)), space.upper)
        self.lower_t = torch.as_tensor(lo, dtype=torch.float32)  # transformed lower bounds
        self.upper_t = torch.as_tensor(hi, dtype=torch.float32)
        self.space = space

    def _per_row(self, theta_s_upper, like: torch.Tensor):
        """(lower, upper) of shape (B, 6) (or (6,)) with theta_s's upper bound replaced per row."""
        lo = self.lower_t.to(like.device, like.dtype)
        hi = self.upper_t.to(like.device, like.dtype)
        if theta_s_upper is None:
            return lo, hi
        ts = torch.as_tensor(theta_s_upper, dtype=like.dtype, device=like.device)
        hi = hi.expand(like.shape).clone()
        hi[..., self.theta_s_index] = ts
        return lo.expand(like.shape), hi


def surrogate_bounds(model: str) -> ParamBounds:
    """The surrogate training set's sampling bounds (theta_s over [0.32, 0.65])."""
    return ParamBounds(model, theta_s_upper=THETA_S_SAMPLING_RANGE[1])


def sptf_bounds(model: str) -> ParamBounds:
    """Table 1 bounds (theta_s upper replaced per site at call time)."""
    return ParamBounds(model)


def unit_to_physical(unit: torch.Tensor, bounds: ParamBounds, theta_s_upper=None) -> torch.Tensor:
    """Unit-cube values (..., 6) -> physical parameters; theta_s_upper: None, a float or (B,)."""
    lo, hi = bounds._per_row(theta_s_upper, unit)
    x = lo + unit * (hi - lo)
    mask = bounds.log_scaled.to(unit.device)
    return torch.where(mask, torch.pow(torch.as_tensor(10.0, dtype=unit.dtype, device=unit.device), x), x)


def physical_to_unit(params: torch.Tensor, bounds: ParamBounds, theta_s_upper=None) -> torch.Tensor:
    """Physical parameters (..., 6) -> unit cube of `bounds` (not clipped)."""
    mask = bounds.log_scaled.to(params.device)
    x = torch.where(mask, torch.log10(torch.where(mask, params, torch.ones_like(params))), params)
    lo, hi = bounds._per_row(theta_s_upper, params)
    return (x - lo) / (hi - lo)


def site_theta_s_upper(historical_swc) -> np.ndarray:
    """Table 1 per sample: max(0.41, max SWC of the historical year); (N, T) -> (N,)."""
    swc = np.asarray(historical_swc, dtype=np.float64)
    with np.errstate(all="ignore"):
        mx = np.nanmax(np.where(np.isfinite(swc), swc, -np.inf), axis=-1)
    return np.maximum(THETA_S_UPPER_DEFAULT, np.where(np.isfinite(mx), mx, THETA_S_UPPER_DEFAULT))
