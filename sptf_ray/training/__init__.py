"""Training: shard and site-year readers, plain torch loops, Ray Train / Tune wrappers, bundles."""
