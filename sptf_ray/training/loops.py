"""Plain torch training loops, functions of (model, data, device); Ray Train wraps them.

Surrogate batches: dicts with params (B, 6) unit-scaled, forcing (B, T, 3) normalized, swc (B, T).
SPTF batches: dicts with the SPTFArrays fields (raw units); normalization happens here.
"""
from __future__ import annotations

import contextlib
import io
import random
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from sptf_ray import storage
from sptf_ray.models import Normalizer, freeze, masked_mse, sptf_to_surrogate_unit
from sptf_ray.models.scaling import surrogate_bounds
from sptf_ray.training.schedule import LR_SCHEDULES, scheduled_lr

__all__ = ["seed_everything", "LR_SCHEDULES", "scheduled_lr", "set_lr", "train_surrogate_epoch", "evaluate_surrogate", "SPTFContext", "sptf_forward",
           "train_sptf_epoch", "evaluate_sptf", "save_checkpoint", "load_checkpoint", "unwrap"]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def set_lr(optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside a DistributedDataParallel wrapper (or the model itself)."""
    return model.module if hasattr(model, "module") and isinstance(model, nn.parallel.DistributedDataParallel) else model


def _to(batch: dict, device) -> dict:
    return {k: torch.as_tensor(v).to(device, non_blocking=True) for k, v in batch.items()}


def _optimizer_step(loss, model: nn.Module, optimizer, grad_clip: float | None) -> None:
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if grad_clip:
        nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()


# ------------------------------------------------------------------------------ surrogate
def train_surrogate_epoch(model: nn.Module, batches, optimizer, device="cpu", grad_clip: float | None = 1.0) -> dict:
    """One pass over `batches`; returns {'loss': sample-weighted mean MSE, 'n': samples}."""
    model.train()
    total, n = 0.0, 0
    for batch in batches:
        b = _to({k: batch[k] for k in ("params", "forcing", "swc")}, device)
        pred = model(b["params"].float(), b["forcing"].float())
        loss = torch.mean((pred - b["swc"].float()) ** 2)
        _optimizer_step(loss, model, optimizer, grad_clip)
        total += loss.item() * len(pred)
        n += len(pred)
    return {"loss": total / max(n, 1), "n": n}


@torch.no_grad()
def evaluate_surrogate(model: nn.Module, batches, device="cpu") -> dict:
    """{'mse', 'rmse', 'n'} over every day of every sequence in `batches` (NaN when there are none)."""
    model.eval()
    sq, count, n = 0.0, 0, 0
    for batch in batches:
        b = _to({k: batch[k] for k in ("params", "forcing", "swc")}, device)
        pred = model(b["params"].float(), b["forcing"].float())
        sq += torch.sum((pred - b["swc"].float()) ** 2).item()
        count += pred.numel()
        n += len(pred)
    mse = sq / count if count else float("nan")  # no data is no score, never a perfect one
    return {"mse": mse, "rmse": mse ** 0.5, "n": n}


# ------------------------------------------------------------------------------ SPTF
@dataclass
class SPTFContext:
    """What the SPTF loop needs besides the SPTF: the frozen surrogate and the normalizers."""

    surrogate: nn.Module
    model: str  # "vgm" or "fxw"
    daily_norm: Normalizer
    static_norm: Normalizer
    forcing_norm: Normalizer  # the surrogate's

    def __post_init__(self):
        freeze(self.surrogate)
        self.sur_bounds = surrogate_bounds(self.model)


def _cudnn_guard(device):
    # cuDNN's RNN backward refuses eval mode; the frozen surrogate stays in eval mode, so run it
    # without cuDNN on GPU (gradients still flow to the SPTF).
    if torch.device(device).type == "cuda":
        return torch.backends.cudnn.flags(enabled=False)
    return contextlib.nullcontext()


def sptf_forward(sptf: nn.Module, ctx: SPTFContext, batch: dict, device="cpu"):
    """(unit (B, 6), physical (B, 6), simulated target-year SWC (B, T) via the surrogate)."""
    b = _to(batch, device)
    daily = torch.nan_to_num(ctx.daily_norm(b["hist_daily"].float()))
    static = ctx.static_norm(b["static"].float())
    unit = sptf(daily, static)
    upper = b["theta_s_upper"].float()
    core = unwrap(sptf)
    phys = core.to_physical(unit, upper)
    sur_unit = sptf_to_surrogate_unit(unit, ctx.model, upper, ctx.sur_bounds)
    forcing = torch.nan_to_num(ctx.forcing_norm(b["target_forcing"].float()))
    with _cudnn_guard(device):
        pred = ctx.surrogate(sur_unit, forcing)
    return unit, phys, pred


def train_sptf_epoch(sptf: nn.Module, ctx: SPTFContext, batches, optimizer, device="cpu",
                     grad_clip: float | None = 1.0) -> dict:
    """One pass: SPTF -> parameters -> frozen surrogate over the target year -> eq. 3 vs observed SWC."""
    sptf.train()
    ctx.surrogate.eval()
    total, n = 0.0, 0
    for batch in batches:
        _, _, pred = sptf_forward(sptf, ctx, batch, device)
        b = _to({k: batch[k] for k in ("target_swc", "target_mask")}, device)
        loss = masked_mse(pred, b["target_swc"].float(), b["target_mask"].float())
        _optimizer_step(loss, sptf, optimizer, grad_clip)
        total += loss.item() * len(pred)
        n += len(pred)
    return {"loss": total / max(n, 1), "n": n}


@torch.no_grad()
def evaluate_sptf(sptf: nn.Module, ctx: SPTFContext, batches, device="cpu") -> dict:
    """Pooled eq. 3 loss over the counted days: {'loss', 'rmse', 'n'}."""
    sptf.eval()
    sq, count, n = 0.0, 0.0, 0
    for batch in batches:
        _, _, pred = sptf_forward(sptf, ctx, batch, device)
        b = _to({k: batch[k] for k in ("target_swc", "target_mask")}, device)
        obs = b["target_swc"].float()
        w = b["target_mask"].float() * torch.isfinite(obs).float()
        sq += torch.sum(torch.nan_to_num(pred - obs) ** 2 * w).item()
        count += w.sum().item()
        n += len(pred)
    loss = sq / max(count, 1.0)
    return {"loss": loss, "rmse": loss ** 0.5, "n": n}


# ------------------------------------------------------------------------------ checkpoints
CHECKPOINT_FILE = "checkpoint.pt"


def _rng_state() -> dict:
    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"key": torch.as_tensor(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "cached": float(np_state[4])},
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"].cpu())
    s = state["numpy"]
    np.random.set_state(("MT19937", s["key"].numpy().astype(np.uint32), s["pos"], s["has_gauss"], s["cached"]))
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([t.cpu() for t in state["cuda"]])


def save_checkpoint(uri, model: nn.Module, optimizer=None, epoch: int = 0, metrics: dict | None = None,
                    extra: dict | None = None) -> str:
    """Model (unwrapped from DDP), optimizer and RNG state to one .pt file, atomically.

    Only tensors and plain Python values are stored, so `torch.load(weights_only=True)` reads it.
    """
    state = {
        "model": {k: v.detach().cpu() for k, v in unwrap(model).state_dict().items()},
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "epoch": int(epoch),
        "metrics": dict(metrics or {}),
        "extra": dict(extra or {}),
        "rng": _rng_state(),
    }
    buf = io.BytesIO()
    torch.save(state, buf)
    return storage.atomic_write_bytes(uri, buf.getvalue())


def load_checkpoint(uri, model: nn.Module | None = None, optimizer=None, map_location="cpu",
                    restore_rng: bool = True) -> dict:
    """Read a checkpoint (weights_only=True); load it into model/optimizer when given."""
    try:
        raw = storage.read_bytes(uri)
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"no checkpoint at {uri}") from exc
    state = torch.load(io.BytesIO(raw), map_location=map_location, weights_only=True)
    if model is not None:
        unwrap(model).load_state_dict(state["model"])
    if optimizer is not None and state.get("optimizer") is not None:
        optimizer.load_state_dict(state["optimizer"])
    if restore_rng and state.get("rng"):
        _set_rng_state(state["rng"])
    return state
