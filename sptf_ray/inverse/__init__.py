"""Inverse modelling: parameter estimation by global optimisation."""
from sptf_ray.inverse.sceua import SCEUAProgress, SCEUAResult, SCEUASearch, run_lockstep, sceua

__all__ = ["sceua", "SCEUASearch", "run_lockstep", "SCEUAResult", "SCEUAProgress"]
