"""Where a net trains: the GPUs TensorFlow sees, or the CPU (src/training/cpu.py), and the precision it can run.

Every MLflow run is tagged with :func:`describe` and every train stage logs :func:`summary`, so a figure
always says which device made it.
"""

import sys

import tensorflow as tf

from src.training import cpu


def gpus() -> list:
    return tf.config.list_physical_devices("GPU")


def enable_memory_growth() -> None:
    """Allocate GPU memory as needed instead of all of it at start, so two `dvc queue` workers can share
    one GPU. Must run before TensorFlow touches the GPU; harmless on a CPU."""
    for gpu in gpus():
        tf.config.experimental.set_memory_growth(gpu, True)


def gpu_names() -> list[str]:
    return [tf.config.experimental.get_device_details(gpu).get("device_name", gpu.name) for gpu in gpus()]


def summary() -> str:
    """One line for the stage's log: ``GPU: NVIDIA H200 x 1`` or ``CPU: AMD EPYC (2 cores, ...)``."""
    names = gpu_names()
    if names:
        return f"GPU: {', '.join(sorted(set(names)))} x {len(names)}"
    info = cpu.describe()
    return f"CPU: {info['cpu_model']} ({info['cpu_count']} cores, {info['cpu_flags']})"


def describe() -> dict[str, str]:
    """As MLflow tags: the device, the GPUs' names and count, and the CPU's (which also feeds the input)."""
    names = gpu_names()
    return {"device": "gpu" if names else "cpu", "device_summary": summary(), "gpu_count": str(len(names)),
            "gpu_names": ", ".join(names) or "none", **cpu.describe()}


def precision_policy(precision: str, name: str) -> str:
    """Keras' dtype policy for `train.NAME.precision`. bfloat16 and float16 compute in 16 bits and keep the
    weights (and build_model's softmax, hence the loss) in float32; Keras scales the loss of a mixed_float16
    model itself (its optimizer becomes a LossScaleOptimizer at compile). float16 is for GPUs: a CPU has no
    fast float16 arithmetic, so there it trains in float32. bfloat16 without a CPU that has bfloat16
    instructions is emulated by oneDNN many times slower, so it falls back to float32 there too."""
    if precision == "float32":
        return "float32"
    has_gpu = bool(gpus())
    if precision == "float16" and not has_gpu:
        print(f"warning: train.{name}.precision is float16, which needs a GPU, and TensorFlow sees none; "
              f"training {name} in float32", file=sys.stderr)
        return "float32"
    if precision == "bfloat16" and not (has_gpu or cpu.has_bfloat16()):
        print(f"warning: train.{name}.precision is bfloat16 but this CPU ({cpu.model_name()}) has none of "
              f"{', '.join(cpu.BFLOAT16_FLAGS)}; training {name} in float32", file=sys.stderr)
        return "float32"
    return f"mixed_{precision}"
