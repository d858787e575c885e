"""Progress lines of long batches."""
from __future__ import annotations

import sptf_ray.progress as progress_module
from sptf_ray.progress import chunk_reporter


def test_chunk_reporter_says_done_elapsed_and_left_then_throttles(monkeypatch):
    clock = iter([100.0, 104.0, 110.0, 140.0, 141.0])  # start, then one reading per chunk
    monkeypatch.setattr(progress_module.time, "time", lambda: next(clock))
    lines = []
    report = chunk_reporter("job: step", "parts", lines.append, every_s=20)
    for done in (1, 2, 3, 4):
        report(done, 4)
    # 4 s and 10 s in: within 20 s of the start, quiet; 40 s in: a line; the last part: always
    assert lines == ["job: step 3/4 parts in 40 s, ~13 s left", "job: step 4/4 parts in 41 s"]
    assert chunk_reporter("job", "parts", None) is None
