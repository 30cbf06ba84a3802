"""What the seed-notebook scripts (benchmarks/seed*_notebook.py) share, none of it the notebooks' code.

- :func:`load_cifar10`: ``keras.datasets.cifar10.load_data()`` from a local archive, through src.cifar_format
  instead of a download, in the layout keras.datasets returns (images (N, 32, 32, 3) uint8, labels (N, 1) uint8);
- :class:`EpochTimer`: each epoch's seconds, and its seconds without the validation pass;
- :func:`print_result`: the one JSON line the benchmarks parse (the last line of stdout).
"""

import json
import time
from pathlib import Path

import keras
import numpy as np

from src.data.cifar_format import decode_archive


def load_cifar10(archive: Path) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """``(x_train, y_train), (x_test, y_test)`` as ``keras.datasets.cifar10.load_data()`` returns them."""
    cifar = decode_archive(Path(archive), "cifar10")
    return ((cifar.train_images, cifar.train_labels.reshape(-1, 1).astype(np.uint8)),
            (cifar.test_images, cifar.test_labels.reshape(-1, 1).astype(np.uint8)))


class EpochTimer(keras.callbacks.Callback):
    """Each epoch's seconds, and its seconds without the validation pass (when fit validates)."""

    def __init__(self):
        super().__init__()
        self.epoch_seconds: list[float] = []
        self.training_seconds: list[float] = []

    def on_epoch_begin(self, epoch, logs=None):
        self.started, self.validating = time.perf_counter(), 0.0

    def on_test_begin(self, logs=None):
        self.validation_started = time.perf_counter()

    def on_test_end(self, logs=None):
        self.validating += time.perf_counter() - self.validation_started

    def on_epoch_end(self, epoch, logs=None):
        self.epoch_seconds.append(time.perf_counter() - self.started)
        self.training_seconds.append(self.epoch_seconds[-1] - self.validating)


def print_result(timer: EpochTimer, test_accuracy: float, train_images: int, **extra) -> None:
    """Print the JSON line: per-epoch seconds, training seconds without validation, test accuracy, and ``extra``."""
    print(json.dumps({"epoch_seconds": timer.epoch_seconds, "training_seconds": timer.training_seconds,
                      "test_accuracy": float(test_accuracy), "train_images": int(train_images), **extra}),
          flush=True)
