"""Stage `evaluate@<name>`: score one trained model on the untouched test set.

Usage: python -m src.stages.evaluate NAME. Params: evaluate.batch_size. Writes
reports/eval/NAME.json (DVC metrics), reports/predictions/NAME.csv (one row per test image,
DVC's confusion plot) and reports/details/NAME/ (per-class scores, confusion counts and
heatmap); logs all of it into the MLflow run that trained the model.
"""

from pathlib import Path

from src import reporting, tracking
from src.data import load_array, load_classes
from src.errors import PipelineError, run_stage
from src.evaluation import evaluate, load_model
from src.fileio import atomic_dir, atomic_path, write_json
from src.params import load_params

PROCESSED_DIR = Path("data/processed")
MODELS_DIR = Path("models")
EVAL_DIR = Path("reports/eval")
PREDICTIONS_DIR = Path("reports/predictions")
DETAILS_DIR = Path("reports/details")


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
    import keras

    keras.utils.disable_interactive_logging()
    fix = "run `dvc repro preprocess`"
    images, labels = load_array(PROCESSED_DIR, "test_images", fix), load_array(PROCESSED_DIR, "test_labels", fix)
    class_names = load_classes(PROCESSED_DIR)["class_names"]
    model = load_model(MODELS_DIR / f"{name}.keras")
    result = evaluate(model, images, labels, class_names, params["evaluate"]["batch_size"])

    # Logged from inside atomic_dir: the details folder appears only if MLflow took them too.
    with atomic_dir(DETAILS_DIR / name) as details:
        write_details(details, name, result)
        with tracking.resume_run(MODELS_DIR / f"{name}.run.json"):
            tracking.mlflow.log_metrics({k: float(v) for k, v in result.metrics.items()})
            tracking.mlflow.log_artifacts(str(details), artifact_path="evaluation")
            tracking.mlflow.log_dict(result.per_class.round(4).to_dict(orient="index"),
                                     "evaluation/classification_report.json")
    with atomic_path(PREDICTIONS_DIR / f"{name}.csv") as tmp:
        result.predictions.to_csv(tmp, index_label="image")
    write_json(EVAL_DIR / f"{name}.json", result.metrics)
    print(f"evaluate@{name}: test accuracy {result.metrics['test_accuracy']:.4f} "
          f"({result.metrics['test_accuracy_flip_tta']:.4f} with flip TTA), "
          f"loss {result.metrics['test_loss']:.4f} on {result.metrics['test_images']} images")


if __name__ == "__main__":
    run_stage(main)
