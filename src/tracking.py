"""MLflow tracking: one experiment per data set, one run per `train@<name>` execution.

The store is MLflow's own default (``sqlite:///mlflow.db`` at the repository root, artifacts in
``mlruns/``), so plain ``mlflow ui`` shows every run; ``MLFLOW_TRACKING_URI`` overrides it.
"""

import contextlib
import hashlib
import os
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import keras
import mlflow
import numpy as np
from mlflow.models import infer_signature

from src.errors import PipelineError

MODEL_ARTIFACT = "model"


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""


# What defines a result. Not the whole tree: `dvc repro` itself rewrites dvc.lock and the
# git-tracked reports between stages, which would mark every later run dirty.
SOURCE_PATHS = ["src", "params.yaml", "dvc.yaml", "requirements.txt"]


def git_tags() -> dict[str, str]:
    commit = _git("rev-parse", "HEAD") or "unknown"
    dirty = bool(_git("status", "--porcelain", "--untracked-files=no", "--", *SOURCE_PATHS))
    return {"git_commit": commit, "git_dirty": str(dirty).lower(), "mlflow.source.git.commit": commit}


def files_md5(paths: list[Path]) -> str:
    """One md5 over the given files, in order: identifies the exact data a run trained on."""
    digest = hashlib.md5()
    for path in paths:
        with path.open("rb") as stream:
            for chunk in iter(lambda: stream.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def _stage_tag(name: str) -> str:
    return f"train@{name}"


def close_abandoned_runs(experiment_id: str, name: str) -> None:
    """Mark KILLED the runs of this stage that a SIGKILL left RUNNING (their process is gone)."""
    runs = mlflow.search_runs([experiment_id], output_format="list",
                              filter_string=f"tags.dvc_stage = '{_stage_tag(name)}' and attributes.status = 'RUNNING'")
    for run in runs:
        same_host = run.data.tags.get("host") == socket.gethostname()
        pid = int(run.data.tags.get("pid", "0"))
        if same_host and not _process_alive(pid):
            mlflow.MlflowClient().set_terminated(run.info.run_id, status="KILLED")


def _process_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


@contextlib.contextmanager
def training_run(name: str, dataset: str, params: dict, tags: dict) -> Iterator[mlflow.ActiveRun]:
    """An MLflow run that ends FINISHED, FAILED (error) or KILLED (SIGINT/SIGTERM), never RUNNING."""
    experiment = mlflow.set_experiment(dataset)
    close_abandoned_runs(experiment.experiment_id, name)
    previous_handler = signal.signal(signal.SIGTERM, _raise_interrupt)
    run = mlflow.start_run(run_name=name, tags={
        **git_tags(), **tags, "dvc_stage": _stage_tag(name), "dataset": dataset,
        "host": socket.gethostname(), "pid": str(os.getpid()),
    })
    try:
        mlflow.log_params(_flatten(params))
        yield run
    except KeyboardInterrupt:
        mlflow.end_run("KILLED")
        raise
    except BaseException:
        mlflow.end_run("FAILED")
        raise
    else:
        mlflow.end_run("FINISHED")
    finally:
        signal.signal(signal.SIGTERM, previous_handler)


def _flatten(params: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in params.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


class EpochMetrics(keras.callbacks.Callback):
    """Logs every epoch's metrics, learning rate and seconds to the active run."""

    def on_epoch_end(self, epoch, logs=None):
        mlflow.log_metrics({key: float(value) for key, value in (logs or {}).items()}, step=epoch + 1)


def log_keras_model(model: keras.Model, example_images: np.ndarray) -> None:
    """Log with the TensorFlow flavor, a signature and an input example (uint8 images)."""
    import tensorflow as tf

    signature = infer_signature(example_images, model.predict(example_images, verbose=0))
    # Explicit requirements: MLflow's inference would reload the model in a subprocess.
    requirements = [f"tensorflow=={tf.__version__}", f"keras=={keras.__version__}", f"numpy=={np.__version__}"]
    mlflow.tensorflow.log_model(model, name=MODEL_ARTIFACT, signature=signature, input_example=example_images,
                                pip_requirements=requirements)


def resume_run(run_file: Path) -> mlflow.ActiveRun:
    """Reopen the run that trained a model (its id is in the file written next to the model)."""
    from src.fileio import read_json

    info = read_json(run_file, "MLflow run id", "rerun the train stage (`dvc repro`)")
    if "MLFLOW_TRACKING_URI" not in os.environ:
        mlflow.set_tracking_uri(info["tracking_uri"])
    try:
        return mlflow.start_run(run_id=info["run_id"])
    except mlflow.exceptions.MlflowException as error:
        raise PipelineError(f"MLflow run {info['run_id']} from {run_file} is not in the tracking store "
                            f"{mlflow.get_tracking_uri()} ({error.message}); retrain with "
                            "`dvc repro --force` on that train stage, or point MLFLOW_TRACKING_URI "
                            "at the store that has it") from None
