"""Readers: surrogate training shards (Parquet) and site-year samples for the SPTF.

Surrogate shards (branch `dataset`, DESIGN section 3 step 2): files `shard-NNNNN.parquet`
(+ manifest.json) with columns sim_id int64, model string, params fixed_size_list<float32>[6]
(Table 1 order), precip/pet/lai/swc list<float32> (length T), balance_error float32,
forcing_source string. Simulations are split 80/10/10 by a seeded hash of sim_id, so the
split of a simulation never depends on which shard or worker reads it.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import torch

from sptf_ray import storage
from sptf_ray.data.validate import frozen_mask, site_year_blocks
from sptf_ray.models import SPTF_DAILY, SPTF_STATIC, Normalizer, site_theta_s_upper
from sptf_ray.models.scaling import surrogate_bounds

SHARD_PATTERN = re.compile(r"^shard-\d+\.parquet$")
SHARD_COLUMNS = ["sim_id", "model", "params", "precip", "pet", "lai", "swc"]
SURROGATE_FORCING_COLUMNS = ("precip", "pet", "lai")
DAYS = 365

__all__ = ["shard_paths", "sim_split", "count_split", "SurrogateBatcher", "read_surrogate_arrays", "fit_forcing_normalizer",
           "iterate_batches", "SPTFArrays", "build_sptf_arrays", "fit_sptf_normalizers", "load_site_samples"]


# ------------------------------------------------------------------------------ surrogate shards
def shard_paths(dir_uri, verify: bool = True) -> list[str]:
    """Sorted URIs of `shard-*.parquet` in `dir_uri`; the manifest must verify when present."""
    files = [u for u in storage.list_files(dir_uri, suffix=".parquet") if SHARD_PATTERN.match(u.rsplit("/", 1)[-1])]
    if not files:
        raise FileNotFoundError(f"no shard-*.parquet files in {dir_uri}")
    if verify and storage.exists(storage.join(dir_uri, storage.MANIFEST_NAME)):
        if not storage.verify_manifest(dir_uri):
            raise ValueError(f"surrogate dataset {dir_uri}: manifest does not verify (incomplete or modified)")
    return files


def sim_split(sim_id, seed: int = 0, val_fraction: float = 0.1, test_fraction: float = 0.1) -> np.ndarray:
    """'train' / 'val' / 'test' per sim_id from a seeded 64-bit hash (splitmix64)."""
    with np.errstate(over="ignore"):
        z = np.asarray(sim_id, dtype=np.int64).astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15) * np.uint64(seed + 1)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    u = (z >> np.uint64(11)).astype(np.float64) / float(2**53)
    return np.where(u < val_fraction, "val", np.where(u < val_fraction + test_fraction, "test", "train"))


def split_mask(table: pa.Table, model: str, split: str | None, seed: int = 0, val_fraction: float = 0.1,
               test_fraction: float = 0.1) -> np.ndarray:
    """Rows of `table` (columns sim_id, model) that belong to `model` and `split` (None: every split)."""
    keep = np.asarray(table.column("model").to_pylist()) == model
    if split is not None:
        keep &= sim_split(table.column("sim_id").to_numpy(), seed, val_fraction, test_fraction) == split
    return keep


def _list_column(col, width: int | None, name: str) -> np.ndarray:
    """A (fixed-size) list column -> (B, L) float32 (every row must have the same length)."""
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    n = len(col)
    if n == 0:
        return np.zeros((0, width or 0), dtype=np.float32)
    flat = pc.list_flatten(col).to_numpy(zero_copy_only=False).astype(np.float32)
    if flat.size % n:
        raise ValueError(f"column {name!r}: rows have different lengths")
    length = flat.size // n
    if width is not None and length != width:
        raise ValueError(f"column {name!r}: expected {width} values per row, got {length}")
    return flat.reshape(n, length)


class SurrogateBatcher:
    """Raw shard rows (pyarrow Table or pandas) -> model arrays for one model and one split.

    Output dict of numpy: params (B, 6) unit-scaled for the surrogate, forcing (B, T, 3)
    normalized, swc (B, T). Rows of another model, another split or with non-finite SWC
    (a failed simulation) are dropped. `seq_len` keeps the first days only (cold start).
    Used both by the plain loops and as a Ray Data `map_batches` function.
    """

    def __init__(self, model: str, normalizer: Normalizer | dict | None, split: str | None = "train",
                 seed: int = 0, seq_len: int | None = None, val_fraction: float = 0.1, test_fraction: float = 0.1):
        self.model = model
        self.normalizer = Normalizer(**normalizer) if isinstance(normalizer, dict) else normalizer
        self.split, self.seed, self.seq_len = split, seed, seq_len
        self.val_fraction, self.test_fraction = val_fraction, test_fraction

    def __call__(self, batch) -> dict:
        table = batch if isinstance(batch, pa.Table) else pa.Table.from_pandas(batch, preserve_index=False)
        keep = split_mask(table, self.model, self.split, self.seed, self.val_fraction, self.test_fraction)
        table = table.filter(pa.array(keep))
        params = _list_column(table.column("params"), 6, "params")
        forcing = np.stack([_list_column(table.column(c), None, c) for c in SURROGATE_FORCING_COLUMNS], axis=-1)
        swc = _list_column(table.column("swc"), None, "swc")
        if self.seq_len is not None:
            if swc.shape[1] < self.seq_len:
                raise ValueError(f"seq_len {self.seq_len} exceeds the shards' {swc.shape[1]} days")
            forcing, swc = forcing[:, : self.seq_len], swc[:, : self.seq_len]
        ok = np.isfinite(swc).all(axis=1) & np.isfinite(params).all(axis=1) & np.isfinite(forcing).all(axis=(1, 2))
        unit = _params_to_unit(params[ok], self.model)
        out = {"sim_id": table.column("sim_id").to_numpy()[ok].astype(np.int64), "params": unit,
               "forcing": forcing[ok], "swc": swc[ok]}
        if self.normalizer is not None:
            out["forcing"] = self.normalizer(out["forcing"])
        return out


def _params_to_unit(params: np.ndarray, model: str) -> np.ndarray:
    from sptf_ray.models import physical_to_unit

    if len(params) == 0:
        return np.zeros((0, 6), dtype=np.float32)
    return physical_to_unit(torch.as_tensor(params, dtype=torch.float64), surrogate_bounds(model)).numpy().astype(
        np.float32)


def _read_shard(uri, columns=SHARD_COLUMNS) -> pa.Table:
    fs, path = storage.resolve(uri)
    import pyarrow.parquet as pq

    with fs.open_input_file(path) as f:
        return pq.read_table(f, columns=list(columns))


def read_surrogate_arrays(paths, batcher: SurrogateBatcher) -> dict:
    """All rows of `paths` through `batcher`, concatenated (for small sets and the plain loops)."""
    parts = [batcher(_read_shard(p)) for p in paths]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def count_split(paths, model: str, split: str, seed: int = 0, val_fraction: float = 0.1,
                test_fraction: float = 0.1) -> int:
    """How many simulations of `model` fall in `split` (reads only sim_id and model)."""
    return sum(int(split_mask(_read_shard(p, columns=("sim_id", "model")), model, split, seed, val_fraction,
                              test_fraction).sum()) for p in paths)


def fit_forcing_normalizer(paths, model: str, seed: int = 0, max_shards: int = 8) -> Normalizer:
    """Mean/std of P, PET, LAI over the training simulations of up to `max_shards` shards."""
    batcher = SurrogateBatcher(model, None, split="train", seed=seed)
    arrays = read_surrogate_arrays(list(paths)[:max_shards], batcher)
    if len(arrays["swc"]) == 0:
        raise ValueError(f"no training simulations of model {model!r} in {list(paths)[:max_shards]}")
    return Normalizer.fit(list(SURROGATE_FORCING_COLUMNS), arrays["forcing"])


def iterate_batches(arrays: dict, batch_size: int, shuffle: bool = False, seed: int = 0, rank: int = 0,
                    world_size: int = 1):
    """Mini-batches (dicts of torch tensors) of in-memory arrays; rank/world_size shard them.

    The shuffle is a torch.Generator seeded by `seed`, so an epoch's order is reproducible.
    """
    n = len(next(iter(arrays.values())))
    order = torch.randperm(n, generator=torch.Generator().manual_seed(int(seed))) if shuffle else torch.arange(n)
    order = order[rank::world_size]
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size].numpy()
        yield {k: torch.as_tensor(np.asarray(v)[idx]) for k, v in arrays.items() if not _is_meta(v)}


def _is_meta(v) -> bool:
    return isinstance(v, (list, tuple)) or (isinstance(v, np.ndarray) and v.dtype.kind in "OUS")


# ------------------------------------------------------------------------------ SPTF samples
@dataclass
class SPTFArrays:
    """Site-year samples: the historical year in, the target year to score.

    hist_daily (N, 365, 5): SWC, P, PET, LAI, LST (raw units); static (N, 4): sand, silt, clay, BD;
    theta_s_upper (N,); target_forcing (N, 365, 3): P, PET, LAI; target_swc (N, 365) (NaN = missing);
    target_mask (N, 365): bLST of the target year.
    """

    site_id: np.ndarray
    hist_year: np.ndarray
    target_year: np.ndarray
    hist_daily: np.ndarray
    static: np.ndarray
    theta_s_upper: np.ndarray
    target_forcing: np.ndarray
    target_swc: np.ndarray
    target_mask: np.ndarray
    rejected: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.site_id)

    def tensors(self) -> dict:
        return {k: getattr(self, k) for k in ("hist_daily", "static", "theta_s_upper", "target_forcing",
                                              "target_swc", "target_mask")}

    def subset(self, mask) -> "SPTFArrays":
        mask = np.asarray(mask)
        return SPTFArrays(**{k: getattr(self, k)[mask] for k in ("site_id", "hist_year", "target_year",
                                                                 "hist_daily", "static", "theta_s_upper",
                                                                 "target_forcing", "target_swc", "target_mask")},
                          rejected=dict(self.rejected))


def _static_rejections(static: pd.DataFrame) -> dict:
    out = {}
    for _, row in static.iterrows():
        missing = [c for c in SPTF_STATIC if pd.isna(row.get(c))]
        flag = row.get("static_missing")
        if isinstance(flag, str) and flag:
            missing = sorted(set(missing) | set(flag.split(",")))
        if missing:
            out[str(row["site_id"])] = f"static attributes missing: {', '.join(missing)}"
    return out


def build_sptf_arrays(static: pd.DataFrame, daily: pd.DataFrame, samples: pd.DataFrame,
                      require_target: bool = True) -> SPTFArrays:
    """Arrays for the (site_id, hist_year, target_year) rows of `samples`.

    Sites without sand, silt, clay or bulk density are rejected (reason in `.rejected`), as are
    samples whose years do not hold 365 days. With require_target=False a missing target year
    gives NaN target arrays (prediction for new sites).
    """
    rejected = _static_rejections(static)
    static_by_id = dict(zip(static["site_id"].astype(str), static[list(SPTF_STATIC)].to_numpy(np.float64)))
    blocks = site_year_blocks(daily, SPTF_DAILY)
    swc, lst = SPTF_DAILY.index("swc"), SPTF_DAILY.index("lst_c")
    forcing = [SPTF_DAILY.index(c) for c in ("precip_cm", "pet_cm", "lai")]
    rows = {k: [] for k in ("site_id", "hist_year", "target_year", "hist_daily", "static", "target_forcing",
                            "target_swc", "target_mask")}
    for sample in samples.itertuples(index=False):
        sid = str(sample.site_id)
        if sid in rejected:
            continue
        if sid not in static_by_id or sid not in blocks:
            rejected[sid] = "no static row" if sid not in static_by_id else "no daily rows"
            continue
        hist = blocks[sid].get(int(sample.hist_year))
        target = blocks[sid].get(int(sample.target_year))
        if hist is None or (target is None and require_target):
            rejected[f"{sid}/{sample.hist_year}"] = "historical or target year without 365 days"
            continue
        rows["site_id"].append(sid)
        rows["hist_year"].append(int(sample.hist_year))
        rows["target_year"].append(int(sample.target_year))
        rows["hist_daily"].append(hist)
        rows["static"].append(static_by_id[sid])
        if target is not None:
            rows["target_forcing"].append(target[:, forcing])
            rows["target_swc"].append(target[:, swc])
            rows["target_mask"].append(frozen_mask(target[:, lst]))
        else:
            rows["target_forcing"].append(np.full((DAYS, 3), np.nan))
            rows["target_swc"].append(np.full(DAYS, np.nan))
            rows["target_mask"].append(np.zeros(DAYS, np.float32))
    n = len(rows["site_id"])
    if n == 0:
        return SPTFArrays(np.array([], dtype=object), np.zeros(0, np.int64), np.zeros(0, np.int64),
                          np.zeros((0, DAYS, 5), np.float32), np.zeros((0, 4), np.float32), np.zeros(0, np.float32),
                          np.zeros((0, DAYS, 3), np.float32), np.zeros((0, DAYS), np.float32),
                          np.zeros((0, DAYS), np.float32), rejected)
    hist_daily = np.stack(rows["hist_daily"])
    return SPTFArrays(
        site_id=np.asarray(rows["site_id"], dtype=object),
        hist_year=np.asarray(rows["hist_year"], dtype=np.int64),
        target_year=np.asarray(rows["target_year"], dtype=np.int64),
        hist_daily=hist_daily.astype(np.float32),
        static=np.stack(rows["static"]).astype(np.float32),
        theta_s_upper=site_theta_s_upper(hist_daily[:, :, 0]).astype(np.float32),
        target_forcing=np.stack(rows["target_forcing"]).astype(np.float32),
        target_swc=np.stack(rows["target_swc"]).astype(np.float32),
        target_mask=np.stack(rows["target_mask"]).astype(np.float32),
        rejected=rejected,
    )


def fit_sptf_normalizers(train: SPTFArrays) -> tuple[Normalizer, Normalizer]:
    """(daily, static) normalizers from the training samples."""
    if len(train) == 0:
        raise ValueError("no training samples to fit the SPTF input normalization on")
    return (Normalizer.fit(list(SPTF_DAILY), train.hist_daily), Normalizer.fit(list(SPTF_STATIC), train.static))


def load_site_samples(dataset_uri, split_seed: int = 0):
    """(static, daily, samples with a 'split' column) of a site dataset dir.

    Uses the dataset's saved splits.parquet when present, else makes seeded 70/15/15 site splits.
    The daily table goes through QC (validate_sites), so years hold 365 days with gaps filled.
    """
    from sptf_ray.data.splits import SPLITS_FILE, load_splits, make_splits
    from sptf_ray.data.validate import load_site_dataset

    ds = load_site_dataset(dataset_uri, validate=True)
    if storage.exists(storage.join(dataset_uri, SPLITS_FILE)):
        samples = load_splits(dataset_uri)
    else:
        samples = make_splits(ds.daily, {"seed": split_seed})
    return ds.static, ds.daily, samples
