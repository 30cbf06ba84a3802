"""Decode the canonical CIFAR "python version" archives, treating them as untrusted input.

Two safeguards: every tar member must be a plain file or folder whose path stays inside the
archive's folder (tarfile's ``data`` filter plus a refusal of every link and device), and every
pickle goes through an unpickler that resolves only the three numpy globals the official files
use. Members are read into memory, so nothing from the archive is ever written to disk.
"""

import gzip
import io
import pickle
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
from numpy._core.multiarray import _reconstruct

from src.core.errors import PipelineError

IMAGE_SHAPE = (32, 32, 3)
PIXELS = 32 * 32 * 3

LAYOUTS = {
    "cifar10": {
        "folder": "cifar-10-batches-py",
        "train": [f"data_batch_{i}" for i in range(1, 6)],
        "test": ["test_batch"],
        "meta": "batches.meta",
        "labels": {"fine": b"labels"},
        "names": {"fine": b"label_names"},
    },
    "cifar100": {
        "folder": "cifar-100-python",
        "train": ["train"],
        "test": ["test"],
        "meta": "meta",
        "labels": {"fine": b"fine_labels", "coarse": b"coarse_labels"},
        "names": {"fine": b"fine_label_names", "coarse": b"coarse_label_names"},
    },
}

_ALLOWED_GLOBALS = {
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,  # as the official (numpy 1) files spell it
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,  # as numpy 2 spells it
}


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Resolves only numpy's array globals; anything else (``os.system``...) is refused unexecuted."""

    def __init__(self, data: bytes, member: str):
        super().__init__(io.BytesIO(data), encoding="bytes")
        self.member = member

    def find_class(self, module: str, name: str):
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise PipelineError(
                f"archive member {self.member} is not a CIFAR pickle: it references the global "
                f"{module}.{name}, which is refused (only numpy arrays are allowed); "
                "the archive may be tampered with: fetch it again from the official source"
            ) from None


def load_pickle(data: bytes, member: str) -> dict:
    try:
        payload = _NumpyOnlyUnpickler(data, member).load()
    except PipelineError:
        raise
    except Exception as error:  # any malformed pickle: report it, never crash with a traceback
        raise PipelineError(f"archive member {member} is not a readable pickle ({error}); "
                            "fetch the archive again") from None
    if not isinstance(payload, dict):
        raise PipelineError(f"archive member {member} holds a {type(payload).__name__}, not a dict; "
                            "it is not a CIFAR batch")
    return payload


def _check_member(member: tarfile.TarInfo, archive: Path) -> None:
    if not (member.isfile() or member.isdir()):
        kind = "link" if (member.issym() or member.islnk()) else "special file"
        raise PipelineError(f"unsafe archive {archive}: member {member.name!r} is a {kind}; "
                            "only plain files are accepted, fetch the archive from the official source")
    # The data filter would silently strip a leading "/"; an archive that has one is refused.
    if member.name.startswith(("/", "\\")) or ".." in PurePosixPath(member.name).parts:
        raise PipelineError(f"unsafe archive {archive}: member {member.name!r} would escape the "
                            "target folder (absolute or parent path); fetch the archive from the "
                            "official source")
    try:
        tarfile.data_filter(member, "/nonexistent-extraction-root")
    except tarfile.FilterError as error:
        raise PipelineError(f"unsafe archive {archive}: member {member.name!r} would escape the "
                            f"target folder ({error.__class__.__name__}); fetch the archive from "
                            "the official source") from None


def read_members(archive: Path, wanted: set[str]) -> dict[str, bytes]:
    """Return the bytes of the ``wanted`` members after checking every member is safe."""
    found: dict[str, bytes] = {}
    try:
        with tarfile.open(archive, mode="r:gz") as tar:
            for member in tar:
                _check_member(member, archive)
                if member.name in wanted:
                    found[member.name] = tar.extractfile(member).read()
    except FileNotFoundError:
        raise PipelineError(f"archive {archive} is missing; run the download stage first "
                            "(`dvc repro download`)") from None
    except (tarfile.ReadError, gzip.BadGzipFile, EOFError, zlib.error, OSError) as error:
        raise PipelineError(f"corrupt archive {archive}: {error}; delete it and run "
                            "`dvc repro download` to fetch it again") from None
    missing = sorted(wanted - set(found))
    if missing:
        raise PipelineError(f"archive {archive} lacks {', '.join(missing)}; it is not a "
                            "canonical CIFAR python-version archive, check `data.dataset`")
    return found


@dataclass
class CifarData:
    train_images: np.ndarray  # (N, 32, 32, 3) uint8
    train_labels: np.ndarray  # (N,) int64
    test_images: np.ndarray
    test_labels: np.ndarray
    class_names: list[str]


def _images(batch: dict, member: str) -> np.ndarray:
    data = batch.get(b"data")
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != PIXELS:
        found = f"{data.dtype} array of shape {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise PipelineError(f"archive member {member}: b'data' must be a uint8 array of shape "
                            f"(N, {PIXELS}), found {found}; the archive is not canonical CIFAR")
    # Stored channel-planar (N, 3, 32, 32); Keras wants channels last.
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)


def _labels(batch: dict, key: bytes, count: int, num_classes: int, member: str) -> np.ndarray:
    if key not in batch:
        raise PipelineError(f"archive member {member} has no {key!r} labels; check `data.label_mode`")
    labels = np.asarray(batch[key])
    if labels.shape != (count,) or not np.issubdtype(labels.dtype, np.integer):
        raise PipelineError(f"archive member {member}: {key!r} must be {count} integers, found "
                            f"{labels.dtype} of shape {labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise PipelineError(f"archive member {member}: label out of range [0, {num_classes - 1}] "
                            f"(found {labels.min()}..{labels.max()}); the archive is corrupt")
    return labels.astype(np.int64)


def _stack(parts: list[np.ndarray]) -> np.ndarray:
    out = np.empty((sum(len(p) for p in parts), *parts[0].shape[1:]), dtype=parts[0].dtype)
    start = 0
    for part in parts:
        out[start:start + len(part)] = part
        start += len(part)
    return out


def decode_archive(archive: Path, dataset: str, label_mode: str = "fine") -> CifarData:
    """Decode and validate a CIFAR-10 or CIFAR-100 python-version archive."""
    layout = LAYOUTS[dataset]
    mode = label_mode if label_mode in layout["labels"] else "fine"  # CIFAR-10 has one label set
    folder = layout["folder"]
    names = {f"{folder}/{n}" for n in (*layout["train"], *layout["test"], layout["meta"])}
    members = read_members(archive, names)

    meta_member = f"{folder}/{layout['meta']}"
    meta = load_pickle(members.pop(meta_member), meta_member)
    raw_names = meta.get(layout["names"][mode])
    if not isinstance(raw_names, list) or not raw_names:
        raise PipelineError(f"archive member {meta_member} has no class names "
                            f"{layout['names'][mode]!r}; the archive is not canonical CIFAR")
    class_names = [n.decode() if isinstance(n, bytes) else str(n) for n in raw_names]

    splits = {}
    for split in ("train", "test"):
        images, labels = [], []
        for name in layout[split]:
            member = f"{folder}/{name}"
            batch = load_pickle(members.pop(member), member)
            batch_images = _images(batch, member)
            labels.append(_labels(batch, layout["labels"][mode], len(batch_images), len(class_names), member))
            images.append(batch_images)
        splits[split] = (_stack(images), np.concatenate(labels))
    return CifarData(*splits["train"], *splits["test"], class_names)
