"""Exceptions a user meets at the command line.

`StageFailed` is a stage that started but could not finish all of its work (a shard, a
batch of sites, a training run). Its message says what failed and whether a re-run resumes;
`sptf` prints that message and exits 1, without a Python traceback, because the traceback
of the orchestration code says nothing the message does not. (Bad input is a ValueError
or OSError: exit 2.)
"""
from __future__ import annotations


class StageFailed(RuntimeError):
    """A stage ran and failed part of its work; the message is meant for the user."""
