"""The comparison report: what the `report` stage collects, its figures and its Markdown,
byte-identical for identical inputs.

The stage is ``collect`` -> ``write_figures`` -> ``render``. ``collect`` reads the other stages'
outputs (paths from src/core/config.py), never dvc.lock, and checks them; the best model is chosen
there, once.
"""

import shutil
from dataclasses import dataclass
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.ticker import MaxNLocator

from src.core import config as paths
from src.core.arrays import load_array, load_classes
from src.core.config import DATASETS, DEFAULT_TABLE, Table
from src.core.errors import PipelineError
from src.core.fileio import read_json
from src.core.params import Params
from src.evaluation.figures import confusion_figure, save_figure

matplotlib.use("Agg")  # files only: no display on CI or in `dvc repro`

# `evaluate.tta`, as the report's headline names it
TTA_WORDS = {
    "none": "one prediction per image (no test-time augmentation)",
    "flip": "with test-time augmentation (each prediction averages the image and its mirror image)",
    "flip_shift": "with test-time augmentation (each prediction averages the image and its mirror image, each "
                  "also shifted by one pixel up-left and down-right)",
}
SAMPLE_IMAGES = 24  # test images shown with the best model's predictions


def learning_curves_figure(histories: dict[str, pd.DataFrame], label_smoothing: dict[str, float]) -> plt.Figure:
    """Accuracy in % and loss per epoch. A net trained with label smoothing has a higher loss floor, so its
    loss is not comparable with the others': its legend entry says so."""
    figure, (accuracy, loss) = plt.subplots(1, 2, figsize=(13, 4.8))
    palette = sns.color_palette("tab10", len(histories))
    for color, (name, history) in zip(palette, histories.items(), strict=True):
        smoothing = label_smoothing.get(name, 0.0)
        label = f"{name} (loss with label smoothing {smoothing:g})" if smoothing else name
        for axes, metric, scale in ((accuracy, "accuracy", 100), (loss, "loss", 1)):
            axes.plot(history["epoch"], history[metric] * scale, color=color, linestyle="--", alpha=0.7)
            axes.plot(history["epoch"], history[f"val_{metric}"] * scale, color=color, label=label, marker=".")
    accuracy.set(title="accuracy: training (dashed) vs validation (solid)", xlabel="epoch",
                 ylabel="accuracy (%, per epoch, as trained)")
    loss.set(title="loss: training (dashed) vs validation (solid)", xlabel="epoch", ylabel="cross-entropy loss")
    for axes in (accuracy, loss):
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.grid(alpha=0.3)
    loss.legend(fontsize=8)
    figure.tight_layout()
    return figure


def tradeoff_figure(table: pd.DataFrame) -> plt.Figure:
    figure, axes = plt.subplots(figsize=(7.5, 4.8))
    minutes = table["train_seconds"] / 60

    def area(parameters):
        return np.sqrt(parameters) / 3

    axes.scatter(minutes, table["test_accuracy_tta"] * 100, s=area(table["parameters"]), alpha=0.6)
    for name, x, y in zip(table.index, minutes, table["test_accuracy_tta"] * 100, strict=True):
        axes.annotate(name, (x, y), textcoords="offset points", xytext=(5, 4), fontsize=8)
    for parameters in (200_000, 1_000_000, 2_000_000):  # the marker-size key
        axes.scatter([], [], s=area(parameters), alpha=0.6, color="C0", label=f"{parameters:,} parameters")
    axes.legend(fontsize=8, labelspacing=1.3, borderpad=0.9, loc="center right")
    axes.set(title="training time vs test accuracy (with test-time augmentation)",
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


# --- collecting the other stages' files ---------------------------------------------------------

@dataclass
class Comparison:
    """Everything the report shows, read and checked: ``results`` in `architectures` order."""

    params: Params
    classes: dict  # data/processed/classes.json: dataset, label_mode, class_names
    results: list[dict]
    ranking: list[dict]  # the same results by validation accuracy, best first (ties: `architectures` order)
    sample_images: np.ndarray  # the first SAMPLE_IMAGES test images

    @property
    def best(self) -> dict:
        return self.ranking[0]


def read_csv(path: Path, what: str, fix: str) -> pd.DataFrame:
    try:
        return pd.read_csv(path)
    except FileNotFoundError:
        raise PipelineError(f"{what} is missing: {path} does not exist; {fix}") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise PipelineError(f"{what} is corrupt: {path} ({error}); {fix}") from None


def collect_architecture(name: str, table: Table = DEFAULT_TABLE) -> dict:
    """Everything the report shows about one architecture of ``table``, each value checked to exist."""
    fix_train, fix_eval = (f"run `dvc repro {table.stage(stage, name)}`" for stage in ("train", "evaluate"))
    train = read_json(table.train_metrics_dir / f"{name}.json", f"training metrics of {name}", fix_train)
    test = read_json(table.eval_dir / f"{name}.json", f"test metrics of {name}", fix_eval)
    details = table.details_dir / name
    # The evaluate stage's copy of NAME.run.json: committed, where the model and its run.json are DVC-cached.
    run = read_json(details / "training_run.json", f"MLflow run id of {name}", fix_eval)
    for what, source, keys in (("training metrics", train, ("val_accuracy", "train_seconds", "epochs_run")),
                               ("test metrics", test, ("test_accuracy_single_view", "test_accuracy_tta",
                                                       "test_loss_tta"))):
        missing = [key for key in keys if not isinstance(source.get(key), int | float)]
        if missing:
            raise PipelineError(f"{what} of {name} lack {', '.join(missing)}; "
                                f"{fix_train if what.startswith('training') else fix_eval}")
    return {
        "name": name, "train": train, "test": test, "run": run,
        "history": read_csv(table.history_dir / f"{name}.csv", f"training history of {name}", fix_train),
        "per_class": read_csv(details / "per_class.csv", f"per-class scores of {name}", fix_eval),
        "confusion": read_csv(details / "confusion_matrix.csv", f"confusion matrix of {name}", fix_eval)
        .set_index("actual"),
        "predictions": read_csv(table.predictions_dir / f"{name}.csv", f"predictions of {name}", fix_eval),
    }


def remove_unlisted(architectures: list[str]) -> list[Path]:
    """Delete the results of architectures no longer in `architectures`: git keeps them otherwise,
    and DVC's folder-level `metrics:` and `plots:` would go on showing them beside the current ones."""
    removed = []
    for folder in paths.PER_ARCHITECTURE_DIRS:
        for entry in sorted(folder.iterdir()) if folder.is_dir() else []:
            if not entry.name.startswith(".") and entry.name.split(".")[0] not in architectures:
                shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
                removed.append(entry)
    return removed


def collect(params: Params) -> Comparison:
    """Read every architecture's results; each confusion matrix must count the whole test set."""
    classes = load_classes(paths.PROCESSED_DIR)
    test_images = load_array(paths.PROCESSED_DIR, "test_images", "run `dvc repro preprocess`")
    results = [collect_architecture(name) for name in params.architectures]
    for r in results:
        total = int(r["confusion"].to_numpy().sum())
        if total != len(test_images):
            raise PipelineError(f"confusion matrix of {r['name']} counts {total} images, the test set has "
                                f"{len(test_images)}; run `dvc repro evaluate@{r['name']}`")
    # The validation set chooses; the test set only scores the choice. Stable: ties keep params order.
    ranking = sorted(results, key=lambda r: -r["train"]["val_accuracy"])
    return Comparison(params, classes, results, ranking, test_images[:SAMPLE_IMAGES])


# --- tables and figures -------------------------------------------------------------------------

def comparison_table(comparison: Comparison) -> pd.DataFrame:
    dataset, recipes = comparison.classes["dataset"], comparison.params.train
    rows = {}
    for r in comparison.ranking:
        train, test = r["train"], r["test"]
        rows[r["name"]] = {
            "data set": dataset, "parameters": f"{train.get('parameters', 0):,}",
            "normalization": recipes[r["name"]].normalization,
            "epochs run / best": f"{train['epochs_run']} / {train.get('best_epoch', '–')}",
            "s / epoch": f"{train.get('seconds_per_epoch', 0):.1f}",
            "training time": f"{train['train_seconds'] / 60:.1f} min",
            "training images / s": f"{train.get('images_per_second', 0):,.0f}",
            "val accuracy": percent(train["val_accuracy"]),
            "best val accuracy": percent(train.get("best_val_accuracy")),
            "test accuracy": percent(test["test_accuracy_tta"]),
            "one view": percent(test["test_accuracy_single_view"]),
            "test loss": f"{test['test_loss_tta']:.4f}",
        }
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("architecture")


def f1_section(results: list[dict], class_names: list[str]) -> str:
    f1 = pd.DataFrame({r["name"]: r["per_class"].set_index("class")["f1-score"] for r in results}).T
    f1 = f1[class_names]
    mean_f1 = f1.mean(axis=0).sort_values()
    hardest = ", ".join(f"**{c}** ({100 * v:.1f} %)" for c, v in mean_f1.head(3).items())
    if len(class_names) > 20:  # 100 columns do not read; show the extremes
        f1 = f1[list(mean_f1.index[:10]) + list(mean_f1.index[-5:])]
    table = markdown_table((f1 * 100).round(1).rename_axis("architecture"))
    return f"Hardest classes (lowest F1 averaged over architectures): {hardest}.\n\n{table}"


def differing_params(params: Params) -> list[str]:
    data, official = params.data, DATASETS[params.data.dataset]
    lines = []
    if data.source and data.source != official["url"]:
        lines.append(f"`data.source`: `{data.source}` (md5 `{data.md5}`) instead of the official archive")
    return lines


def write_figures(folder: Path, comparison: Comparison) -> dict[str, str]:
    """Every figure of the report into ``folder``; returns their links relative to reports/."""
    results, best = comparison.results, comparison.best
    names = {}

    def save(key: str, figure) -> None:
        names[key] = (paths.FIGURES_DIR / f"{key}.png").relative_to(paths.REPORT_FILE.parent).as_posix()
        save_figure(figure, folder / f"{key}.png")

    for r in results:
        save(f"confusion_{r['name']}", confusion_figure(r["confusion"], f"{r['name']}: test confusion (counts)"))
    save("confusion_best_normalized", confusion_figure(
        best["confusion"], f"{best['name']} (best): confusion normalized per actual class", normalized=True))
    save("learning_curves", learning_curves_figure(
        {r["name"]: r["history"] for r in results},
        {r["name"]: comparison.params.train[r["name"]].label_smoothing for r in results}))
    table = pd.DataFrame({"train_seconds": [r["train"]["train_seconds"] for r in results],
                          "test_accuracy_tta": [r["test"]["test_accuracy_tta"] for r in results],
                          "parameters": [r["train"].get("parameters", 1) for r in results]},
                         index=[r["name"] for r in results])
    save("time_vs_accuracy", tradeoff_figure(table))
    first = best["predictions"].iloc[:SAMPLE_IMAGES]
    save("samples_best", samples_figure(comparison.sample_images, list(first["actual"]), list(first["predicted"]),
                                        f"{best['name']}: first {SAMPLE_IMAGES} test images (✗ red = misclassified)"))
    return names


def render(comparison: Comparison, figures: dict[str, str]) -> str:
    """reports/report.md: the Markdown that links ``figures`` (from :func:`write_figures`)."""
    params, results, best = comparison.params, comparison.results, comparison.best
    dataset, class_names = comparison.classes["dataset"], comparison.classes["class_names"]
    shown = best["predictions"].iloc[:SAMPLE_IMAGES]
    wrong = int((shown["actual"] != shown["predicted"]).sum())
    trace = pd.DataFrame({
        "MLflow run": [f"`{r['run']['run_id']}`" for r in results],
        "trained at commit": [f"`{r['run'].get('git_commit', 'unknown')[:10]}`"
                              + (" (dirty)" if r["run"].get("git_dirty") == "true" else "") for r in results],
        "training data md5": [f"`{r['run'].get('data_md5', 'unknown')}`" for r in results],
    }, index=pd.Index([r["name"] for r in results], name="architecture"))
    differing = differing_params(params) or ["none"]
    confusions = "\n".join(f"![{r['name']} confusion matrix]({figures['confusion_' + r['name']]})" for r in results)
    return "\n".join([
        f"# CIFAR CNN comparison: {dataset}",
        "",
        f"Generated by the `report` stage from the pipeline's own files. Chosen on validation: "
        f"**{best['name']}** ({percent(best['train']['val_accuracy'])} on the validation images); its test "
        f"accuracy: **{percent(best['test']['test_accuracy_tta'])}** on {best['test']['test_images']:,} test "
        f"images, {TTA_WORDS[params.evaluate.tta]}. Times are wall-clock on the machine that ran "
        "`dvc repro`. These are the default, shortened runs; the seed notebooks' own experiments, each "
        "trained as its notebook trains it, are compared with the notebooks' figures in [seeds.md](seeds.md).",
        "",
        "## Comparison (sorted by validation accuracy)",
        "",
        markdown_table(comparison_table(comparison)),
        "",
        "*test accuracy*, *test loss* and every figure below score the predictions the promoted model makes "
        f"(`evaluate.tta: {params.evaluate.tta}`); *one view* scores one prediction per image. "
        "*s / epoch* is the median epoch, validation included; *training images / s* leaves validation out. "
        "*val accuracy* is the saved model's, the one scored on the test set (the last epoch's, or the best "
        "epoch's where early stopping restores it); *best val accuracy* is the best epoch's.",
        "",
        "## Per-class F1 (%) on the test set",
        "",
        f1_section(results, class_names),
        "",
        "## Learning curves",
        "",
        f"![learning curves]({figures['learning_curves']})",
        "",
        "## Training time vs test accuracy",
        "",
        f"![training time vs test accuracy]({figures['time_vs_accuracy']})",
        "",
        "## Confusion matrices",
        "",
        f"![{best['name']} normalized confusion matrix]({figures['confusion_best_normalized']})",
        "",
        confusions,
        "",
        f"## Sample test predictions of {best['name']}",
        "",
        f"{wrong} of the first {SAMPLE_IMAGES} test images are misclassified (marked ✗, red).",
        "",
        f"![sample predictions]({figures['samples_best']})",
        "",
        "## Traceability",
        "",
        f"- data set `{dataset}`, validation fraction {params.split.val_fraction} (split seed "
        f"{params.split.seed}); normalization statistics from each net's training images",
        "- params that differ from the defaults (official archive):",
        *[f"  - {line}" for line in differing],
        "",
        markdown_table(trace),
        "",
        "*training data md5*: of the split arrays each model trained on (`data/split`, recorded by its train "
        "stage); equal values mean the same training and validation images.",
        "",
        "Reproduce: `dvc repro` (only stages whose inputs changed rerun); browse the runs with "
        "`mlflow ui`; compare with another commit with `dvc metrics diff` and `dvc plots diff`.",
        "",
    ])
