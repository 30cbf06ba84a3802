"""The seed table (reports/seeds.md): each seed notebook's experiment as the pipeline trains it (seeds/dvc.yaml),
beside the notebook's printed figure and, where run, the notebook's own code on the same archive and CPU
(seeds/notebooks/, benchmarks/seed_notebooks.py): two measured gaps, "pipeline vs notebook code" and
"this archive vs the published figure". Rows not trained yet, or that cannot run here, say so.
"""

from dataclasses import dataclass

import numpy as np
import pandas as pd

from src.core import config as paths
from src.core.config import DATASETS
from src.core.errors import PipelineError
from src.core.fileio import read_json
from src.core.params import Params
from src.reporting import report
from src.reporting.schema import Reference
from src.training.recipe import Augmentation, Train

NOTEBOOK_CODE = {"elu3": "seed000_notebook.py", "strided2": "seed002_notebook.py model_1",
                 "strided4": "seed002_notebook.py model_2", "vgg6": "seed004_notebook.py"}
TOO_FAR_BELOW = 0.02  # a row this far under the notebook's own code on the same data is a defect to explain


@dataclass
class Row:
    name: str
    reference: Reference | None  # seeds.reference.NAME: the notebook's own figures
    recipe: Train | None  # seeds.train.NAME; None: not a row of this table's pipeline
    result: dict | None  # collect_architecture's, once trained and evaluated
    notebook: dict | None  # seeds/notebooks/NAME.json


def recipe_text(config: Train) -> str:
    optimizer = f"{config.optimizer} {config.learning_rate:g}"
    if config.schedule == "inverse_time":
        optimizer += f" (decay {config.decay:g})"
    elif config.schedule != "constant":
        optimizer += f" ({config.schedule})"
    epochs = f"{config.epochs} epoch{'s' if config.epochs != 1 else ''}"
    parts = [epochs, f"batch {config.batch_size}", optimizer, config.normalization]
    if config.augmentation:
        parts.append("aug " + augmentation_text(config.augmentation))
    if config.drop_remainder:
        parts.append("full batches only")
    if config.early_stopping:
        parts.append(f"early stopping on {config.early_stopping.monitor}")
    if config.init_from:
        parts.append(f"continues {config.init_from}")
    if config.precision != "float32":
        parts.append(config.precision)
    return "; ".join(parts)


def augmentation_text(augmentation: Augmentation) -> str:
    return ", ".join(f"{key} {value}" if value is not True else key
                     for key, value in augmentation.model_dump().items() if value)


def collect(params: Params) -> list[Row]:
    seeds = params.seeds
    if seeds is None:
        raise PipelineError("params.yaml has no `seeds` section; restore it from git to build the seed table")
    trained = [*seeds.rows, *seeds.continued]
    rows = []
    for name in dict.fromkeys([*seeds.reference, *trained]):
        result = None
        # The evaluate stage's last file: a row counts once its provenance is committed beside its scores.
        done = (paths.SEED_TABLE.details_dir / name / "training_run.json").exists()
        if name in trained and done:
            result = report.collect_architecture(name, paths.SEED_TABLE)
        notebook_file = paths.NOTEBOOK_RESULTS_DIR / f"{name}.json"
        notebook = read_json(notebook_file, f"notebook result of {name}",
                             f"rerun `python benchmarks/seed_notebooks.py {name}`") if notebook_file.exists() else None
        rows.append(Row(name, seeds.reference.get(name), seeds.train[name] if name in trained else None,
                        result, notebook))
    return rows


def _gap(ours: float | None, theirs: float | None) -> str:
    if ours is None or theirs is None:
        return "–"
    return f"{100 * (ours - theirs):+.2f}"


def _ratio(train: dict, run: dict, notebook: dict) -> str:
    """Pipeline ÷ notebook seconds per epoch, only where both ran on the same CPU (family/model): per-epoch
    times differ between the CPU generations of the machines here."""
    if run.get("cpu_family_model") != notebook["cpu_family_model"]:
        return "other CPU"
    return f"{train['seconds_per_epoch'] / notebook['seconds_per_epoch']:.2f}"


def _device(run: dict) -> str:
    family_model = run.get("cpu_family_model")
    return run.get("device", "–") + (f", family/model {family_model}" if family_model else "")


def table(rows: list[Row]) -> pd.DataFrame:
    records = {}
    for row in rows:
        reference, result, notebook = row.reference, row.result, row.notebook
        published = report.percent(reference.accuracy if reference else None)
        comparable = reference is None or reference.dataset == "cifar10"
        if not comparable:
            published += f" ({reference.dataset})"
        single = result["test"]["test_accuracy_single_view"] if result else None
        if row.recipe is None:
            status = "not run here"
        elif result is None:
            status = "not trained yet"
        else:
            status = f"{report.percent(single)}"
        train = result["train"] if result else {}
        records[row.name] = {
            "seed": reference.seed if reference else "–",
            "recipe": recipe_text(row.recipe) if row.recipe else "–",
            "notebook's figure": published,
            "pipeline, one view": status,
            "pipeline, TTA": report.percent(result["test"]["test_accuracy_tta"]) if result else "–",
            "notebook's code here": report.percent(notebook["test_accuracy"]) if notebook else "–",
            "pipeline − notebook code (points)": _gap(single, notebook["test_accuracy"] if notebook else None),
            "notebook code − figure (points)": (_gap(notebook["test_accuracy"] if notebook else None,
                                                     reference.accuracy if reference else None)
                                                if comparable else "not comparable"),
            "s / epoch": f"{train['seconds_per_epoch']:.1f}" if result else "–",
            "notebook s / epoch": f"{notebook['seconds_per_epoch']:.1f}" if notebook else "–",
            "ratio": _ratio(train, result["run"], notebook) if result and notebook else "–",
            "training time": f"{train['train_seconds'] / 60:.1f} min" if result else "–",
        }
    return pd.DataFrame.from_dict(records, orient="index").rename_axis("row")


def provenance(rows: list[Row]) -> pd.DataFrame:
    records = {}
    for row in rows:
        if row.result:
            run = row.result["run"]
            records[row.name] = {"by": "pipeline", "device": _device(run),
                                 "commit": f"`{run.get('git_commit', 'unknown')[:10]}`"
                                           + (" (dirty)" if run.get("git_dirty") == "true" else ""),
                                 "training data md5": f"`{run.get('data_md5', 'unknown')}`",
                                 "MLflow run": f"`{run['run_id']}`"}
        if row.notebook:
            notebook = row.notebook
            records[f"{row.name} (notebook's code)"] = {
                "by": f"`{notebook['command']}`",
                "device": f"CPU: {notebook['cpu_model']} ({notebook['cpu_flags']}), "
                          f"family/model {notebook['cpu_family_model']}",
                "commit": "–", "training data md5": "the archive (`data.md5`)", "MLflow run": notebook["date"]}
    return pd.DataFrame.from_dict(records, orient="index").rename_axis("row")


def defects(rows: list[Row]) -> list[str]:
    """Rows more than TOO_FAR_BELOW under the notebook's own code on the same data."""
    found = []
    for row in rows:
        if row.result and row.notebook:
            gap = row.result["test"]["test_accuracy_single_view"] - row.notebook["test_accuracy"]
            if gap < -TOO_FAR_BELOW:
                found.append(f"**{row.name}** is {100 * -gap:.2f} points below the notebook's own code on the "
                             "same data: a defect to find and fix, or to explain with a measurement")
    return found


def class_samples_figure(images: np.ndarray, labels: np.ndarray, class_names: list[str], per_class: int = 8):
    """A grid of the first ``per_class`` training images of each class (seeds 000, 001, 004 show one)."""
    import matplotlib.pyplot as plt

    figure, grid = plt.subplots(len(class_names), per_class, figsize=(per_class * 1.1, len(class_names) * 1.15))
    for row, name in enumerate(class_names):
        for column, index in enumerate(np.flatnonzero(labels == row)[:per_class]):
            axes = grid[row, column]
            axes.imshow(images[index], interpolation="nearest")
            axes.set_xticks([])
            axes.set_yticks([])
        grid[row, 0].set_ylabel(name, rotation=0, ha="right", va="center", fontsize=9)
    figure.suptitle("Training images of each class", fontsize=10)
    figure.tight_layout()
    return figure


def augmented_figure(images: np.ndarray, config: Train, name: str, copies: int = 5):
    """Each image and ``copies`` augmentations of it, as the row ``name`` trains (seed 004's preview)."""
    import keras
    import matplotlib.pyplot as plt

    from src.training.augmentation import augmentation_layers

    steps = augmentation_layers(config.augmentation, config.seed)
    figure, grid = plt.subplots(len(images), copies + 1, figsize=((copies + 1) * 1.3, len(images) * 1.3))
    for row, image in enumerate(images):
        views = [image] + [image] * copies
        batch = keras.ops.convert_to_tensor(np.stack(views[1:]).astype("float32"))
        for step in steps:
            batch = step(batch, training=True)
        shown = [image, *np.clip(keras.ops.convert_to_numpy(batch), 0, 255).astype(np.uint8)]
        for column, view in enumerate(shown):
            grid[row, column].imshow(view, interpolation="nearest")
            grid[row, column].set_xticks([])
            grid[row, column].set_yticks([])
        grid[row, 0].set_title("original" if row == 0 else "", fontsize=8)
    figure.suptitle(f"{name}: training images as augmented ({augmentation_text(config.augmentation)})", fontsize=10)
    figure.tight_layout()
    return figure


def check_dataset(classes: dict) -> None:
    if classes["dataset"] != "cifar10":
        raise PipelineError(f"the seed table compares CIFAR-10 runs with the notebooks; `data.dataset` is "
                            f"{classes['dataset']}: set it to cifar10 (official md5 {DATASETS['cifar10']['md5']})")
