"""Soils of the virtual network: texture, bulk density, and the true hydraulic parameters.

True parameters of a site = a texture-based prior + a site-level random effect (DESIGN
section 0: texture alone must not determine them), both models at once:

- VGM prior: the Carsel & Parrish (1988) class means of the site's USDA texture class
  (theta_r, alpha, n, Ks); theta_s from bulk density (85 % of total porosity 1 - BD/2.65:
  some air stays entrapped at field saturation); H50 from land cover (drought-adapted
  vegetation wilts later).
- FXW-M3 prior: the FXW-M3 retention curve least-squares fitted to the class's Carsel & Parrish
  VGM curve, theta/theta_s over h in [-1, -15000] cm (`derive_fxw_class_priors`, tabulated in
  FXW_CLASS_PRIOR); theta_s, Ks and H50 as for VGM.
- Random effect: each parameter is mapped to the unit interval of its Table 1 bounds (log10
  for alpha and Ks), then to logit space, where a Gaussian site effect is added; the inverse
  maps back, so truth always lies strictly inside Table 1 whatever the draw. The effects of
  theta_s, alpha, n, Ks and H50 are shared by the two models, so both describe one soil.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sptf_ray.physics.parameters import PARAM_NAMES, parameter_space

USDA_CLASSES = (
    "sand", "loamy sand", "sandy loam", "loam", "silt loam", "silt",
    "sandy clay loam", "clay loam", "silty clay loam", "sandy clay", "silty clay", "clay",
)

# Carsel & Parrish (1988), Table 3 class means: theta_r, theta_s, alpha (1/cm), n, Ks (cm/d).
CARSEL_PARRISH = {
    "sand": (0.045, 0.43, 0.145, 2.68, 712.8),
    "loamy sand": (0.057, 0.41, 0.124, 2.28, 350.2),
    "sandy loam": (0.065, 0.41, 0.075, 1.89, 106.1),
    "loam": (0.078, 0.43, 0.036, 1.56, 24.96),
    "silt loam": (0.067, 0.45, 0.020, 1.41, 10.8),
    "silt": (0.034, 0.46, 0.016, 1.37, 6.0),
    "sandy clay loam": (0.100, 0.39, 0.059, 1.48, 31.44),
    "clay loam": (0.095, 0.41, 0.019, 1.31, 6.24),
    "silty clay loam": (0.089, 0.43, 0.010, 1.23, 1.68),
    "sandy clay": (0.100, 0.38, 0.027, 1.23, 2.88),
    "silty clay": (0.070, 0.36, 0.005, 1.09, 0.48),
    "clay": (0.068, 0.38, 0.008, 1.09, 4.8),
}

# FXW-M3 (alpha 1/cm, n, m) fitted to each Carsel & Parrish VGM curve by
# derive_fxw_class_priors(); a test checks this table against a fresh derivation.
FXW_CLASS_PRIOR = {
    "sand": (0.17584, 3.765, 0.82632),
    "loamy sand": (0.15459, 3.2914, 0.71579),
    "sandy loam": (0.092366, 2.0562, 0.75263),
    "loam": (0.037504, 1.5715, 0.67895),
    "silt loam": (0.017321, 1.2011, 0.71579),
    "silt": (0.011771, 1.2011, 0.82632),
    "sandy clay loam": (0.06277, 1.3739, 0.56842),
    "clay loam": (0.017321, 1.2846, 0.45789),
    "silty clay loam": (0.0090984, 1.2011, 0.38421),
    "sandy clay": (0.022408, 1.123, 0.38421),
    "silty clay": (0.0022072, 1.05, 0.2),
    "clay": (0.0042019, 1.05, 0.2),
}

# Root-water-uptake H50 (cm) by land cover: shrubs and savanna trees keep transpiring at
# drier heads than crops.
H50_BY_LAND_COVER = {"GRA": -800.0, "CRO": -500.0, "DBF": -1000.0, "ENF": -1000.0,
                     "OSH": -1500.0, "SAV": -1200.0}

# Prior values outside Table 1 are pulled to this margin of the unit interval before logit.
_UNIT_MARGIN = 0.02


@dataclass(frozen=True)
class RandomEffectConfig:
    """Site-level random-effect sd, in logit units of each parameter's Table 1 interval.

    At mid-interval one logit unit moves log10 Ks by about 1.1 decades and n by about 1.7.
    """

    theta_r: float = 0.6
    theta_s: float = 0.5
    alpha: float = 0.5
    n: float = 0.4
    m: float = 0.4
    Ks: float = 0.6
    H50: float = 0.5

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        for name, sd in vars(self).items():
            if not (np.isfinite(sd) and sd >= 0):
                raise ValueError(f"random effect sd of {name} must be finite and >= 0, got {sd}")


# Texture families (sand, silt, clay fractions) and their weights: mostly loams, sandy loams
# and silt loams, as in the ISMN, with tails into sands and clays.
_TEXTURE_FAMILIES = np.array([[0.65, 0.22, 0.13], [0.42, 0.38, 0.20], [0.20, 0.60, 0.20],
                              [0.25, 0.35, 0.40]])
_TEXTURE_WEIGHTS = np.array([0.35, 0.35, 0.22, 0.08])
_TEXTURE_CONCENTRATION = 14.0


def sample_texture(n_sites: int, rng: np.random.Generator) -> np.ndarray:
    """(n_sites, 3) sand, silt, clay in % (one decimal), each row summing to exactly 100."""
    family = rng.choice(len(_TEXTURE_WEIGHTS), size=n_sites, p=_TEXTURE_WEIGHTS)
    fractions = np.stack([rng.dirichlet(_TEXTURE_CONCENTRATION * _TEXTURE_FAMILIES[k]) for k in family])
    sand = np.round(100 * fractions[:, 0], 1)
    silt = np.round(100 * fractions[:, 1], 1)
    silt = np.minimum(silt, 100.0 - sand)
    clay = np.round(100.0 - sand - silt, 1)  # rounding to 0.1 % keeps the sum exact
    return np.stack([sand, silt, clay], axis=1)


def sample_bulk_density(sand: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Bulk density (g/cm3): sandier soils pack denser; clipped to 1.0-1.75."""
    bd = 1.30 + 0.0035 * np.asarray(sand) + rng.normal(0.0, 0.08, len(sand))
    return np.round(np.clip(bd, 1.0, 1.75), 3)


def texture_class(sand, silt, clay) -> np.ndarray:
    """USDA texture class names (NRCS soil texture triangle rules), vectorized."""
    sand, silt, clay = (np.asarray(x, dtype=np.float64) for x in (sand, silt, clay))
    total = sand + silt + clay
    if np.any(np.abs(total - 100.0) > 0.5) or np.any((sand < 0) | (silt < 0) | (clay < 0)):
        raise ValueError("sand, silt and clay must be non-negative percentages summing to 100")
    conditions = [
        silt + 1.5 * clay < 15,
        (silt + 1.5 * clay >= 15) & (silt + 2 * clay < 30),
        ((clay >= 7) & (clay < 20) & (sand > 52) & (silt + 2 * clay >= 30))
        | ((clay < 7) & (silt < 50) & (silt + 2 * clay >= 30)),
        (clay >= 7) & (clay < 27) & (silt >= 28) & (silt < 50) & (sand <= 52),
        ((silt >= 50) & (clay >= 12) & (clay < 27)) | ((silt >= 50) & (silt < 80) & (clay < 12)),
        (silt >= 80) & (clay < 12),
        (clay >= 20) & (clay < 35) & (silt < 28) & (sand > 45),
        (clay >= 27) & (clay < 40) & (sand > 20) & (sand <= 45),
        (clay >= 27) & (clay < 40) & (sand <= 20),
        (clay >= 35) & (sand > 45),
        (clay >= 40) & (silt >= 40),
        (clay >= 40) & (sand <= 45) & (silt < 40),
    ]
    names = ["sand", "loamy sand", "sandy loam", "loam", "silt loam", "silt",
             "sandy clay loam", "clay loam", "silty clay loam", "sandy clay", "silty clay", "clay"]
    out = np.select(conditions, names, default="")
    if np.any(out == ""):  # the rules tile the triangle; a gap would be a bug here
        raise AssertionError(f"texture outside every USDA class: {np.flatnonzero(out == '')[:5]}")
    return out.astype(object)


def prior_parameters(model: str, classes, bulk_density, land_cover) -> np.ndarray:
    """(S, 6) texture/land-cover prior of `model`, Table 1 column order (may exceed bounds)."""
    classes = np.asarray(classes)
    theta_s = 0.85 * (1.0 - np.asarray(bulk_density, dtype=np.float64) / 2.65)
    h50 = np.array([H50_BY_LAND_COVER[c] for c in land_cover])
    cp = np.array([CARSEL_PARRISH[c] for c in classes])
    if model == "vgm":
        return np.column_stack([cp[:, 0], theta_s, cp[:, 2], cp[:, 3], cp[:, 4], h50])
    if model == "fxw":
        fx = np.array([FXW_CLASS_PRIOR[c] for c in classes])
        return np.column_stack([theta_s, fx[:, 0], fx[:, 1], fx[:, 2], cp[:, 4], h50])
    raise ValueError(f"unknown hydraulic model {model!r}: expected 'vgm' or 'fxw'")


def true_parameters(classes, bulk_density, land_cover, rng: np.random.Generator,
                    random_effects: RandomEffectConfig = RandomEffectConfig()) -> dict:
    """{"vgm": (S, 6), "fxw": (S, 6)} true parameters, strictly inside Table 1 bounds."""
    n_sites = len(classes)
    shared = {k: rng.standard_normal(n_sites) for k in ("theta_s", "alpha", "n", "Ks", "H50")}
    own = {"theta_r": rng.standard_normal(n_sites), "m": rng.standard_normal(n_sites)}
    effects = {**shared, **own}
    truth = {}
    for model in ("vgm", "fxw"):
        space = parameter_space(model)
        prior_unit = np.clip(space.to_unit(prior_parameters(model, classes, bulk_density, land_cover)),
                             _UNIT_MARGIN, 1 - _UNIT_MARGIN)
        z = np.log(prior_unit / (1 - prior_unit))
        for j, name in enumerate(PARAM_NAMES[model]):
            z[:, j] += getattr(random_effects, name) * effects[name]
        truth[model] = space.from_unit(1.0 / (1.0 + np.exp(-z)))
    return truth


def fxw_relative_theta(h, alpha, n, m):
    """FXW-M3 theta/theta_s (paper eq. 6) for h < 0 cm; broadcasting numpy."""
    hr, h0 = -1.5e4, -6.3e6
    correction = 1.0 - np.log1p(h / hr) / np.log1p(h0 / hr)
    # ln Gamma = -m ln(ln(e + |alpha h|^n)) = -m log1p(log1p(|alpha h|^n / e)): exact near h = 0.
    log_gamma = -m * np.log1p(np.log1p(np.abs(alpha * h) ** n / np.e))
    return correction * np.exp(log_gamma)


def derive_fxw_class_priors(grid_size: int = 39) -> dict:
    """Least-squares FXW-M3 (alpha, n, m) per class against its Carsel & Parrish VGM curve.

    Grid search over Table 1 bounds (alpha and n log-spaced); returns {class: (alpha, n, m)}.
    """
    space = parameter_space("fxw")
    lo, hi = dict(zip(space.names, space.lower)), dict(zip(space.names, space.upper))
    alpha = np.geomspace(lo["alpha"], hi["alpha"], grid_size)[:, None, None, None]
    n = np.geomspace(lo["n"], hi["n"], grid_size)[None, :, None, None]
    m = np.linspace(lo["m"], hi["m"], grid_size)[None, None, :, None]
    h = -np.geomspace(1.0, 1.5e4, 40)[None, None, None, :]
    fxw = fxw_relative_theta(h, alpha, n, m)
    out = {}
    for name, (tr, ts, a, nn, _) in CARSEL_PARRISH.items():
        se = (1.0 + np.abs(a * h) ** nn) ** -(1.0 - 1.0 / nn)
        target = (tr + (ts - tr) * se) / ts
        sse = ((fxw - target) ** 2).sum(axis=-1)
        i, j, k = np.unravel_index(np.argmin(sse), sse.shape)
        out[name] = (float(alpha[i, 0, 0, 0]), float(n[0, j, 0, 0]), float(m[0, 0, k, 0]))
    return out
