"""Stage `evaluate@<name>`: score one trained model on the untouched test set.

Params: evaluate.batch_size, evaluate.tta (the
test-time augmentation of the `*_tta` metrics). Writes reports/eval/NAME.json (DVC metrics: the test scores,
the validation accuracy with and without test-time augmentation, to choose it by, and the training images'
accuracy, the overfitting gap), reports/predictions/NAME.csv (one row per test image, DVC's confusion plot)
and reports/details/NAME/ (per-class scores, confusion counts and heatmap, the model's summary and
training_run.json: the MLflow run, commit, data md5 and CPU it trained with), under seeds/ for the seed
table; logs all of it into the MLflow run that trained the model, without reopening it. Everything the
report and the seed table read is in these committed files, none in the DVC cache.
"""

from pathlib import Path

from src.core import config as paths
from src.core import tracking
from src.core.arrays import load_array, load_classes
from src.core.cli import net_arguments
from src.core.errors import run_stage
from src.core.fileio import atomic_dir, atomic_path, read_json, write_json
from src.core.params import load_params
from src.evaluation import figures
from src.evaluation.scoring import accuracy_by_view, evaluate, load_model, model_summary

# The code and CPU a model trained with, as its MLflow run recorded them when training started: NAME.run.json
# takes the commit when training ends, which a long training can outlast.
TRAINING_TAGS = ("git_commit", "git_dirty", "cpu_model", "cpu_family_model", "cpu_flags")


def write_details(folder: Path, name: str, result, net, trained: dict, training_run) -> None:
    result.per_class.round(4).to_csv(folder / "per_class.csv")
    result.confusion.to_csv(folder / "confusion_matrix.csv")
    figure = figures.confusion_figure(result.confusion, f"{name}: test confusion matrix (counts)")
    figures.save_figure(figure, folder / "confusion_matrix.png")
    (folder / "summary.txt").write_text(model_summary(net))
    # Committed, unlike the model and NAME.run.json (DVC cache): what the report and the seed table read.
    tags = training_run.data.tags if training_run else {}
    tags = {tag: tags[tag] for tag in TRAINING_TAGS if tag in tags}
    write_json(folder / "training_run.json", {**trained, **tags})


def main(argv: list[str]) -> None:
    name, table = net_arguments(argv, "src.stages.evaluate", __doc__)
    evaluation = load_params().evaluate
    tracking.configure_store()
    import keras

    from src.evaluation.tta import with_tta

    keras.utils.disable_interactive_logging()
    fix = "run `dvc repro preprocess`"
    images = load_array(paths.PROCESSED_DIR, "test_images", fix)
    labels = load_array(paths.PROCESSED_DIR, "test_labels", fix)
    classes = load_classes(paths.PROCESSED_DIR)
    trained = read_json(table.run_file(name), "MLflow run id", f"rerun `dvc repro {table.stage('train', name)}`")
    net = load_model(table.model_file(name))
    tta, batch_size = evaluation.tta, evaluation.batch_size
    wrapped = with_tta(net, tta)
    result = evaluate(wrapped, images, labels, classes["class_names"], batch_size, single_view=net)
    fix = "run `dvc repro split`"
    result.metrics.update(accuracy_by_view("val", {"single_view": net, "tta": wrapped},
                                           load_array(paths.SPLIT_DIR, "val_images", fix),
                                           load_array(paths.SPLIT_DIR, "val_labels", fix), batch_size))
    result.metrics.update(accuracy_by_view("train", {"single_view": net},
                                           load_array(paths.SPLIT_DIR, "train_images", fix),
                                           load_array(paths.SPLIT_DIR, "train_labels", fix), batch_size))

    # Logged from inside atomic_dir: the details folder appears only if MLflow took them too.
    evaluation_run = tracking.evaluation_run(name, trained, table.model_file(name), classes["dataset"])
    with atomic_dir(table.details_dir / name) as details, evaluation_run as (run_id, training_run):
        write_details(details, name, result, net, trained, training_run)
        tracking.log_evaluation(run_id, result.metrics, tta, details,
                                result.per_class.round(4).to_dict(orient="index"))
    with atomic_path(table.predictions_dir / f"{name}.csv") as tmp:
        result.predictions.to_csv(tmp, index_label="image")
    write_json(table.eval_dir / f"{name}.json", result.metrics)
    metrics = result.metrics
    print(f"evaluate@{name}: test accuracy {metrics['test_accuracy_single_view']:.4f} one view, "
          f"{metrics['test_accuracy_tta']:.4f} with tta {tta}; loss {metrics['test_loss_tta']:.4f} on "
          f"{metrics['test_images']} images, MLflow run {run_id}")


if __name__ == "__main__":
    run_stage(main)
