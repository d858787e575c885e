"""Inverse modelling: parameter estimation by global optimisation."""
from sptf_ray.inverse.sceua import SCEUAProgress, SCEUAResult, sceua

__all__ = ["sceua", "SCEUAResult", "SCEUAProgress"]
