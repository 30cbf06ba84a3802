"""The evaluate stage's confusion heatmap, and how every figure of the pipeline is saved."""

from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from src.core.fileio import atomic_path

matplotlib.use("Agg")  # files only: no display on CI or in `dvc repro`

ANNOTATED_CLASSES = 20  # above this a confusion matrix is drawn without per-cell numbers


def save_figure(figure: plt.Figure, path: Path) -> None:
    # No "Software" or date metadata: reruns write byte-identical PNGs.
    with atomic_path(path, suffix=".png") as tmp:
        figure.savefig(tmp, format="png", dpi=100, metadata={"Software": None})
    plt.close(figure)


def confusion_figure(confusion: pd.DataFrame, title: str, normalized: bool = False) -> plt.Figure:
    classes = len(confusion)
    values = confusion.div(confusion.sum(axis=1).replace(0, 1), axis=0) if normalized else confusion
    size = 7 if classes <= ANNOTATED_CLASSES else max(12, classes * 0.16)
    figure, axes = plt.subplots(figsize=(size + 1.5, size))
    sns.heatmap(values, ax=axes, cmap="Blues", square=True, annot=classes <= ANNOTATED_CLASSES,
                fmt=".2f" if normalized else "d", annot_kws={"size": 8}, cbar=True,
                xticklabels=True, yticklabels=True)
    axes.set(title=title, xlabel="predicted", ylabel="actual")
    axes.tick_params(labelsize=8 if classes <= ANNOTATED_CLASSES else 5)
    figure.tight_layout()
    return figure
