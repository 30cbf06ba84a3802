"""Stage `evaluate@<name>`: score one trained model on the untouched test set.

Usage: python -m src.stages.evaluate NAME. Params: evaluate.batch_size, evaluate.tta (the test-time
augmentation every metric is scored with). Writes reports/eval/NAME.json (DVC metrics),
reports/predictions/NAME.csv (one row per test image, DVC's confusion plot) and reports/details/NAME/
(per-class scores, confusion counts and heatmap); logs all of it into the MLflow run that trained the
model, without reopening it.
"""

from pathlib import Path

from src import config as paths
from src import reporting, tracking
from src.data import load_array, load_classes
from src.errors import PipelineError, run_stage
from src.evaluation import evaluate, load_model
from src.fileio import atomic_dir, atomic_path, read_json, write_json
from src.params import load_params


def write_details(folder: Path, name: str, result) -> None:
    result.per_class.round(4).to_csv(folder / "per_class.csv")
    result.confusion.to_csv(folder / "confusion_matrix.csv")
    figure = reporting.confusion_figure(result.confusion, f"{name}: test confusion matrix (counts)")
    reporting.save_figure(figure, folder / "confusion_matrix.png")


def main(argv: list[str]) -> None:
    if len(argv) != 1:
        raise PipelineError("usage: python -m src.stages.evaluate ARCHITECTURE")
    name = argv[0]
    params = load_params()
    tracking.configure_store()
    import keras

    from src.models import with_tta

    keras.utils.disable_interactive_logging()
    fix = "run `dvc repro preprocess`"
    images = load_array(paths.PROCESSED_DIR, "test_images", fix)
    labels = load_array(paths.PROCESSED_DIR, "test_labels", fix)
    classes = load_classes(paths.PROCESSED_DIR)
    trained = read_json(paths.run_file(name), "MLflow run id", f"rerun `dvc repro train@{name}`")
    net = load_model(paths.model_file(name))
    tta = params["evaluate"]["tta"]
    result = evaluate(with_tta(net, tta), images, labels, classes["class_names"], params["evaluate"]["batch_size"],
                      single_view=net)

    # Logged from inside atomic_dir: the details folder appears only if MLflow took them too.
    with atomic_dir(paths.DETAILS_DIR / name) as details, \
            tracking.evaluation_run(name, trained, paths.model_file(name), classes["dataset"]) as run_id:
        write_details(details, name, result)
        tracking.log_evaluation(run_id, result.metrics, tta, details,
                                result.per_class.round(4).to_dict(orient="index"))
    with atomic_path(paths.PREDICTIONS_DIR / f"{name}.csv") as tmp:
        result.predictions.to_csv(tmp, index_label="image")
    write_json(paths.EVAL_DIR / f"{name}.json", result.metrics)
    print(f"evaluate@{name}: test accuracy {result.metrics['test_accuracy']:.4f} "
          f"with tta {tta} ({result.metrics['test_accuracy_no_tta']:.4f} without), "
          f"loss {result.metrics['test_loss']:.4f} on {result.metrics['test_images']} images, MLflow run {run_id}")


if __name__ == "__main__":
    run_stage(main)
