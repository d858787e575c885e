"""The trained surrogate as a batched forward model (same protocol as the numba solver's).

Lets SCE-UA inversion (sptf_ray.inverse.site) run on the surrogate: one call evaluates
a whole population on CPU or GPU. Parameters outside the surrogate's training range
are rejected rather than extrapolated silently.
"""
from __future__ import annotations

import numpy as np
import torch

from .scaling import physical_to_unit, surrogate_bounds


class SurrogateForward:
    """simulate_batch(model, params (P, 6), precip, pet, lai (P, T) or (T,)) -> swc (P, T)."""

    name = "surrogate"

    def __init__(self, bundle_uri: str, device: str | None = None, batch_size: int = 4096):
        from sptf_ray.training.bundle import load_bundle

        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        bundle = load_bundle(bundle_uri, map_location=self.device)
        if bundle.kind != "surrogate":
            raise ValueError(f"{bundle_uri} holds a {bundle.kind!r} bundle, not a surrogate")
        self.uri = bundle_uri
        self.net = bundle.model
        self.model = bundle.network_config.model
        self.forcing_norm = bundle.normalization["forcing"]
        self.bounds = surrogate_bounds(self.model)
        self.batch_size = int(batch_size)

    @torch.no_grad()
    def simulate_batch(self, model, params, precip, pet, lai) -> np.ndarray:
        if model != self.model:
            raise ValueError(f"the surrogate at {self.uri} emulates {self.model!r}, not {model!r}")
        params = np.atleast_2d(np.asarray(params, dtype=np.float32))
        forcing = np.stack(np.broadcast_arrays(*(np.atleast_2d(np.asarray(x, np.float32)) for x in
                                                 (precip, pet, lai))), axis=-1)
        forcing = np.broadcast_to(forcing, (params.shape[0],) + forcing.shape[1:])
        unit = physical_to_unit(torch.from_numpy(params), self.bounds).numpy()
        outside = (unit < -1e-6) | (unit > 1 + 1e-6)
        if outside.any():
            row, col = np.argwhere(outside)[0]
            raise ValueError(f"params[{row}] {self.bounds.names[col]} = {params[row, col]:g} lies outside the "
                             f"surrogate's training range; use the solver forward model")
        out = np.empty(forcing.shape[:2], dtype=np.float64)
        for start in range(0, len(params), self.batch_size):
            sl = slice(start, start + self.batch_size)
            p = torch.from_numpy(unit[sl]).to(self.device)
            f = self.forcing_norm(torch.from_numpy(np.array(forcing[sl], dtype=np.float32)).to(self.device))  # a copy: broadcast views are read-only
            out[sl] = self.net(p, f).double().cpu().numpy()
        return out
