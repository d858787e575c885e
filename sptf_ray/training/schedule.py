"""Learning-rate schedules: plain numbers, no torch, so the CLI can offer them without importing it."""
from __future__ import annotations

import math

__all__ = ["LR_SCHEDULES", "scheduled_lr"]

LR_SCHEDULES = ("constant", "cosine")


def scheduled_lr(base_lr: float, epoch: int, epochs: int, schedule: str = "constant",
                 final_fraction: float = 0.01) -> float:
    """The learning rate of `epoch` (0-based) out of `epochs`.

    A pure function of the epoch, so a resumed run sets the same rate without scheduler state.
    "cosine" falls from base_lr at the first epoch to base_lr * final_fraction at the last.
    """
    if schedule == "constant" or epochs <= 1:
        return float(base_lr)
    if schedule != "cosine":
        raise ValueError(f"lr schedule must be one of {LR_SCHEDULES}, got {schedule!r}")
    progress = min(max(epoch, 0), epochs - 1) / (epochs - 1)
    return float(base_lr * (final_fraction + (1.0 - final_fraction) * 0.5 * (1.0 + math.cos(math.pi * progress))))
