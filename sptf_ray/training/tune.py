"""`tune`: Ray Tune + HyperOptSearch + ASHA over the surrogate or the SPTF.

Ray Train V2 (RAY_NOTES): Tune gets a function that builds and fits the trainer, with
`TuneReportCallback` in the trainer's RunConfig; each trial holds only 0.1 CPU itself (its
Train workers ask for their own).
"""
from __future__ import annotations

import copy

from sptf_ray import storage

DEFAULT_SPACE = {
    "surrogate": {"lr": ("loguniform", 1e-4, 1e-2), "hidden_size": ("choice", [64, 128, 256]),
                  "batch_size": ("choice", [32, 64, 128])},
    "sptf": {"lr": ("loguniform", 1e-5, 1e-3), "hidden_size": ("choice", [32, 64, 128]),
             "batch_size": ("choice", [16, 32, 64])},
}
METRIC = {"surrogate": "val_mse", "sptf": "val_loss"}


def _space(spec: dict) -> dict:
    from ray import tune

    out = {}
    for key, (kind, *args) in spec.items():
        if kind == "loguniform":
            out[key] = tune.loguniform(*args)
        elif kind == "uniform":
            out[key] = tune.uniform(*args)
        elif kind == "choice":
            out[key] = tune.choice(args[0])
        else:
            raise ValueError(f"search space {key}: unknown distribution {kind!r}")
    return out


def apply_trial(base: dict, trial: dict, name: str, storage_path: str) -> dict:
    """The trainer config for one trial: base overridden by the sampled values."""
    cfg = copy.deepcopy(base)
    for k, v in trial.items():
        if k in ("hidden_size", "dropout"):
            cfg.setdefault("network", {})[k] = v
        else:
            cfg[k] = v
    cfg["name"], cfg["storage_path"] = name, storage_path
    return cfg


def tune_model(kind: str, base_config: dict, storage_path: str, name: str = "tune", num_samples: int = 8,
               max_concurrent: int = 1, space: dict | None = None, grace_period: int = 1, seed: int = 0):
    """Run the search; returns (best trial config, best metrics, ResultGrid)."""
    from ray import tune
    from ray.tune.integration.ray_train import TuneReportCallback
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.hyperopt import HyperOptSearch

    from sptf_ray.config import load_config
    from sptf_ray.training.ray_train import ScalingArgs, check_cluster_fits, train_sptf, train_surrogate

    if kind not in METRIC:
        raise ValueError(f"tune: kind must be 'surrogate' or 'sptf', got {kind!r}")
    # A trial checks too, but inside Ray it cannot tell a local instance from one that may grow.
    check_cluster_fits(load_config(ScalingArgs, base_config.get("scaling") or {}))
    metric = METRIC[kind]
    fit = train_surrogate if kind == "surrogate" else train_sptf
    trials_path = storage.join(storage_path, name, "trials")

    def trial(config):
        trial_name = f"trial-{tune.get_context().get_trial_id()}"
        fit(apply_trial(base_config, config, trial_name, trials_path), callbacks=[TuneReportCallback()])

    search = HyperOptSearch(metric=metric, mode="min", random_state_seed=seed)
    search = tune.search.ConcurrencyLimiter(search, max_concurrent=max_concurrent)
    epochs = int(base_config.get("epochs", 10))
    scheduler = ASHAScheduler(time_attr="training_iteration", max_t=epochs, grace_period=min(grace_period, epochs))
    tuner = tune.Tuner(
        tune.with_resources(trial, {"cpu": 0.1}),
        param_space=_space(space or DEFAULT_SPACE[kind]),
        tune_config=tune.TuneConfig(metric=metric, mode="min", search_alg=search, scheduler=scheduler,
                                    num_samples=num_samples),
        run_config=tune.RunConfig(name=name, storage_path=storage.resolve(storage_path)[1]
                                  if "://" not in str(storage_path) else storage_path),
    )
    grid = tuner.fit()
    best = grid.get_best_result(metric=metric, mode="min")
    return best.config, dict(best.metrics or {}), grid
