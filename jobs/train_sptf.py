"""`ray job submit -- python jobs/train_sptf.py --data SITES --surrogate BUNDLE --out RUNS [...]`: same flags as `sptf train-sptf`."""
import sys

from sptf_ray.cli import main

if __name__ == "__main__":
    sys.exit(main(["train-sptf", *sys.argv[1:]]))
