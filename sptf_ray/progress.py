"""Progress lines for long batches: what is done, how long it took, how long is left."""
from __future__ import annotations

import time
from typing import Callable, Optional


def chunk_reporter(label: str, unit: str, progress: Optional[Callable[[str], None]],
                   every_s: float = 0.0) -> Optional[Callable[[int, int], None]]:
    """An `on_chunk(done, total)` that prints "<label> done/total <unit> in T s, ~L s left" through
    `progress`: the last chunk always, others when `every_s` has passed since the last line (None
    when progress is None: nothing to say)."""
    if progress is None:
        return None
    t0 = last = time.time()

    def on_chunk(done: int, total: int) -> None:
        nonlocal last
        now = time.time()
        if done < total and now - last < every_s:
            return
        last, took = now, now - t0
        left = f", ~{took / done * (total - done):.0f} s left" if 0 < done < total else ""
        progress(f"{label} {done}/{total} {unit} in {took:.0f} s{left}")

    return on_chunk
