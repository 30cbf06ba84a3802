"""Small CIFAR-10 / CIFAR-100 archives in the official "python version" format, for tests.

The official pickles were written by Python 2: protocol 2, byte-string keys, and array data
stored as Python 2 ``str`` (BINSTRING). Python 3's pickler would write bytes through
``_codecs.encode`` instead, a global the real files never use, so :class:`Py2Pickler` writes
bytes the Python 2 way and the loader is tested against exactly what it meets in the wild.
"""

import hashlib
import io
import pickle
import struct
import tarfile
from pathlib import Path

import numpy as np

CIFAR10_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


class Py2Pickler(pickle._Pickler):
    dispatch = pickle._Pickler.dispatch.copy()

    def save_py2_str(self, obj: bytes) -> None:
        if len(obj) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(obj)]) + obj)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(obj)) + obj)
        self.memoize(obj)

    dispatch[bytes] = save_py2_str


def py2_pickle(obj) -> bytes:
    buffer = io.BytesIO()
    Py2Pickler(buffer, protocol=2).dump(obj)
    return buffer.getvalue()


class Exploit:
    """A pickle payload that would run ``os.system`` if the loader resolved arbitrary globals."""

    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        import os

        return (os.system, (self.command,))


def balanced_labels(count: int, num_classes: int, rng: np.random.Generator) -> np.ndarray:
    return rng.permutation(np.arange(count) % num_classes)


def batch(images_per_batch: int, labels: dict[bytes, np.ndarray], rng: np.random.Generator) -> dict:
    data = rng.integers(0, 256, size=(images_per_batch, 3072), dtype=np.uint8)
    return {b"batch_label": b"generated batch", b"data": data,
            b"filenames": [f"img_{i}.png".encode() for i in range(images_per_batch)],
            **{key: [int(v) for v in value] for key, value in labels.items()}}


def cifar10_members(per_batch: int = 50, test: int = 50, seed: int = 0) -> dict[str, bytes]:
    rng = np.random.default_rng(seed)
    members = {}
    for i in range(1, 6):
        members[f"data_batch_{i}"] = py2_pickle(batch(per_batch, {b"labels": balanced_labels(per_batch, 10, rng)}, rng))
    members["test_batch"] = py2_pickle(batch(test, {b"labels": balanced_labels(test, 10, rng)}, rng))
    members["batches.meta"] = py2_pickle({b"label_names": [n.encode() for n in CIFAR10_NAMES],
                                          b"num_cases_per_batch": per_batch, b"num_vis": 3072})
    return {f"cifar-10-batches-py/{name}": data for name, data in members.items()}


def cifar100_members(train: int = 400, test: int = 200, seed: int = 0) -> dict[str, bytes]:
    rng = np.random.default_rng(seed)

    def labels(count):
        fine = balanced_labels(count, 100, rng)
        return {b"fine_labels": fine, b"coarse_labels": fine // 5}

    return {
        "cifar-100-python/train": py2_pickle(batch(train, labels(train), rng)),
        "cifar-100-python/test": py2_pickle(batch(test, labels(test), rng)),
        "cifar-100-python/meta": py2_pickle({
            b"fine_label_names": [f"fine_{i}".encode() for i in range(100)],
            b"coarse_label_names": [f"coarse_{i}".encode() for i in range(20)]}),
    }


def write_archive(path: Path, members: dict[str, bytes], extra: list[tarfile.TarInfo] | None = None) -> Path:
    """Write a .tar.gz with ``members`` (name -> bytes) and optional raw extra entries."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        folder = tarfile.TarInfo(next(iter(members)).split("/")[0])
        folder.type, folder.mode, folder.mtime = tarfile.DIRTYPE, 0o755, 0
        tar.addfile(folder)
        for info in extra or []:
            tar.addfile(info, io.BytesIO(b"x" * info.size) if info.isfile() else None)
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            tar.addfile(info, io.BytesIO(data))
    return path


def md5_of(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def decode_images(data: np.ndarray) -> np.ndarray:
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
