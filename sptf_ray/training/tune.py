"""`tune`: Ray Tune + HyperOptSearch + ASHA over the surrogate or the SPTF.

Ray Train V2 (RAY_NOTES): Tune gets a function that builds and fits the trainer, with
`TuneReportCallback` in the trainer's RunConfig; each trial holds only 0.1 CPU itself (its
Train workers ask for their own).
"""
from __future__ import annotations

import copy
import json

from sptf_ray import storage
from sptf_ray.errors import StageFailed

SETTINGS_FILE = "sptf_tune.json"  # the search's settings, checked when the same name runs again
BEST_FILE = "best.json"  # the best trial's config and metrics

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


PATH_KEYS = ("data", "surrogate")  # the trial configs' input paths


def _resumes(experiment: str, ray_path: str, settings: dict) -> bool:
    """True when `experiment` holds a search Tune can restore, made with these settings; a new
    search records them. Other settings under the same name are an error, not a silent restart."""
    from ray import tune

    uri = storage.join(experiment, SETTINGS_FILE)
    text = json.dumps(settings, indent=2, sort_keys=True, default=str) + "\n"
    if storage.exists(uri):
        recorded = json.loads(storage.read_text(uri))
        if recorded != json.loads(text):
            differ = sorted(k for k in set(recorded) | set(settings) if recorded.get(k) != json.loads(text).get(k))
            raise ValueError(f"{experiment} holds a search made with other settings ({', '.join(differ)} differ): "
                             "give another --name, or delete it to start over")
    restorable = tune.Tuner.can_restore(ray_path)
    if not restorable:
        storage.makedirs(experiment)
    storage.atomic_write_text(uri, text)
    return restorable


def check_base(kind: str, base_config: dict, storage_path: str) -> None:
    """A trial's config from base_config validates and its inputs exist; else every trial would fail alike."""
    from sptf_ray.config import load_config
    from sptf_ray.training.ray_train import SPTFTrainConfig, SurrogateTrainConfig, check_inputs

    if kind not in METRIC:
        raise ValueError(f"tune: kind must be 'surrogate' or 'sptf', got {kind!r}")
    config_class = SurrogateTrainConfig if kind == "surrogate" else SPTFTrainConfig
    check_inputs(load_config(config_class, apply_trial(base_config, {}, "trial", storage_path)))


def tune_model(kind: str, base_config: dict, storage_path: str, name: str = "tune", num_samples: int = 8,
               max_concurrent: int = 1, space: dict | None = None, grace_period: int = 1, seed: int = 0):
    """Run the search, or resume the one of the same name under storage_path (its settings must
    match); writes best.json there. Returns (best trial config, best metrics, ResultGrid)."""
    from ray import tune
    from ray.tune.integration.ray_train import TuneReportCallback
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.hyperopt import HyperOptSearch

    from sptf_ray.config import load_config
    from sptf_ray.training.ray_train import ScalingArgs, check_cluster_fits, train_sptf, train_surrogate

    check_base(kind, base_config, storage_path)
    # Tune runs each trial in a working directory of its own: a relative path would miss there.
    storage_path = storage.absolute(storage_path)
    base_config = {**base_config, **{k: storage.absolute(base_config[k]) for k in PATH_KEYS if base_config.get(k)}}
    # A trial checks too, but inside Ray it cannot tell a local instance from one that may grow.
    check_cluster_fits(load_config(ScalingArgs, base_config.get("scaling") or {}))
    metric = METRIC[kind]
    fit = train_surrogate if kind == "surrogate" else train_sptf
    trials_path = storage.join(storage_path, name, "trials")

    def trial(config):
        trial_name = f"trial-{tune.get_context().get_trial_id()}"
        fit(apply_trial(base_config, config, trial_name, trials_path), callbacks=[TuneReportCallback()])

    settings = {"kind": kind, "base": base_config, "space": space or DEFAULT_SPACE[kind], "num_samples": num_samples,
                "max_concurrent": max_concurrent, "grace_period": grace_period, "seed": seed}
    experiment = storage.join(storage_path, name)
    ray_path = storage.resolve(experiment)[1] if "://" not in str(experiment) else experiment
    trainable = tune.with_resources(trial, {"cpu": 0.1})
    if _resumes(experiment, ray_path, settings):
        print(f"[tune] resuming {experiment}: finished trials kept, unfinished ones continue", flush=True)
        tuner = tune.Tuner.restore(ray_path, trainable, resume_unfinished=True, resume_errored=True,
                                   param_space=_space(settings["space"]))
    else:
        search = HyperOptSearch(metric=metric, mode="min", random_state_seed=seed)
        search = tune.search.ConcurrencyLimiter(search, max_concurrent=max_concurrent)
        epochs = int(base_config.get("epochs", 10))
        # max_t past the last epoch: ASHA stopping a trial at max_t would end it before it bundles its model
        scheduler = ASHAScheduler(time_attr="training_iteration", max_t=epochs + 1,
                                  grace_period=min(grace_period, epochs))
        tuner = tune.Tuner(
            trainable,
            param_space=_space(settings["space"]),
            tune_config=tune.TuneConfig(metric=metric, mode="min", search_alg=search, scheduler=scheduler,
                                        num_samples=num_samples),
            run_config=tune.RunConfig(name=name, storage_path=storage.resolve(storage_path)[1]
                                      if "://" not in str(storage_path) else storage_path),
        )
    grid = tuner.fit()
    if grid.num_errors == len(grid):
        first = getattr(grid.errors[0], "cause", None) or grid.errors[0]  # a RayTaskError's own: its traceback
        raise StageFailed(f"tune: every trial of {experiment} failed ({len(grid)}); the first: "
                           f"{type(first).__name__}: {str(first).strip().splitlines()[-1]}")
    best = grid.get_best_result(metric=metric, mode="min")
    metrics = dict(best.metrics or {})
    bundle = storage.join(trials_path, f"trial-{metrics.get('trial_id')}", "bundle")  # apply_trial's run name
    if not storage.verify_manifest(bundle):
        print(f"[tune] the best trial left no bundle at {bundle} (stopped early?)", flush=True)
        bundle = None
    storage.atomic_write_text(storage.join(experiment, BEST_FILE), json.dumps(
        {"config": best.config, "bundle": bundle, "metrics": metrics, "trials": len(grid)},
        indent=2, sort_keys=True, default=str) + "\n")
    return best.config, dict(best.metrics or {}), grid
