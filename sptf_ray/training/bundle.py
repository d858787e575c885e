"""Model bundles: a directory that `sptf predict` (and the SPTF trainer) load.

Layout: weights.pt (state_dict only; read with torch.load(weights_only=True)), config.json
(kind, network config, training config), normalization.json (input statistics),
versions.json (package versions), metrics.json, provenance.json (the host that bundled it and
where each training rank ran: node, CPU, device, accelerator), and manifest.json written last: a bundle is
complete only when its manifest verifies. An SPTF bundle carries its surrogate in `surrogate/`.
"""
from __future__ import annotations

import io
import json
import pickle
from dataclasses import dataclass, field

import torch
from torch import nn

from sptf_ray import storage
from sptf_ray.config import config_to_dict, load_config
from sptf_ray.models import SPTF, Normalizer, SPTFConfig, Surrogate, SurrogateConfig
from sptf_ray.provenance import host_info, package_versions

PROVENANCE_FILE = "provenance.json"
BUNDLE_FILES = ("weights.pt", "config.json", "normalization.json", "versions.json", "metrics.json", PROVENANCE_FILE)
KINDS = {"surrogate": (Surrogate, SurrogateConfig), "sptf": (SPTF, SPTFConfig)}

__all__ = ["Bundle", "write_bundle", "load_bundle", "package_versions"]


@dataclass
class Bundle:
    kind: str
    model: nn.Module
    network_config: object
    normalization: dict  # name -> Normalizer
    config: dict
    metrics: dict
    uri: str
    surrogate: "Bundle | None" = None
    versions: dict = field(default_factory=dict)
    provenance: dict = field(default_factory=dict)  # {} for bundles written before provenance.json


def _json(obj) -> bytes:
    return (json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n").encode()


def write_bundle(dir_uri, kind: str, model: nn.Module, normalization: dict, train_config: dict | None = None,
                 metrics: dict | None = None, surrogate_uri=None, trained_on: list | None = None) -> dict:
    """Write a bundle (manifest last); `normalization` maps names to Normalizer objects; `trained_on`
    lists the training ranks' records (ray_train.read_workers)."""
    if kind not in KINDS:
        raise ValueError(f"bundle kind must be one of {sorted(KINDS)}, got {kind!r}")
    from sptf_ray.training.loops import unwrap

    core = unwrap(model)
    buf = io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in core.state_dict().items()}, buf)
    files = {
        "weights.pt": buf.getvalue(),
        "config.json": _json({"kind": kind, "network": config_to_dict(core.config), "training": train_config or {}}),
        "normalization.json": _json({k: config_to_dict(v) for k, v in normalization.items()}),
        "versions.json": _json(package_versions()),
        "metrics.json": _json(metrics or {}),
        PROVENANCE_FILE: _json({"bundled_on": host_info(), "trained_on": list(trained_on or [])}),
    }
    if surrogate_uri is not None:
        if not storage.verify_manifest(surrogate_uri):
            raise ValueError(f"surrogate bundle {surrogate_uri} is incomplete (manifest does not verify)")
        for name in storage.read_manifest(surrogate_uri)["files"]:
            files[f"surrogate/{name}"] = storage.read_bytes(storage.join(surrogate_uri, name))
        files[f"surrogate/{storage.MANIFEST_NAME}"] = storage.read_bytes(storage.join(surrogate_uri, storage.MANIFEST_NAME))
    for name, data in files.items():  # dict order: the surrogate's own manifest after its files
        storage.atomic_write_bytes(storage.join(dir_uri, name), data)
    return storage.write_manifest(dir_uri, sorted(files), {"kind": kind})


def _read_json(dir_uri: str, name: str):
    try:
        return json.loads(storage.read_text(storage.join(dir_uri, name)))
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError alike name neither file nor bundle
        raise ValueError(f"model bundle {dir_uri}: {name} is not valid JSON ({exc})") from None


def _load_weights(dir_uri: str, model: nn.Module, map_location) -> nn.Module:
    """The network with weights.pt loaded, in eval mode; a file that is not the weights of this
    network (another config, not a torch file) is a ValueError naming the bundle."""
    raw = storage.read_bytes(storage.join(dir_uri, "weights.pt"))
    try:
        model.load_state_dict(torch.load(io.BytesIO(raw), map_location=map_location, weights_only=True))
    except (RuntimeError, EOFError, pickle.UnpicklingError, KeyError, TypeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"model bundle {dir_uri}: weights.pt does not load into the network config.json "
                         f"describes: {first}") from None
    return model.to(map_location).eval()


def check_device(device) -> torch.device:
    """A torch device this machine has, or a ValueError that says why not."""
    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        raise ValueError(f"device {device!r} is not a torch device (cpu, cuda, cuda:0, ...): {exc}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r}: this machine has no CUDA device torch can use (use cpu)")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ValueError(f"device {device!r}: only {torch.cuda.device_count()} CUDA device(s) here")
    return dev


def require_bundle(dir_uri, kind: str = "model") -> None:
    """FileNotFoundError unless dir_uri holds a bundle's manifest (`kind` names it in the message)."""
    if not storage.exists(storage.join(dir_uri, storage.MANIFEST_NAME)):
        raise FileNotFoundError(f"no {kind} bundle at {dir_uri} ({storage.MANIFEST_NAME} missing)")


def load_bundle(dir_uri, map_location="cpu") -> Bundle:
    """Verify the manifest, rebuild the network and load its weights (weights_only=True), in eval mode."""
    dir_uri = str(dir_uri)
    map_location = check_device(map_location)  # else a missing GPU reads as weights that do not fit
    require_bundle(dir_uri)
    if not storage.verify_manifest(dir_uri):
        raise ValueError(f"model bundle {dir_uri} is incomplete or modified (manifest does not verify)")
    cfg = _read_json(dir_uri, "config.json")
    kind = cfg.get("kind") if isinstance(cfg, dict) else None
    if kind not in KINDS or not isinstance(cfg.get("network"), dict):
        raise ValueError(f"model bundle {dir_uri}: config.json has no known kind ({kind!r}) and network section")
    cls, cfg_cls = KINDS[kind]
    net_cfg = load_config(cfg_cls, cfg["network"])
    model = _load_weights(dir_uri, cls(net_cfg), map_location)
    normalization = {k: load_config(Normalizer, v) for k, v in _read_json(dir_uri, "normalization.json").items()}
    metrics = _read_json(dir_uri, "metrics.json")
    versions = _read_json(dir_uri, "versions.json")
    has_provenance = storage.exists(storage.join(dir_uri, PROVENANCE_FILE))
    provenance = _read_json(dir_uri, PROVENANCE_FILE) if has_provenance else {}
    surrogate = None
    if storage.exists(storage.join(dir_uri, "surrogate", storage.MANIFEST_NAME)):
        surrogate = load_bundle(storage.join(dir_uri, "surrogate"), map_location)
    return Bundle(kind, model, net_cfg, normalization, cfg.get("training", {}), metrics, dir_uri, surrogate, versions,
                  provenance)
