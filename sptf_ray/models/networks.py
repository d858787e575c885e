"""The surrogate and SPTF networks, their input normalization and the loss (paper eq. 3)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from sptf_ray.data.validate import frozen_mask as numpy_frozen_mask

from .scaling import ParamBounds, physical_to_unit, sptf_bounds, surrogate_bounds, unit_to_physical

SURROGATE_FORCING = ("precip", "pet", "lai")  # shard columns, per day
SPTF_DAILY = ("swc", "precip_cm", "pet_cm", "lai", "lst_c")  # historical year, per day
SPTF_STATIC = ("sand", "silt", "clay", "bulk_density")  # repeated per day

__all__ = ["Normalizer", "SurrogateConfig", "SPTFConfig", "Surrogate", "SPTF", "masked_mse", "frozen_mask",
           "freeze", "SURROGATE_FORCING", "SPTF_DAILY", "SPTF_STATIC"]


@dataclass
class Normalizer:
    """Per-feature standardization (x - mean) / std with stored statistics."""

    names: list[str]
    mean: list[float]
    std: list[float]

    def validate(self) -> None:
        if not (len(self.names) == len(self.mean) == len(self.std)):
            raise ValueError("Normalizer: names, mean and std must have the same length")
        if any((not np.isfinite(s)) or s <= 0 for s in self.std):
            raise ValueError(f"Normalizer: std must be finite and > 0, got {self.std}")

    @classmethod
    def fit(cls, names, values: np.ndarray, min_std: float = 1e-6) -> "Normalizer":
        """values: (..., F) -> statistics over every axis but the last (NaN ignored)."""
        v = np.asarray(values, dtype=np.float64).reshape(-1, len(names))
        mean = np.nanmean(v, axis=0)
        std = np.nanstd(v, axis=0)
        mean = np.where(np.isfinite(mean), mean, 0.0)
        std = np.where(np.isfinite(std) & (std > min_std), std, 1.0)
        return cls(list(names), [float(x) for x in mean], [float(x) for x in std])

    def __call__(self, x):
        if isinstance(x, torch.Tensor):
            mean = torch.as_tensor(self.mean, dtype=x.dtype, device=x.device)
            std = torch.as_tensor(self.std, dtype=x.dtype, device=x.device)
            return (x - mean) / std
        return ((np.asarray(x) - np.asarray(self.mean)) / np.asarray(self.std)).astype(np.float32)


@dataclass
class SurrogateConfig:
    model: str = "vgm"  # hydraulic model the surrogate emulates: "vgm" or "fxw"
    hidden_size: int = 256
    dropout: float = 0.0

    def validate(self) -> None:
        _check_network(self)


@dataclass
class SPTFConfig:
    model: str = "vgm"
    hidden_size: int = 128
    dropout: float = 0.0

    def validate(self) -> None:
        _check_network(self)


def _check_network(cfg) -> None:
    name = type(cfg).__name__
    if cfg.model not in ("vgm", "fxw"):
        raise ValueError(f"{name}.model must be 'vgm' or 'fxw', got {cfg.model!r}")
    if cfg.hidden_size < 1:
        raise ValueError(f"{name}.hidden_size must be >= 1")
    if not 0.0 <= cfg.dropout < 1.0:
        raise ValueError(f"{name}.dropout must be in [0, 1)")


class Surrogate(nn.Module):
    """1-layer LSTM: per day 6 unit-scaled parameters + normalized P, PET, LAI -> SWC at 5 cm.

    forward(params_unit (B, 6), forcing_norm (B, T, 3)) -> swc (B, T) in cm3/cm3.
    """

    n_params = 6
    n_forcing = 3

    def __init__(self, config: SurrogateConfig | None = None):
        super().__init__()
        self.config = config or SurrogateConfig()
        h = self.config.hidden_size
        self.lstm = nn.LSTM(self.n_params + self.n_forcing, h, num_layers=1, batch_first=True)
        self.dropout = nn.Dropout(self.config.dropout)
        self.head = nn.Linear(h, 1)
        with torch.no_grad():  # start near a typical SWC so early training is not spent on the offset
            self.head.bias.fill_(0.25)

    def forward(self, params_unit: torch.Tensor, forcing: torch.Tensor) -> torch.Tensor:
        if params_unit.dim() != 2 or params_unit.shape[-1] != self.n_params:
            raise ValueError(f"params_unit must be (B, 6), got {tuple(params_unit.shape)}")
        if forcing.dim() != 3 or forcing.shape[-1] != self.n_forcing or forcing.shape[0] != params_unit.shape[0]:
            raise ValueError(f"forcing must be (B, T, 3) with B={params_unit.shape[0]}, got {tuple(forcing.shape)}")
        p = params_unit.unsqueeze(1).expand(-1, forcing.shape[1], -1)
        out, _ = self.lstm(torch.cat([p, forcing], dim=-1))
        return self.head(self.dropout(out)).squeeze(-1)


class SPTF(nn.Module):
    """1-layer LSTM over the historical year -> 6 parameters inside Table 1 bounds.

    forward(daily_norm (B, T, 5), static_norm (B, 4)) -> unit (B, 6) in (0, 1) (sigmoid);
    `to_physical(unit, theta_s_upper)` maps them into Table 1 with the per-site theta_s bound.
    """

    n_daily = len(SPTF_DAILY)
    n_static = len(SPTF_STATIC)

    def __init__(self, config: SPTFConfig | None = None):
        super().__init__()
        self.config = config or SPTFConfig()
        h = self.config.hidden_size
        self.lstm = nn.LSTM(self.n_daily + self.n_static, h, num_layers=1, batch_first=True)
        self.dropout = nn.Dropout(self.config.dropout)
        self.head = nn.Linear(h, 6)
        self.bounds = sptf_bounds(self.config.model)

    def forward(self, daily: torch.Tensor, static: torch.Tensor) -> torch.Tensor:
        if daily.dim() != 3 or daily.shape[-1] != self.n_daily:
            raise ValueError(f"daily must be (B, T, {self.n_daily}), got {tuple(daily.shape)}")
        if static.shape != (daily.shape[0], self.n_static):
            raise ValueError(f"static must be (B, {self.n_static}), got {tuple(static.shape)}")
        s = static.unsqueeze(1).expand(-1, daily.shape[1], -1)
        out, _ = self.lstm(torch.cat([daily, s], dim=-1))
        return torch.sigmoid(self.head(self.dropout(out[:, -1])))

    def to_physical(self, unit: torch.Tensor, theta_s_upper) -> torch.Tensor:
        return unit_to_physical(unit, self.bounds, theta_s_upper)


def sptf_to_surrogate_unit(unit: torch.Tensor, model: str, theta_s_upper,
                           sur_bounds: ParamBounds | None = None) -> torch.Tensor:
    """SPTF unit outputs -> physical -> the surrogate's unit inputs (differentiable)."""
    phys = unit_to_physical(unit, sptf_bounds(model), theta_s_upper)
    return physical_to_unit(phys, sur_bounds or surrogate_bounds(model))


def frozen_mask(lst_c) -> torch.Tensor | np.ndarray:
    """bLST as float32: 1 where the day counts (sptf_ray.data.validate.frozen_mask's rule)."""
    if isinstance(lst_c, torch.Tensor):
        return (~(lst_c < 0)).to(torch.float32)
    return numpy_frozen_mask(lst_c).astype(np.float32)


def masked_mse(pred: torch.Tensor, obs: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Paper eq. 3: sum((pred - obs)^2 * bLST) / n, n = the number of counted observations.

    Missing observations (NaN) never count. Returns 0 (with a graph) when nothing counts.
    """
    valid = torch.isfinite(obs)
    w = valid.to(pred.dtype) if mask is None else mask.to(pred.dtype) * valid.to(pred.dtype)
    diff = torch.where(valid, pred - torch.nan_to_num(obs), torch.zeros_like(pred))
    return (diff.pow(2) * w).sum() / w.sum().clamp_min(1.0)


def freeze(model: nn.Module) -> nn.Module:
    """Frozen (paper 2.2.2): no parameter receives gradients, eval mode; gradients still flow through."""
    for p in model.parameters():
        p.requires_grad_(False)
    return model.eval()
