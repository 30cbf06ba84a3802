"""Stage `train@<name>`: train one architecture on the split data and track it in MLflow.

Params: train.NAME (seeds.train.NAME for a row of
the seed table). Writes models/NAME.keras, models/NAME.run.json (the MLflow run and model, for evaluate and
promote), reports/train/NAME.json (DVC metrics) and reports/history/NAME.csv (per-epoch metrics, for
`dvc plots`); the seed table writes the same under seeds/. Until the model is saved, models/backup/NAME/
(or $TRAINING_BACKUP_DIR/NAME/) holds the last finished epoch: a killed training rerun with the same params,
data and code resumes there, in a new MLflow run (tag `resumed_from_run_id`) that holds every epoch.
"""

from src.core import config as paths
from src.core import tracking
from src.core.arrays import load_array, load_classes
from src.core.cli import net_arguments
from src.core.errors import run_stage
from src.core.fileio import atomic_path, read_json, read_model, remove_partials, write_json
from src.core.params import load_params


def main(argv: list[str]) -> None:
    name, table = net_arguments(argv, "src.stages.train", __doc__)
    params = load_params()
    config = params.recipe(name, table)
    tracking.configure_store()

    import keras

    from src.training import device, fit
    from src.training.models import initial_model

    device.enable_memory_growth()  # before TensorFlow touches a GPU
    keras.utils.disable_interactive_logging()  # no progress bars in `dvc repro` logs (MLflow predicts too)

    remove_partials(table.models_dir)
    fix = "run `dvc repro split`"
    train_images, train_labels, val_images, val_labels = (load_array(paths.SPLIT_DIR, f, fix)
                                                          for f in paths.SPLIT_FILES)
    classes = load_classes(paths.PROCESSED_DIR)
    fit.steps_per_epoch(name, config, len(train_images))  # a bad batch setup fails before the run starts
    parent = config.init_from
    parent_model = read_model(table.model_file(parent), f"`init_from: {parent}`: its model",
                              f"train {parent} first (`dvc repro {table.stage('train', parent)}`)") if parent else None
    print(f"train@{name}: on {device.summary()}", flush=True)
    model, normalization = initial_model(name, config, train_images, train_labels.shape[1], parent_model)
    split_file = {f: paths.SPLIT_DIR / f"{f}.npy" for f in paths.SPLIT_FILES}
    tags = {"data_md5": tracking.files_md5(list(split_file.values())),
            "normalization": normalization["mode"], "label_mode": classes["label_mode"],
            "dtype_policy": model.dtype_policy.name, **device.describe()}
    if parent:
        tags["init_from_run_id"] = read_json(table.run_file(parent), f"MLflow run id of {parent}",
                                             f"retrain {parent} (`dvc repro {table.stage('train', parent)}`)")["run_id"]
    recipe = config.model_dump(exclude_none=True)  # as MLflow logs it
    backup = None
    if fit.resumable(config):
        # A continuation's backup holds epochs trained on top of one parent model: a retrained parent
        # (a new run) must start it over.
        backup = fit.EpochBackup(table.backup_dir(name), fit.fingerprint(
            config.net, name, table.name, recipe, tags["data_md5"], keras.__version__, tags.get("init_from_run_id")))
        if backup.epochs_done:
            tags["resumed_from_run_id"] = backup.run_id
    logged_params = {**recipe, "parameters": model.count_params(), "dataset": classes["dataset"],
                     "normalization_mean": normalization["mean"], "normalization_std": normalization["std"],
                     "train_images": len(train_images)}

    description = (f"{name}: the net {config.net} trained by the recipe `{table.recipes_key}.{name}` of params.yaml "
                   f"for {config.epochs} epochs" + (f", continuing {parent}'s trained model" if parent else "")
                   + f"; {table.title}.")
    with tracking.training_run(name, classes["dataset"], logged_params, tags, table, description) as run:
        tracking.log_datasets({
            "training": (train_images, train_labels, tracking.files_md5([split_file["train_images"]])),
            "validation": (val_images, val_labels, tracking.files_md5([split_file["val_images"]])),
        }, source=paths.dataset_source(params.data)[0], dataset=classes["dataset"])
        epoch_metrics = tracking.EpochMetrics()
        if backup is not None:  # a resumed training's run holds every epoch, the killed run's too
            backup.run_id = run.info.run_id
            for epoch, logs in enumerate(backup.progress["epochs"]):
                epoch_metrics.on_epoch_end(epoch, logs)
        result = fit.train(model, config, (train_images, train_labels), (val_images, val_labels),
                           extra_callbacks=[epoch_metrics], backup=backup)
        summary = {**result.summary(fit.monitor_of(config)), "parameters": model.count_params()}
        # The saved model's validation scores get their own names: `val_*` are per-epoch series.
        tracking.mlflow.log_metrics({("evaluated_" + k if k.startswith("val_") else k): float(v)
                                     for k, v in summary.items() if k != "monitor"})
        # Saved before the upload: a store that refuses the model must not waste the training.
        with atomic_path(table.model_file(name), suffix=".keras") as tmp:
            model.save(tmp)
        with atomic_path(table.history_dir / f"{name}.csv") as tmp:
            result.history.to_csv(tmp, index=False, float_format="%.6g")
        write_json(table.train_metrics_dir / f"{name}.json", summary)
        model_uri = tracking.log_keras_model(model, val_images[:2])
        write_json(table.run_file(name), {
            "run_id": run.info.run_id, "experiment_id": run.info.experiment_id,
            "model_uri": model_uri, "tracking_uri": tracking.mlflow.get_tracking_uri(),
            "data_md5": tags["data_md5"], "device": tags["device_summary"],
            # the commit the run started on, as its MLflow tags say: not the one it may end on
            **{key: value for key, value in run.data.tags.items() if key.startswith("git_")}})
    if backup is not None:
        backup.remove()
    print(f"train@{name}: val_accuracy {summary['val_accuracy']:.4f} (saved model, after epoch "
          f"{summary['evaluated_epoch']}; best epoch {summary['best_epoch']}: {summary['best_val_accuracy']:.4f}), "
          f"{summary['train_seconds']:.0f}s, MLflow run {run.info.run_id}")


if __name__ == "__main__":
    run_stage(main)
