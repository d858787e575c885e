"""Surrogate and SPTF networks, parameter scaling, the masked loss (paper eq. 3)."""
from .networks import (SPTF, SPTF_DAILY, SPTF_STATIC, SURROGATE_FORCING, Normalizer, SPTFConfig, Surrogate,
                       SurrogateConfig, freeze, frozen_mask, masked_mse, sptf_to_surrogate_unit)
from .scaling import (ParamBounds, physical_to_unit, site_theta_s_upper, sptf_bounds, surrogate_bounds,
                      unit_to_physical)

__all__ = [
    "Surrogate", "SurrogateConfig", "SPTF", "SPTFConfig", "Normalizer", "masked_mse", "frozen_mask", "freeze",
    "sptf_to_surrogate_unit", "ParamBounds", "surrogate_bounds", "sptf_bounds", "unit_to_physical",
    "physical_to_unit", "site_theta_s_upper", "SURROGATE_FORCING", "SPTF_DAILY", "SPTF_STATIC",
]
