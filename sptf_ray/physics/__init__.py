"""Physics core: hydraulic models and the Richards solver. Imports neither Ray nor torch."""
from .hydraulics import capacity, conductivity, hydraulic_functions, water_content
from .parameters import MODELS, PARAM_NAMES, ParameterSpace, parameter_space, theta_s_upper
from .solver import (BULK_ITERATIONS_PER_DAY, BULK_STEPS_PER_DAY, DAILY_FLUXES, STATUS_BELOW_DT_MIN, STATUS_FAILED, STATUS_OK,
                     STATUS_STEP_LIMIT, SimulationResult, SolverConfig, bulk_config, simulate,
                     simulate_swc_in_chunks)
from .validation import SimulationError

__all__ = [
    "MODELS", "PARAM_NAMES", "ParameterSpace", "parameter_space", "theta_s_upper",
    "water_content", "conductivity", "capacity", "hydraulic_functions",
    "SolverConfig", "SimulationResult", "SimulationError", "simulate", "simulate_swc_in_chunks", "DAILY_FLUXES",
    "STATUS_OK", "STATUS_BELOW_DT_MIN", "STATUS_FAILED", "STATUS_STEP_LIMIT", "BULK_ITERATIONS_PER_DAY",
    "BULK_STEPS_PER_DAY", "bulk_config",
]
