"""Pack what an offline GPU machine lacks to run benchmarks/gpu.py: Ray and its missing deps.

GPU machines on closed networks (an HPC partition, a lent cloud box) often have PyTorch, numpy,
pandas, pyarrow and numba but no Ray, and no package index to get it from. This resolves
`ray[default,train,tune]` (the version installed here) for the target's Python and platform,
leaves out what the target already has (--have: its `pip list --format freeze`, or names), and
installs the rest into one folder packed as OUT/site.tar.xz, made small enough for a size-limited
transfer: Ray's Java jar, RLlib, Serve and LLM are dropped, as are packages only Ray features we
never start need (runtime-env virtualenvs, py-spy stack dumps, cryptography for Google auth), and
ELF binaries are stripped of symbols. --run copies a `sptf run` directory's dataset/ and network/
beside it, so benchmarks/gpu.py has its inputs there.

    python benchmarks/offline_kit.py --have benchmarks/gpu_image_packages.txt --run RUN --out .gpu-kit
    # on the target, from the repository root:
    mkdir -p /tmp/kit && tar -xJf .gpu-kit/site.tar.xz -C /tmp/kit
    PYTHONPATH=/tmp/kit/site:$PWD python3 benchmarks/gpu.py --run .gpu-kit/run --out /tmp/gpu

Measured here (2026-12-05, ray 2.60.0 for CPython 3.12 manylinux x86_64, against
gpu_image_packages.txt): 27 of the 64 resolved wheels packed, 29 MB (Ray alone is a 79 MB
wheel; unstripped and with bytecode the folder packed to 40 MB); 100 s to build. A CPython 3.12
venv holding only packages of that list ran benchmarks/gpu.py --devices cpu through Ray Train
with the unpacked kit on its path.
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile

RAY_EXTRAS = "default,train,tune"
# Parts of the Ray wheel nothing here imports: the Java worker, RLlib, Serve, LLM serving,
# console scripts, and the dashboard UI's source maps.
RAY_UNUSED = ("ray/jars", "ray/rllib", "ray/serve", "ray/llm")
# Distributions that only Ray features we never start import (pip runtime envs, py-spy stack
# dumps, Google auth's crypto); the kit ran without them.
UNUSED_DISTRIBUTIONS = ("virtualenv", "distlib", "platformdirs", "python-discovery", "py-spy", "cryptography",
                        "cffi", "pycparser")
PLATFORMS = ("manylinux2014_x86_64", "manylinux_2_17_x86_64", "manylinux_2_27_x86_64", "manylinux_2_28_x86_64")


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def read_have(path: str | None) -> set[str]:
    """Distribution names from `pip list --format freeze` lines, bare names or comments."""
    if not path:
        return set()
    names = set()
    with open(path) as f:
        for line in f:
            line = line.split("#", 1)[0].strip()
            names.update(canonical(re.split(r"[=<>~ ]", tok, maxsplit=1)[0]) for tok in line.split() if tok)
    return names


def wheel_name(filename: str) -> str:
    return canonical(os.path.basename(filename).split("-", 1)[0])


def pip(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "pip", *args], check=True)


def platform_args(python_version: str) -> list[str]:
    out = ["--only-binary=:all:", "--python-version", python_version, "--implementation", "cp"]
    for p in PLATFORMS:
        out += ["--platform", p]
    return out


def download(ray_version: str, python_version: str, dest: str) -> list[str]:
    pip("download", "-q", *platform_args(python_version), "-d", dest, f"ray[{RAY_EXTRAS}]=={ray_version}")
    return sorted(os.path.join(dest, f) for f in os.listdir(dest) if f.endswith(".whl"))


def install(wheels: list[str], python_version: str, site: str) -> None:
    pip("install", "-q", "--no-deps", "--no-index", "--no-compile", "--target", site, *platform_args(python_version),
        *wheels)


def prune(site: str) -> None:
    for rel in (*RAY_UNUSED, "bin"):
        shutil.rmtree(os.path.join(site, rel), ignore_errors=True)
    for root, _, files in os.walk(os.path.join(site, "ray", "dashboard")):
        for f in files:
            if f.endswith(".map"):
                os.remove(os.path.join(root, f))


def strip_binaries(site: str) -> None:
    """Drop symbol tables of ELF files over 1 MB (Ray's gcs_server, raylet, _raylet.so: -40 %)."""
    if shutil.which("strip") is None:
        print("strip not found: binaries keep their symbols (the kit is larger)")
        return
    for root, _, files in os.walk(site):
        for f in files:
            path = os.path.join(root, f)
            if os.path.islink(path) or os.path.getsize(path) < 1_000_000:
                continue
            with open(path, "rb") as fh:
                if fh.read(4) != b"\x7fELF":
                    continue
            subprocess.run(["strip", "--strip-unneeded", path], check=True)


def copy_run(run_dir: str, dest: str) -> None:
    for part in ("dataset", "network"):
        src = os.path.join(run_dir, part)
        if not os.path.isdir(src):
            raise SystemExit(f"{run_dir} has no {part}/ (run `sptf run CONFIG --out {run_dir} --stop-after dataset`)")
        shutil.copytree(src, os.path.join(dest, part), dirs_exist_ok=True)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default=".gpu-kit", help="kit folder (default %(default)s)")
    p.add_argument("--have", help="packages the target already has (pip list --format freeze, or names)")
    p.add_argument("--python-version", default="3.12", help="the target's Python (default %(default)s)")
    p.add_argument("--ray-version", help="default: the Ray installed here")
    p.add_argument("--run", help="`sptf run` directory whose dataset/ and network/ to copy into OUT/run")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    ray_version = args.ray_version
    if not ray_version:
        import ray

        ray_version = ray.__version__
    have = read_have(args.have)
    skip = have | {canonical(n) for n in UNUSED_DISTRIBUTIONS}
    os.makedirs(args.out, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="sptf-kit-") as tmp:
        wheels = download(ray_version, args.python_version, os.path.join(tmp, "wheels"))
        kept = [w for w in wheels if wheel_name(w) not in skip]
        print(f"{len(wheels)} wheels resolved, {len(kept)} packed: {' '.join(wheel_name(w) for w in kept)}")
        site = os.path.join(tmp, "site")
        install(kept, args.python_version, site)
        prune(site)
        strip_binaries(site)
        partial = os.path.join(args.out, "site.tar.xz.partial")
        subprocess.run(["tar", "-cJf", partial, "-C", tmp, "site"], check=True)
        os.replace(partial, os.path.join(args.out, "site.tar.xz"))
    if args.run:
        copy_run(args.run, os.path.join(args.out, "run"))
    size = sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(args.out) for f in fs)
    print(f"kit {args.out}: {size / 2**20:.1f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
