"""Figures and the Markdown comparison report, byte-identical for identical inputs."""

from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from src.fileio import atomic_path

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


def learning_curves_figure(histories: dict[str, pd.DataFrame]) -> plt.Figure:
    figure, (accuracy, loss) = plt.subplots(1, 2, figsize=(13, 4.8))
    palette = sns.color_palette("tab10", len(histories))
    for color, (name, history) in zip(palette, histories.items(), strict=True):
        for axes, metric in ((accuracy, "accuracy"), (loss, "loss")):
            axes.plot(history["epoch"], history[metric], color=color, linestyle="--", alpha=0.7)
            axes.plot(history["epoch"], history[f"val_{metric}"], color=color, label=name, marker=".")
    for axes, metric in ((accuracy, "accuracy"), (loss, "loss")):
        axes.set(title=f"{metric}: train (dashed) vs validation (solid)", xlabel="epoch", ylabel=metric)
        axes.grid(alpha=0.3)
    accuracy.legend(fontsize=8)
    figure.tight_layout()
    return figure


def tradeoff_figure(table: pd.DataFrame) -> plt.Figure:
    figure, axes = plt.subplots(figsize=(7.5, 4.8))
    minutes = table["train_seconds"] / 60
    axes.scatter(minutes, table["test_accuracy"] * 100, s=np.sqrt(table["parameters"]) / 3, alpha=0.6)
    for name, x, y in zip(table.index, minutes, table["test_accuracy"] * 100, strict=True):
        axes.annotate(name, (x, y), textcoords="offset points", xytext=(5, 4), fontsize=8)
    axes.set(title="training time vs test accuracy (marker area ~ parameters)",
             xlabel="training time (minutes, this machine)", ylabel="test accuracy (%)")
    axes.grid(alpha=0.3)
    figure.tight_layout()
    return figure


def samples_figure(images: np.ndarray, actual: list[str], predicted: list[str], title: str) -> plt.Figure:
    columns = 6
    rows = int(np.ceil(len(images) / columns))
    figure, grid = plt.subplots(rows, columns, figsize=(columns * 1.9, rows * 2.1))
    for axes, image, truth, guess in zip(grid.flat, images, actual, predicted, strict=False):
        axes.imshow(image, interpolation="nearest")
        wrong = truth != guess
        axes.set_title(f"{'✗ ' if wrong else ''}{truth}\npred: {guess}", fontsize=8,
                       color="crimson" if wrong else "black")
        if wrong:
            for spine in axes.spines.values():
                spine.set(color="crimson", linewidth=3)
        axes.set_xticks([])
        axes.set_yticks([])
    for axes in list(grid.flat)[len(images):]:
        axes.axis("off")
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    return figure


def markdown_table(frame: pd.DataFrame) -> str:
    """A GitHub Markdown table (the index becomes the first column)."""
    frame = frame.reset_index()
    header = "| " + " | ".join(str(c) for c in frame.columns) + " |"
    rule = "|" + "|".join("---" if i == 0 else "---:" for i in range(len(frame.columns))) + "|"
    rows = ["| " + " | ".join(str(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *rows])


def percent(value) -> str:
    return "–" if value is None or pd.isna(value) else f"{100 * float(value):.2f} %"
