"""Promote a trained model: register it in the MLflow Model Registry as `<dataset>-cnn` under the alias `champion`.

Usage: python -m src.promote [ARCHITECTURE] [--force]. Without ARCHITECTURE, the one of `architectures`
with the best validation accuracy in reports/train/: the test set scores the chosen model, it never
chooses. Registers the model the test metrics scored: the trained net (models/NAME.keras, also logged by
its training run, models/NAME.run.json) behind `evaluate.tta`'s test-time augmentation, logged into the
training run. data/processed/classes.json gives the registered name. The new version is tagged with its
validation and test accuracy, architecture, test-time augmentation, git commit and training-data hash; a
model with a lower validation accuracy than the current champion needs --force.
Serve the champion with `mlflow models serve -m models:/cifar10-cnn@champion --env-manager local`.
"""

import argparse
import json

from src.core import config as paths
from src.core.arrays import load_classes
from src.core.errors import PipelineError, run_stage
from src.core.fileio import read_json
from src.core.params import load_params

ALIAS = "champion"


def registered_name(classes: dict) -> str:
    """`cifar10-cnn`, `cifar100-cnn`; CIFAR-100's 20 coarse classes get their own `cifar100-coarse-cnn`."""
    coarse = classes["dataset"] == "cifar100" and classes.get("label_mode") == "coarse"
    return f"{classes['dataset']}{'-coarse' if coarse else ''}-cnn"


def val_accuracy(name: str) -> float:
    metrics = read_json(paths.TRAIN_METRICS_DIR / f"{name}.json", f"training metrics of {name}",
                        f"run `dvc repro train@{name}`")
    return float(metrics["val_accuracy"])


def test_accuracy(name: str) -> float:
    metrics = read_json(paths.EVAL_DIR / f"{name}.json", f"test metrics of {name}", f"run `dvc repro evaluate@{name}`")
    return float(metrics["test_accuracy_tta"])


def best_architecture(names: list[str]) -> str:
    """The best validation accuracy among the evaluated `architectures`."""
    scored = {name: val_accuracy(name) for name in names if (paths.EVAL_DIR / f"{name}.json").exists()}
    if not scored:
        raise PipelineError(f"no test metrics in {paths.EVAL_DIR}/ for any of `architectures` "
                            f"({', '.join(names)}); run `dvc repro` first")
    return max(scored, key=scored.get)


def current_champion(client, model_name: str):
    """The version the alias points to, or None (no such registered model or alias yet)."""
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(model_name, ALIAS)
    except MlflowException as error:
        if error.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return None
        raise


def registers(version, trained: dict, tta: str) -> bool:
    """Whether registry ``version`` is the net of training run ``trained`` behind test-time augmentation ``tta``."""
    return version.tags.get("run_id") == trained["run_id"] and version.tags.get("tta", "none") == tta


def registered_version(client, model_name: str, trained: dict, tta: str):
    """The version already registered for this model (promoting it again moves the alias back)."""
    versions = client.search_model_versions(f"name = '{model_name}'")
    return next((v for v in versions if registers(v, trained, tta)), None)


def inference_model(name: str, trained: dict, tta: str) -> str:
    """The URI of the model to register: the training run's own where `evaluate.tta` is none, else the
    trained net behind that test-time augmentation, logged into the training run without reopening it."""
    if tta == "none":
        return trained["model_uri"]
    import keras

    from src.core import tracking
    from src.core.arrays import load_array
    from src.evaluation.scoring import load_model
    from src.evaluation.tta import with_tta

    keras.utils.disable_interactive_logging()
    model = with_tta(load_model(paths.model_file(name)), tta)
    examples = load_array(paths.PROCESSED_DIR, "test_images", "run `dvc repro preprocess`")[:2]
    return tracking.log_model(model, examples, name=f"model_tta_{tta}", run_id=trained["run_id"])


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m src.promote", description=__doc__.split("\n\n")[0])
    parser.add_argument("architecture", nargs="?", help="default: the best validation accuracy of `architectures`")
    parser.add_argument("--force", action="store_true",
                        help="promote even if its validation accuracy is below the current champion's")
    return parser.parse_args(argv)


def main(argv: list[str]) -> None:
    args = parse_args(argv)
    params = load_params()
    name = args.architecture or best_architecture(params.architectures)
    if name not in params.architectures and name not in params.train:
        raise PipelineError(f"unknown architecture {name!r}; choose one of {', '.join(params.architectures)}")
    accuracy, score = val_accuracy(name), test_accuracy(name)
    trained = read_json(paths.run_file(name), f"the MLflow run of {name}", f"run `dvc repro train@{name}`")
    if not trained.get("model_uri"):  # missing, or null where MLflow refused the upload
        raise PipelineError(f"{paths.run_file(name)} names no logged model; retrain with `dvc repro -f train@{name}`")
    classes = load_classes(paths.PROCESSED_DIR)
    model_name = registered_name(classes)

    from src.core import tracking

    uri = tracking.configure_store()
    client = tracking.mlflow.MlflowClient()
    champion = current_champion(client, model_name)
    tta = params.evaluate.tta
    if champion is not None and registers(champion, trained, tta):
        print(f"promote: {name} is already {model_name}@{ALIAS} (version {champion.version})")
        return
    held = float(champion.tags.get("val_accuracy", "nan")) if champion is not None else None
    if held is not None and accuracy < held and not args.force:
        raise PipelineError(
            f"{name} (validation accuracy {accuracy:.2%}) is {100 * (held - accuracy):.2f} percentage points below "
            f"{model_name}@{ALIAS} (version {champion.version}, {champion.tags.get('architecture')}, {held:.2%}); "
            "pass --force to promote it anyway")
    version = registered_version(client, model_name, trained, tta)
    if version is None:
        try:
            version = tracking.mlflow.register_model(inference_model(name, trained, tta), model_name)
        except tracking.mlflow.exceptions.MlflowException as error:
            raise PipelineError(f"cannot register the model of {name} (run {trained['run_id']}) in {uri} "
                                f"({error.message}); the store that trained it is {trained.get('tracking_uri')}: "
                                f"set MLFLOW_TRACKING_URI to it or retrain with `dvc repro -f train@{name}`") from None
    tags = {"val_accuracy": accuracy, "test_accuracy_tta": score, "architecture": name, "tta": tta,
            "git_commit": trained.get("git_commit", "unknown"),
            "git_dirty": trained.get("git_dirty", "unknown"), "data_md5": trained.get("data_md5", "unknown"),
            "run_id": trained["run_id"], "class_names": json.dumps(classes["class_names"])}
    for key, value in tags.items():
        client.set_model_version_tag(model_name, version.version, key, str(value))
    client.set_registered_model_alias(model_name, ALIAS, version.version)
    was = f"; was version {champion.version} ({champion.tags.get('architecture')}, {held:.2%})" if champion else ""
    print(f"promote: {model_name} version {version.version} ({name}, validation accuracy {accuracy:.2%}, "
          f"test accuracy {score:.2%} with tta {tta}) "
          f"is now @{ALIAS}{was}")


if __name__ == "__main__":
    run_stage(main)
