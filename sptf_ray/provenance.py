"""What a result was made with, recorded beside it: package versions and the host's CPU.

numba compiles the solver for the CPU it runs on and torch picks its kernels by the CPU's
instruction sets, so the same code and config repeat bit for bit on one kind of host but not
necessarily on another; recording the CPU lets two runs that differ be told apart. Torch-free.
"""
from __future__ import annotations

import os
import platform

# Instruction-set extensions that change which kernels numba and torch use.
_ISA_FLAGS = ("sse4_2", "fma", "avx", "avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_tile", "asimd", "sve")

__all__ = ["package_versions", "host_info", "provenance", "host_line"]


def package_versions() -> dict:
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for name in ("sptf-ray", "torch", "ray", "numpy", "pandas", "pyarrow", "numba"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = None
    return out


def _cpuinfo(path: str) -> tuple[str, list[str]]:
    """(model name, flags) of the first CPU in a Linux cpuinfo file; ('', []) when unreadable."""
    model, flags = "", []
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip().lower()
                if key == "model name" and not model:
                    model = value.strip()
                elif key in ("flags", "features") and not flags:
                    flags = value.split()
                if model and flags:
                    break
    except OSError:
        pass
    return model, flags


def host_info(cpuinfo: str = "/proc/cpuinfo") -> dict:
    """The machine this process runs on: node name, architecture, CPU model, relevant ISA flags, core count."""
    model, flags = _cpuinfo(cpuinfo)
    return {"node": platform.node(), "machine": platform.machine(), "cpu": model or platform.processor() or "unknown",
            "isa": [f for f in _ISA_FLAGS if f in flags], "cpus": os.cpu_count()}


def provenance() -> dict:
    """What `stages.json` records a stage was made with: host_info() plus its package versions."""
    return {**host_info(), "versions": package_versions()}


def host_line(cpuinfo: str = "/proc/cpuinfo") -> str:
    """The line a benchmark prints first, so that a number can be traced to the host that gave it."""
    info, v = host_info(cpuinfo), package_versions()
    isa = ", ".join(info["isa"]) or "no listed ISA extensions"
    return (f"host: {info['cpu']} ({info['machine']}; {isa}), {info['cpus']} CPUs; python {v['python']}, "
            f"numba {v['numba']}, torch {v['torch']}, ray {v['ray']}")
