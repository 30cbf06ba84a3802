"""Where a net trains: GPUs when TensorFlow sees them (memory growth on, so two queue workers share one),
the CPU otherwise; tested here with TensorFlow's GPU queries stood in for, as CI has no GPU."""

import tensorflow as tf

from src.training import cpu, device


class FakeGPU:
    def __init__(self, index: int):
        self.name, self.device_type = f"/physical_device:GPU:{index}", "GPU"


def with_gpus(monkeypatch, count: int) -> list:
    gpus = [FakeGPU(i) for i in range(count)]
    grown = []
    monkeypatch.setattr(tf.config, "list_physical_devices", lambda kind=None: gpus if kind == "GPU" else [])
    monkeypatch.setattr(tf.config.experimental, "get_device_details", lambda gpu: {"device_name": "NVIDIA H200"})
    monkeypatch.setattr(tf.config.experimental, "set_memory_growth", lambda gpu, on: grown.append((gpu.name, on)))
    return grown


def test_every_gpu_grows_its_memory_as_needed(monkeypatch):
    grown = with_gpus(monkeypatch, 2)
    device.enable_memory_growth()
    assert grown == [("/physical_device:GPU:0", True), ("/physical_device:GPU:1", True)]


def test_runs_are_tagged_with_the_gpus_that_trained_them(monkeypatch):
    with_gpus(monkeypatch, 2)
    tags = device.describe()
    assert (tags["device"], tags["gpu_count"], tags["gpu_names"]) == ("gpu", "2", "NVIDIA H200, NVIDIA H200")
    assert tags["device_summary"] == "GPU: NVIDIA H200 x 2" and tags["cpu_model"] == cpu.model_name()
    assert device.precision_policy("float16", "elu3") == "mixed_float16"


def test_without_a_gpu_runs_are_tagged_with_the_cpu(monkeypatch):
    grown = with_gpus(monkeypatch, 0)
    device.enable_memory_growth()
    tags = device.describe()
    assert grown == [] and (tags["device"], tags["gpu_count"], tags["gpu_names"]) == ("cpu", "0", "none")
    assert tags["device_summary"] == f"CPU: {cpu.model_name()} ({tags['cpu_count']} cores, {tags['cpu_flags']})"
