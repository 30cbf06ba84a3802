"""Stage `train@<name>`: train one architecture on the split data and track it in MLflow.

Usage: python -m src.stages.train NAME. Params: train.NAME. Writes models/NAME.keras,
models/NAME.run.json (the MLflow run and model, for evaluate and promote), reports/train/NAME.json
(DVC metrics) and reports/history/NAME.csv (per-epoch metrics, for `dvc plots`).
"""

from src import config as paths
from src import cpu, tracking
from src.data import load_array, load_classes, load_normalization
from src.errors import PipelineError, run_stage
from src.fileio import atomic_path, remove_partials, write_json
from src.params import dataset_source, load_params


def main(argv: list[str]) -> None:
    if len(argv) != 1:
        raise PipelineError("usage: python -m src.stages.train ARCHITECTURE (one name from `architectures`)")
    name = argv[0]
    params = load_params()
    if name not in params["train"]:
        raise PipelineError(f"no `train.{name}` section in params.yaml; add one (see train.elu3)")
    config = params["train"][name]
    tracking.configure_store()

    import keras

    from src import training
    from src.models import build_model

    keras.utils.disable_interactive_logging()  # no progress bars in `dvc repro` logs (MLflow predicts too)

    remove_partials(paths.MODELS_DIR)
    fix = "run `dvc repro split`"
    train_images, train_labels, val_images, val_labels = (load_array(paths.SPLIT_DIR, f, fix)
                                                          for f in paths.SPLIT_FILES)
    classes, normalization = load_classes(paths.PROCESSED_DIR), load_normalization(paths.PROCESSED_DIR)
    training.steps_per_epoch(name, config, len(train_images))  # a bad batch setup fails before the run starts
    training.make_deterministic(config["seed"])
    model = build_model(name, train_labels.shape[1], normalization, config, train_images=train_images)
    split_file = {f: paths.SPLIT_DIR / f"{f}.npy" for f in paths.SPLIT_FILES}
    tags = {"data_md5": tracking.files_md5(list(split_file.values())),
            "normalization": normalization["mode"], "label_mode": classes["label_mode"],
            "dtype_policy": model.dtype_policy.name, **cpu.describe()}
    logged_params = {**config, "parameters": model.count_params(), "dataset": classes["dataset"],
                     "normalization": normalization["mode"], "train_images": len(train_images)}

    with tracking.training_run(name, classes["dataset"], logged_params, tags) as run:
        tracking.log_datasets({
            "training": (train_images, train_labels, tracking.files_md5([split_file["train_images"]])),
            "validation": (val_images, val_labels, tracking.files_md5([split_file["val_images"]])),
        }, source=dataset_source(params["data"])[0], dataset=classes["dataset"])
        result = training.train(model, config, (train_images, train_labels), (val_images, val_labels),
                                extra_callbacks=[tracking.EpochMetrics()])
        summary = {**result.summary(training.monitor_of(config)), "parameters": model.count_params()}
        # The saved model's validation scores get their own names: `val_*` are per-epoch series.
        tracking.mlflow.log_metrics({("evaluated_" + k if k.startswith("val_") else k): float(v)
                                     for k, v in summary.items() if k != "monitor"})
        # Saved before the upload: a store that refuses the model must not waste the training.
        with atomic_path(paths.model_file(name), suffix=".keras") as tmp:
            model.save(tmp)
        with atomic_path(paths.HISTORY_DIR / f"{name}.csv") as tmp:
            result.history.to_csv(tmp, index=False, float_format="%.6g")
        write_json(paths.TRAIN_METRICS_DIR / f"{name}.json", summary)
        model_uri = tracking.log_keras_model(model, val_images[:2])
        write_json(paths.run_file(name), {
            "run_id": run.info.run_id, "experiment_id": run.info.experiment_id,
            "model_uri": model_uri, "tracking_uri": tracking.mlflow.get_tracking_uri(),
            "data_md5": tags["data_md5"],
            **{key: value for key, value in tracking.git_tags().items() if key.startswith("git_")}})
    print(f"train@{name}: val_accuracy {summary['val_accuracy']:.4f} (saved model, epoch {summary['evaluated_epoch']}; "
          f"best {summary['best_val_accuracy']:.4f} at epoch {summary['best_epoch']}), "
          f"{summary['train_seconds']:.0f}s, MLflow run {run.info.run_id}")


if __name__ == "__main__":
    run_stage(main)
