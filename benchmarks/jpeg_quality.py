"""Data check: the JPEG quality an image archive was encoded at, from its decoded pixels.

JPEG quantizes each 8x8 block's DCT coefficients of the luminance to multiples of one step per
frequency: the standard (IJG) table scaled by the quality. Decoded and converted back, the
coefficients still cluster at those multiples. The step of a frequency is found as the q that
maximizes the mean of cos(2 pi c / q) over its coefficients c away from 0 (a multiple of the step
clusters worse, a divisor is blurred more by the pixels' rounding), refined to the median of the
coefficients over their multiples of q; the quality is the one whose table has those steps.
Prints the steps and the quality of the training and test images and appends them to benchmarks/results.md.

Usage: python benchmarks/jpeg_quality.py [--processed data/processed] [--images 2000]
"""

import argparse
import sys
from pathlib import Path

import numpy as np
from scipy.fft import dctn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import REPO, append_result
from src.core.arrays import load_array
from src.core.cli import DefaultsHelpFormatter

# The IJG standard luminance table (JPEG's Annex K), row = vertical frequency.
LUMINANCE = np.array([
    [16, 11, 10, 16, 24, 40, 51, 61], [12, 12, 14, 19, 26, 58, 60, 55], [14, 13, 16, 24, 40, 57, 69, 56],
    [14, 17, 22, 29, 51, 87, 80, 62], [18, 22, 37, 56, 68, 109, 103, 77], [24, 35, 55, 64, 81, 104, 113, 92],
    [49, 64, 78, 87, 103, 121, 120, 101], [72, 92, 95, 98, 112, 100, 103, 99]])
FREQUENCIES = [(0, 1), (1, 0), (1, 1), (0, 2), (2, 2), (3, 3), (4, 4)]
CLUSTERED = 0.5  # mean cosine above which the coefficients sit on a step
MIN_COEFFICIENTS = 50  # away from 0, for a step to be judged


def table(quality: int) -> np.ndarray:
    """The luminance steps libjpeg uses at ``quality`` (1-100)."""
    scale = 5000 // quality if quality < 50 else 200 - 2 * quality
    return np.clip((LUMINANCE * scale + 50) // 100, 1, 255)


def luminance_coefficients(images: np.ndarray) -> np.ndarray:
    """DCT coefficients (blocks, 8, 8) of the 8x8 blocks of the images' luminance (JPEG's YCbCr)."""
    rgb = images.astype(np.float64)
    luma = rgb @ np.array([0.299, 0.587, 0.114]) - 128
    n, height, width = luma.shape
    blocks = luma.reshape(n, height // 8, 8, width // 8, 8).transpose(0, 1, 3, 2, 4).reshape(-1, 8, 8)
    return dctn(blocks, axes=(1, 2), norm="ortho")


def step_of(values: np.ndarray) -> tuple[int, float]:
    """The quantization step of one frequency's coefficients and the mean cosine on it."""
    best, best_score = 1, -1.0
    for q in range(2, 256):
        # Coefficients quantized to 0 fit any step: only those a step or more from 0 tell.
        on = values[np.abs(values) >= q / 2]
        if len(on) < MIN_COEFFICIENTS:
            break
        score = float(np.mean(np.cos(2 * np.pi * on / q)))
        if score > best_score:
            best, best_score = q, score
    # Neighbouring steps fit almost as well where most coefficients are one step from 0: the step is
    # the median of the coefficients over their multiples of it.
    on = values[np.abs(values) >= best / 2]
    return round(float(np.median(on / np.round(on / best)))), best_score


def steps(images: np.ndarray) -> dict[tuple[int, int], tuple[int, float]]:
    """Per frequency: the quantization step and how tightly the coefficients sit on it (mean cosine)."""
    coefficients = luminance_coefficients(images)
    return {(u, v): step_of(coefficients[:, u, v]) for u, v in FREQUENCIES}


def quality(found: dict[tuple[int, int], tuple[int, float]]) -> int | None:
    """The JPEG quality whose table has every step found, or None (not JPEG, or no clear steps)."""
    if min(score for _, score in found.values()) < CLUSTERED:
        return None
    matches = [q for q in range(1, 101) if all(table(q)[uv] == step for uv, (step, _) in found.items())]
    return matches[0] if len(matches) == 1 else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=DefaultsHelpFormatter)
    parser.add_argument("--processed", type=Path, default=REPO / "data/processed",
                        help="the decoded images (`dvc repro preprocess`)")
    parser.add_argument("--images", type=int, default=2000, help="images of each part to analyse")
    args = parser.parse_args()
    rows = []
    for part in ("train", "test"):
        images = load_array(args.processed, f"{part}_images", "run `dvc repro preprocess` first")[:args.images]
        found = steps(images)
        cells = " | ".join(f"{step} ({score:.2f})" for step, score in found.values())
        estimate = quality(found)
        rows.append(f"| {part} | {cells} | {estimate if estimate is not None else 'none found'} |")
    append_result("JPEG quality of the archive", f"python benchmarks/jpeg_quality.py --images {args.images}", [
        f"{args.images:,} images of each part; each cell: the quantization step found for that luminance "
        "frequency (and the mean cosine of the coefficients on it: 1 = exactly on the steps).",
        "",
        "| images | " + " | ".join(f"({u},{v})" for u, v in FREQUENCIES) + " | quality |",
        "|---|" + "---:|" * (len(FREQUENCIES) + 1),
        *rows,
        "",
        "Quality 75 steps: " + ", ".join(str(table(75)[uv]) for uv in FREQUENCIES) + ".",
    ])


if __name__ == "__main__":
    main()
