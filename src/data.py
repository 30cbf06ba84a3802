"""The processed data set on disk: uint8 images and one-hot labels; normalization statistics.

Images stay uint8 (150 MB for CIFAR's 60,000 images instead of 600 MB of float32): the model's
first layer applies the normalization, computed by the train stage from its training images, so no
stage ever holds a float copy of the whole data set and training reads the arrays with one ``np.load``.
"""

from pathlib import Path

import numpy as np
from sklearn.model_selection import train_test_split

from src.errors import PipelineError
from src.fileio import read_json, write_json

STATS_CHUNK = 5000


def one_hot(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """One-hot rows as uint8: exact, and 4x smaller than float32 on disk."""
    return np.eye(num_classes, dtype=np.uint8)[labels]


def normalization_stats(images: np.ndarray, mode: str) -> dict:
    """Per-channel mean/std to subtract and divide by, from ``images``: the training images of the split,
    never the validation or test images."""
    if mode == "scale":
        return {"mode": mode, "mean": [0.0] * 3, "std": [255.0] * 3}
    channel_sum = np.zeros(3)
    channel_sq_sum = np.zeros(3)
    for start in range(0, len(images), STATS_CHUNK):
        chunk = images[start:start + STATS_CHUNK].reshape(-1, 3).astype(np.float32)
        channel_sum += chunk.sum(axis=0, dtype=np.float64)
        channel_sq_sum += np.square(chunk).sum(axis=0, dtype=np.float64)
    pixels = images.size / 3
    if mode == "per_channel":
        mean = channel_sum / pixels
        std = np.sqrt(channel_sq_sum / pixels - mean**2)
    elif mode == "standardize":
        mean = np.full(3, channel_sum.sum() / images.size)
        std = np.full(3, np.sqrt(channel_sq_sum.sum() / images.size - mean[0] ** 2))
    else:
        raise PipelineError(f"unknown normalization {mode!r}; set `train.NAME.normalization` "
                            "to scale, standardize or per_channel")
    return {"mode": mode, "mean": [round(float(v), 6) for v in mean], "std": [round(float(v), 6) for v in std]}


def save_arrays(folder: Path, **arrays: np.ndarray) -> None:
    for name, array in arrays.items():
        # np.save writes no timestamps, so equal arrays give byte-identical files (same DVC hash).
        np.save(folder / f"{name}.npy", np.ascontiguousarray(array), allow_pickle=False)


def load_array(folder: Path | str, name: str, fix: str = "run `dvc repro` to rebuild it") -> np.ndarray:
    path = Path(folder) / f"{name}.npy"
    try:
        return np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise PipelineError(f"{path} is missing; {fix}") from None
    except ValueError as error:
        raise PipelineError(f"{path} is corrupt ({error}); {fix}") from None


def load_classes(processed: Path | str) -> dict:
    return read_json(Path(processed) / "classes.json", "class list", "run `dvc repro preprocess`")


def stratified_split(labels: np.ndarray, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the train and validation parts, each class split in the same proportion."""
    try:
        train_idx, val_idx = train_test_split(np.arange(len(labels)), test_size=val_fraction,
                                              stratify=labels, random_state=seed)
    except ValueError as error:
        raise PipelineError(f"cannot split {len(labels)} training images with `split.val_fraction` "
                            f"{val_fraction}: {error}") from None
    return train_idx, val_idx


def class_counts(one_hot_labels: np.ndarray, class_names: list[str]) -> dict[str, int]:
    counts = one_hot_labels.sum(axis=0, dtype=np.int64)
    return {name: int(count) for name, count in zip(class_names, counts, strict=True)}


def write_class_counts(path: Path, class_names: list[str], **splits: np.ndarray) -> None:
    write_json(path, {split: class_counts(labels, class_names) for split, labels in splits.items()})
