"""Evaluation: metrics (paper 2.6), the run report, plots."""
from sptf_ray.evaluate.metrics import METRIC_NAMES, counted, nse, pooled_metrics, rmse, scores, site_metrics, trend_line

__all__ = ["METRIC_NAMES", "counted", "nse", "pooled_metrics", "rmse", "scores", "site_metrics", "trend_line"]
