"""Stage `train@<name>`: train one architecture on the split data and track it in MLflow.

Usage: python -m src.stages.train NAME. Params: train.NAME. Writes models/NAME.keras,
models/NAME.run.json (the MLflow run id, for the evaluate stage), reports/train/NAME.json
(DVC metrics) and reports/history/NAME.csv (per-epoch metrics, for `dvc plots`).
"""

from pathlib import Path

from src import tracking
from src.data import load_array, load_classes, load_normalization
from src.errors import PipelineError, run_stage
from src.fileio import atomic_path, remove_partials, write_json
from src.params import load_params

PROCESSED_DIR = Path("data/processed")
SPLIT_DIR = Path("data/split")
MODELS_DIR = Path("models")
TRAIN_METRICS_DIR = Path("reports/train")
HISTORY_DIR = Path("reports/history")
SPLIT_FILES = ["train_images", "train_labels", "val_images", "val_labels"]


def main(argv: list[str]) -> None:
    if len(argv) != 1:
        raise PipelineError("usage: python -m src.stages.train ARCHITECTURE (one name from `architectures`)")
    name = argv[0]
    params = load_params()
    if name not in params["train"]:
        raise PipelineError(f"no `train.{name}` section in params.yaml; add one (see train.elu3)")
    config = params["train"][name]

    import keras

    from src import training
    from src.models import build_model

    keras.utils.disable_interactive_logging()  # no progress bars in `dvc repro` logs (MLflow predicts too)

    remove_partials(MODELS_DIR)
    fix = "run `dvc repro split`"
    train_images, train_labels, val_images, val_labels = (load_array(SPLIT_DIR, f, fix) for f in SPLIT_FILES)
    classes, normalization = load_classes(PROCESSED_DIR), load_normalization(PROCESSED_DIR)
    training.make_deterministic(config["seed"])
    model = build_model(name, train_labels.shape[1], normalization, config)
    tags = {"data_md5": tracking.files_md5([SPLIT_DIR / f"{f}.npy" for f in SPLIT_FILES]),
            "normalization": normalization["mode"], "label_mode": classes["label_mode"]}
    logged_params = {**config, "parameters": model.count_params(), "dataset": classes["dataset"],
                     "normalization": normalization["mode"], "train_images": len(train_images)}

    with tracking.training_run(name, classes["dataset"], logged_params, tags) as run:
        result = training.train(model, config, (train_images, train_labels), (val_images, val_labels),
                                extra_callbacks=[tracking.EpochMetrics()])
        summary = {**result.summary(training.monitor_of(config)), "parameters": model.count_params()}
        # The best epoch's validation scores get their own names: `val_*` are per-epoch series.
        tracking.mlflow.log_metrics({("best_" + k if k.startswith("val_") else k): float(v)
                                     for k, v in summary.items() if k != "monitor"})
        tracking.log_keras_model(model, val_images[:2])
        with atomic_path(HISTORY_DIR / f"{name}.csv") as tmp:
            result.history.to_csv(tmp, index=False, float_format="%.6g")
        write_json(TRAIN_METRICS_DIR / f"{name}.json", summary)
        with atomic_path(MODELS_DIR / f"{name}.keras", suffix=".keras") as tmp:
            model.save(tmp)
        write_json(MODELS_DIR / f"{name}.run.json", {
            "run_id": run.info.run_id, "experiment_id": run.info.experiment_id,
            "tracking_uri": tracking.mlflow.get_tracking_uri(), "data_md5": tags["data_md5"],
            **{key: value for key, value in tracking.git_tags().items() if key.startswith("git_")}})
    print(f"train@{name}: val_accuracy {summary['val_accuracy']:.4f} (epoch {summary['best_epoch']}), "
          f"{summary['train_seconds']:.0f}s, MLflow run {run.info.run_id}")


if __name__ == "__main__":
    run_stage(main)
