"""`ray job submit -- python jobs/train_surrogate.py --data SHARDS --out RUNS [...]`: same flags as `sptf train-surrogate`."""
import sys

from sptf_ray.cli import main

if __name__ == "__main__":
    sys.exit(main(["train-surrogate", *sys.argv[1:]]))
