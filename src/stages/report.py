"""Stage `report`: reports/report.md and reports/figures/, the comparison reviewers read in PRs.

Params: architectures (which to compare), reference (the seed documents' figures), train (epochs).
Reads only other stages' files; writes nothing that varies between identical runs.
"""

from pathlib import Path

import pandas as pd
import yaml

from src import reporting
from src.data import load_array, load_classes
from src.errors import PipelineError, run_stage
from src.fileio import atomic_dir, atomic_path, read_json
from src.params import DATASETS, load_params

PROCESSED_DIR = Path("data/processed")
REPORTS = Path("reports")
FIGURES = REPORTS / "figures"
SAMPLE_IMAGES = 24


def read_csv(path: Path, what: str, fix: str) -> pd.DataFrame:
    try:
        return pd.read_csv(path)
    except FileNotFoundError:
        raise PipelineError(f"{what} is missing: {path} does not exist; {fix}") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise PipelineError(f"{what} is corrupt: {path} ({error}); {fix}") from None


def collect(name: str, reference: dict) -> dict:
    """Everything the report shows about one architecture, each value checked to exist."""
    fix_train, fix_eval = f"run `dvc repro train@{name}`", f"run `dvc repro evaluate@{name}`"
    train = read_json(REPORTS / "train" / f"{name}.json", f"training metrics of {name}", fix_train)
    test = read_json(REPORTS / "eval" / f"{name}.json", f"test metrics of {name}", fix_eval)
    run = read_json(Path("models") / f"{name}.run.json", f"MLflow run id of {name}", fix_train)
    for what, source, keys in (("training metrics", train, ("val_accuracy", "train_seconds", "epochs_run")),
                               ("test metrics", test, ("test_accuracy", "test_loss"))):
        missing = [key for key in keys if not isinstance(source.get(key), int | float)]
        if missing:
            raise PipelineError(f"{what} of {name} lack {', '.join(missing)}; "
                                f"{fix_train if what.startswith('training') else fix_eval}")
    details = REPORTS / "details" / name
    return {
        "name": name, "reference": reference, "train": train, "test": test, "run": run,
        "history": read_csv(REPORTS / "history" / f"{name}.csv", f"training history of {name}", fix_train),
        "per_class": read_csv(details / "per_class.csv", f"per-class scores of {name}", fix_eval),
        "confusion": read_csv(details / "confusion_matrix.csv", f"confusion matrix of {name}", fix_eval)
        .set_index("actual"),
        "predictions": read_csv(REPORTS / "predictions" / f"{name}.csv", f"predictions of {name}", fix_eval),
    }


def reference_accuracy(reference: dict, dataset: str, label_mode: str) -> str:
    """The seed document's figure, labelled with its data set where that is not the one we ran on."""
    figure = reporting.percent(reference.get("accuracy"))
    ran_on = (dataset, label_mode if dataset == "cifar100" else "fine")
    theirs = (reference.get("dataset", "cifar10"), reference.get("label_mode", "fine"))
    if reference.get("accuracy") is not None and theirs != ran_on:
        figure += f" ({theirs[0]}{', coarse labels' if theirs[1] == 'coarse' else ''}: not comparable)"
    return figure


def comparison_table(results: list[dict], dataset: str, label_mode: str) -> pd.DataFrame:
    rows = {}
    for r in results:
        train, test, reference = r["train"], r["test"], r["reference"]
        rows[r["name"]] = {
            "data set": dataset, "parameters": f"{train.get('parameters', 0):,}",
            "epochs run / best": f"{train['epochs_run']} / {train.get('best_epoch', '–')}",
            "reference epochs": reference.get("epochs") or "–",
            "s / epoch": f"{train.get('seconds_per_epoch', 0):.1f}",
            "training time": f"{train['train_seconds'] / 60:.1f} min",
            "images / s": f"{train.get('images_per_second', 0):,.0f}",
            "val accuracy": reporting.percent(train["val_accuracy"]),
            "test accuracy": reporting.percent(test["test_accuracy"]),
            "with flip TTA": reporting.percent(test.get("test_accuracy_flip_tta")),
            "test loss": f"{test['test_loss']:.4f}",
            "reference accuracy": reference_accuracy(reference, dataset, label_mode),
        }
    order = sorted(results, key=lambda r: -r["test"]["test_accuracy"])
    return pd.DataFrame.from_dict(rows, orient="index").loc[[r["name"] for r in order]].rename_axis("architecture")


def f1_section(results: list[dict], class_names: list[str]) -> str:
    f1 = pd.DataFrame({r["name"]: r["per_class"].set_index("class")["f1-score"] for r in results}).T
    f1 = f1[class_names]
    mean_f1 = f1.mean(axis=0).sort_values()
    hardest = ", ".join(f"**{c}** ({100 * v:.1f} %)" for c, v in mean_f1.head(3).items())
    if len(class_names) > 20:  # 100 columns do not read; show the extremes
        f1 = f1[list(mean_f1.index[:10]) + list(mean_f1.index[-5:])]
    table = reporting.markdown_table((f1 * 100).round(1).rename_axis("architecture"))
    return f"Hardest classes (lowest F1 averaged over architectures): {hardest}.\n\n{table}"


def split_hash() -> str:
    """The DVC hash of data/split in dvc.lock (written by DVC when `split` ran)."""
    try:
        lock = yaml.safe_load(Path("dvc.lock").read_text())
        return next(out["md5"] for out in lock["stages"]["split"]["outs"] if out["path"] == "data/split")
    except (OSError, KeyError, StopIteration, TypeError, yaml.YAMLError):
        return "not recorded (run through `dvc repro`)"


def differing_params(params: dict) -> list[str]:
    data, official = params["data"], DATASETS[params["data"]["dataset"]]
    lines = []
    if data.get("source") and data["source"] != official["url"]:
        lines.append(f"`data.source`: `{data['source']}` (md5 `{data.get('md5')}`) instead of the official "
                     f"archive")
    for name in params["architectures"]:
        epochs, reference_epochs = params["train"][name]["epochs"], params["reference"].get(name, {}).get("epochs")
        if reference_epochs and epochs != reference_epochs:
            lines.append(f"`train.{name}.epochs`: {epochs} (the seed trains {reference_epochs})")
    return lines


def write_figures(folder: Path, results: list[dict], best: dict, class_names: list[str]) -> dict[str, str]:
    names = {}

    def save(key: str, figure) -> None:
        names[key] = f"figures/{key}.png"
        reporting.save_figure(figure, folder / f"{key}.png")

    for r in results:
        title = f"{r['name']}: test confusion (counts)"
        save(f"confusion_{r['name']}", reporting.confusion_figure(r["confusion"], title))
    save("confusion_best_normalized", reporting.confusion_figure(
        best["confusion"], f"{best['name']} (best): confusion normalized per actual class", normalized=True))
    save("learning_curves", reporting.learning_curves_figure({r["name"]: r["history"] for r in results}))
    table = pd.DataFrame({"train_seconds": [r["train"]["train_seconds"] for r in results],
                          "test_accuracy": [r["test"]["test_accuracy"] for r in results],
                          "parameters": [r["train"].get("parameters", 1) for r in results]},
                         index=[r["name"] for r in results])
    save("time_vs_accuracy", reporting.tradeoff_figure(table))
    images = load_array(PROCESSED_DIR, "test_images", "run `dvc repro preprocess`")[:SAMPLE_IMAGES]
    first = best["predictions"].iloc[:SAMPLE_IMAGES]
    save("samples_best", reporting.samples_figure(images, list(first["actual"]), list(first["predicted"]),
                                                  f"{best['name']}: first {SAMPLE_IMAGES} test images "
                                                  "(✗ red = misclassified)"))
    return names


def render(params: dict, results: list[dict], figures: dict[str, str], classes: dict) -> str:
    dataset, label_mode, class_names = classes["dataset"], classes["label_mode"], classes["class_names"]
    best = max(results, key=lambda r: r["test"]["test_accuracy"])
    wrong = sum(best["predictions"]["actual"].iloc[:SAMPLE_IMAGES] != best["predictions"]["predicted"]
                .iloc[:SAMPLE_IMAGES])
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
        f"Generated by the `report` stage from the pipeline's own files; best test accuracy: "
        f"**{best['name']} {reporting.percent(best['test']['test_accuracy'])}** on "
        f"{best['test']['test_images']:,} test images. Times are wall-clock on the machine that ran "
        "`dvc repro`.",
        "",
        "## Comparison (sorted by test accuracy)",
        "",
        reporting.markdown_table(comparison_table(results, dataset, label_mode)),
        "",
        "*reference accuracy*: the test accuracy the seed notebook prints for the same architecture, after "
        "*reference epochs* epochs on the official data (`reference` in params.yaml; another data set is "
        "named and marked not comparable). "
        "*s / epoch* is the median epoch, validation included.",
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
        f"- data set `{dataset}`, normalization `{params['preprocess']['normalization']}`, validation "
        f"fraction {params['split']['val_fraction']} (split seed {params['split']['seed']})",
        f"- DVC hash of the split data (`data/split`): `{split_hash()}`",
        "- params that differ from the defaults (official archive, the seeds' epochs):",
        *[f"  - {line}" for line in differing],
        "",
        reporting.markdown_table(trace),
        "",
        "Reproduce: `dvc repro` (only stages whose inputs changed rerun); browse the runs with "
        "`mlflow ui`; compare with another commit with `dvc metrics diff` and `dvc plots diff`.",
        "",
    ])


def main(argv: list[str]) -> None:
    params = load_params()
    classes = load_classes(PROCESSED_DIR)
    results = [collect(name, params["reference"].get(name, {}))
               for name in params["architectures"]]
    expected = len(load_array(PROCESSED_DIR, "test_labels", "run `dvc repro preprocess`"))
    for r in results:
        total = int(r["confusion"].to_numpy().sum())
        if total != expected:
            raise PipelineError(f"confusion matrix of {r['name']} counts {total} images, the test set has "
                                f"{expected}; run `dvc repro evaluate@{r['name']}`")
    best = max(results, key=lambda r: r["test"]["test_accuracy"])
    with atomic_dir(FIGURES) as folder:
        figures = write_figures(folder, results, best, classes["class_names"])
    with atomic_path(REPORTS / "report.md") as tmp:
        tmp.write_text(render(params, results, figures, classes))
    print(f"report: {len(results)} architectures -> {REPORTS / 'report.md'} (best {best['name']} "
          f"{best['test']['test_accuracy']:.4f})")


if __name__ == "__main__":
    run_stage(main)
