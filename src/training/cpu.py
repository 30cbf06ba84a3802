"""The CPU a number came from: oneDNN picks its kernels by the CPU's instruction sets, so timings
and even trained weights differ between machines. Every benchmark section and MLflow run records these."""

import functools
import os
import platform
from pathlib import Path

# The instruction sets that decide TensorFlow's CPU kernels here: AVX2 or AVX-512 for float32,
# AVX512_BF16 or AMX for bfloat16 (without them bfloat16 is emulated, many times slower).
FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16")
BFLOAT16_FLAGS = ("avx512_bf16", "amx_bf16")
CPUINFO = Path("/proc/cpuinfo")


@functools.cache
def _cpuinfo() -> dict[str, str]:
    try:
        text = CPUINFO.read_text()
    except OSError:  # not Linux
        return {}
    fields = {}
    for line in text.split("\n\n")[0].splitlines():  # the first processor is enough: all are alike
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    return fields


def model_name() -> str:
    return _cpuinfo().get("model name") or platform.processor() or platform.machine()


def flags() -> list[str]:
    """The instruction sets of :data:`FLAGS` this CPU has."""
    present = set(_cpuinfo().get("flags", "").split())
    return [flag for flag in FLAGS if flag in present]


def describe() -> dict[str, str]:
    """As MLflow tags and benchmark headers: ``{"cpu_model": ..., "cpu_flags": "avx2 avx512f ..."}``."""
    info = _cpuinfo()
    return {"cpu_model": model_name(), "cpu_family_model": f"{info.get('cpu family', '?')}/{info.get('model', '?')}",
            "cpu_count": str(len(os.sched_getaffinity(0))), "cpu_flags": " ".join(flags()) or "none"}


def has_bfloat16() -> bool:
    return any(flag in flags() for flag in BFLOAT16_FLAGS)
