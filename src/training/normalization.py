"""The normalization statistics a model is built with: computed by the train stage from its training
images, applied inside the model (its first layer), so the data stages store uint8 images only."""

import numpy as np

from src.core.errors import PipelineError

STATS_CHUNK = 5000


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
