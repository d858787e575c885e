"""The surrogate's training set: sampling (sampling.py), Ray shard builder (build.py), CLI (cli.py)."""
