"""MLflow tracking: one experiment per data set, one run per `train@<name>` execution.

One store per project, wherever a stage runs: by default ``sqlite:///<root>/mlflow.db`` with
artifacts in ``<root>/mlruns``, where ``<root>`` is ``DVC_ROOT``. DVC sets that variable for every
stage and, for queued and ``--temp`` experiments, points it at the parent repository rather than the
temporary copy the stage runs in; so plain ``mlflow ui`` from the root shows every run.
``MLFLOW_TRACKING_URI`` overrides all of it (a tracking server, say).
"""

import contextlib
import fcntl
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import warnings
from collections.abc import Iterator
from pathlib import Path

import keras
import mlflow
import numpy as np
from mlflow.entities import Metric, Run, RunTag
from mlflow.models import infer_signature

from src.core.config import MLFLOW_ARTIFACTS, MLFLOW_DB, Table
from src.core.errors import PipelineError
from src.core.fileio import files_md5

MODEL_ARTIFACT = "model"
SERVER_CHECK_SECONDS = 5
# Two queue workers write to one SQLite file: wait for the other's transaction instead of failing.
SQLITE_BUSY_SECONDS = 60


def project_root() -> Path:
    """The repository the user works in (not an experiment's temporary copy)."""
    return Path(os.environ.get("DVC_ROOT") or Path.cwd()).resolve()


def sqlite_file() -> Path | None:
    """The database file when the store is SQLite (the default): the one store needing a file lock."""
    uri = mlflow.get_tracking_uri()
    return Path(uri.removeprefix("sqlite:///").split("?")[0]).resolve() if uri.startswith("sqlite:///") else None


def configure_store() -> str:
    """Point MLflow at the project's store and return its URI. A tracking server that is unreachable or
    refuses the login, or (with a server) a DVC remote on S3 that refuses the key, is a PipelineError:
    the stage stops before any work.

    (mlflow.set_tracking_uri exports MLFLOW_TRACKING_URI: stages this process starts use the same store.)"""
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        if uri.startswith(("http://", "https://")):
            _check_server(uri)
            _check_dvc_remote()
    else:
        uri = f"sqlite:///{project_root() / MLFLOW_DB}?timeout={SQLITE_BUSY_SECONDS}"
    mlflow.set_tracking_uri(uri)
    return uri


LOGIN_FIX = ("set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD to your account on it (or write them to "
             "~/.mlflow/credentials); the server's admin creates it: `python scripts/team_stack.py add-member NAME`")


def _check_server(uri: str) -> None:
    """The server answers and, if it asks for a login, takes ours: one authenticated read.

    MLflow's own client retries for minutes (MLFLOW_HTTP_REQUEST_MAX_RETRIES) before giving up:
    right for a server that restarts mid-training, wrong for one that is not there at all."""
    import base64
    import json

    from mlflow.utils.credentials import read_mlflow_creds

    base = uri.rstrip("/")
    try:
        with urllib.request.urlopen(f"{base}/health", timeout=SERVER_CHECK_SECONDS) as response:
            response.read()
    except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise PipelineError(f"MLflow tracking server MLFLOW_TRACKING_URI={uri} is unreachable ({reason}); "
                            "start it, or unset MLFLOW_TRACKING_URI to track into the local mlflow.db") from None
    creds = read_mlflow_creds()
    request = urllib.request.Request(f"{base}/api/2.0/mlflow/experiments/search?max_results=1")
    if creds.username or creds.password:
        token = base64.b64encode(f"{creds.username or ''}:{creds.password or ''}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=SERVER_CHECK_SECONDS) as response:
            json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as error:
        body = " ".join(error.read().decode(errors="replace").split())[:200]
        if error.code == 401 and not (creds.username and creds.password):
            missing = " and ".join(name for name, value in (("MLFLOW_TRACKING_USERNAME", creds.username),
                                                             ("MLFLOW_TRACKING_PASSWORD", creds.password)) if not value)
            verb = "are" if " and " in missing else "is"
            raise PipelineError(f"MLflow tracking server MLFLOW_TRACKING_URI={uri} requires a login (HTTP 401) "
                                f"and {missing} {verb} not set; {LOGIN_FIX}") from None
        if error.code == 401:
            raise PipelineError(f"MLflow tracking server MLFLOW_TRACKING_URI={uri} refused the login of "
                                f"MLFLOW_TRACKING_USERNAME={creds.username} (HTTP 401: unknown user or wrong "
                                "password); check MLFLOW_TRACKING_PASSWORD, or ask the server's admin for the "
                                f"account (`python scripts/team_stack.py member {creds.username}`)") from None
        if error.code == 403 and "Host header" in body:
            host = urllib.parse.urlsplit(uri).netloc
            raise PipelineError(f"MLflow tracking server MLFLOW_TRACKING_URI={uri} refuses the host name {host} "
                                f"(HTTP 403: not in its --allowed-hosts); set MLFLOW_TRACKING_URI to the address "
                                "the server's admin gave you, or have them start it with `--public-host` "
                                f"{urllib.parse.urlsplit(uri).hostname}") from None
        raise PipelineError(f"MLflow tracking server MLFLOW_TRACKING_URI={uri} refused to list experiments "
                            f"(HTTP {error.code}: {body}); check MLFLOW_TRACKING_URI and your login "
                            "(MLFLOW_TRACKING_USERNAME)") from None
    except (urllib.error.URLError, TimeoutError, ConnectionError, OSError, ValueError) as error:
        raise PipelineError(f"MLflow tracking server MLFLOW_TRACKING_URI={uri} does not answer as an MLflow "
                            f"server ({getattr(error, 'reason', error)}); check MLFLOW_TRACKING_URI") from None


S3_KEY_FIX = ("set your own key: `dvc remote modify --local {remote} access_key_id KEY` and `dvc remote modify "
              "--local {remote} secret_access_key SECRET` (or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY); the "
              "server's admin gives you one: `python scripts/team_stack.py add-member NAME`")


def _check_dvc_remote() -> None:
    """With a tracking server (a team), the repository's default DVC remote, if it is on S3, takes our
    key: otherwise the outputs of a training could not be pushed (`dvc push`, `dvc exp push`)."""
    root = project_root()
    if not (root / ".dvc" / "config").exists():
        return
    from dvc.config import Config, ConfigError
    from dvc.fs import get_cloud_fs

    try:
        config = Config(dvc_dir=str(root / ".dvc"))
        remote = config["core"].get("remote")
        if not remote:
            return
        cls, fs_config, fs_path = get_cloud_fs(config, name=remote)
    except ConfigError as error:
        raise PipelineError(f"the DVC config in {root / '.dvc'} is invalid ({error}); fix it with `dvc remote "
                            "modify` or `dvc config`") from None
    if "s3" not in (cls.protocol if isinstance(cls.protocol, tuple) else (cls.protocol,)):
        return
    fs = cls(**fs_config)
    url = f"s3://{fs_path}"
    endpoint = fs_config.get("endpointurl") or "AWS"
    key = fs_config.get("access_key_id") or os.environ.get("AWS_ACCESS_KEY_ID")
    try:
        fs.fs.ls(fs_path, refresh=True)
    except FileNotFoundError:
        return  # the key was taken; nothing pushed under that prefix yet
    except PermissionError as error:
        who = f"access key {key}" if key else "requests without an access key (none is set)"
        fix = S3_KEY_FIX.format(remote=remote)
        raise PipelineError(f"the DVC remote {remote!r} ({url} at {endpoint}) refuses {who} "
                            f"({' '.join(str(error).split())}); {fix}") from None
    except OSError as error:
        raise PipelineError(f"the DVC remote {remote!r} ({url} at {endpoint}) is unreachable "
                            f"({' '.join(str(error).split())}); check its endpointurl (`dvc remote modify "
                            f"{remote} endpointurl URL`)") from None


@contextlib.contextmanager
def _store_lock() -> Iterator[None]:
    """Serialize creating the SQLite schema and experiments: two queue workers on a fresh store
    would otherwise both run its migrations, or both create the same experiment."""
    database = sqlite_file()
    if database is None:
        yield
        return
    with database.with_name(f"{database.name}.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def experiment_id(dataset: str) -> str:
    """The experiment named after the data set, created on first use.

    In the embedded store its artifact location is absolute and at the project root: an experiment
    first created inside a temporary experiment copy must not keep a path that disappears with it.
    """
    with _store_lock():
        client = mlflow.MlflowClient()
        experiment = client.get_experiment_by_name(dataset)
        if experiment is not None:
            return experiment.experiment_id
        location = (project_root() / MLFLOW_ARTIFACTS).as_uri() if sqlite_file() else None
        return client.create_experiment(dataset, artifact_location=location)


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


def dvc_tags() -> dict[str, str]:
    """The DVC experiment a stage runs in (`dvc exp show` lists it by this name) and its baseline commit."""
    names = {"DVC_EXP_NAME": "dvc_exp_name", "DVC_EXP_BASELINE_REV": "dvc_exp_baseline_rev"}
    return {tag: os.environ[variable] for variable, tag in names.items() if os.environ.get(variable)}


def close_abandoned_runs(experiment: str, stage: str) -> None:
    """Mark KILLED the runs of this stage that a SIGKILL left RUNNING (their process is gone)."""
    runs = mlflow.search_runs([experiment], output_format="list",
                              filter_string=f"tags.dvc_stage = '{stage}' and attributes.status = 'RUNNING'")
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
def _refusal_is_an_error(experiment: str) -> Iterator[None]:
    """A tracking server that refuses to let this login write into the experiment (HTTP 403) stops the
    stage with one line, before the run, so before any training."""
    try:
        yield
    except mlflow.exceptions.MlflowException as error:
        if error.error_code != "PERMISSION_DENIED":
            raise
        user = os.environ.get("MLFLOW_TRACKING_USERNAME") or "(from ~/.mlflow/credentials)"
        raise PipelineError(f"MLflow tracking server {mlflow.get_tracking_uri()} does not let "
                            f"MLFLOW_TRACKING_USERNAME={user} log runs into the experiment {experiment!r} "
                            "(HTTP 403, permission READ); ask the server's admin for EDIT: `python "
                            f"scripts/team_stack.py grant {user} --experiment {experiment}`") from None


@contextlib.contextmanager
def tracked_run(run_name: str, stage: str, dataset: str, params: dict, tags: dict, description: str = "",
                system_metrics: bool = False) -> Iterator[mlflow.ActiveRun]:
    """An MLflow run that ends FINISHED, FAILED (error) or KILLED (SIGINT/SIGTERM), never RUNNING. With
    ``system_metrics``, MLflow's own sampler logs CPU, memory (and GPU) use beside the run's metrics."""
    with _refusal_is_an_error(dataset):
        experiment = experiment_id(dataset)
        close_abandoned_runs(experiment, stage)
        run = mlflow.start_run(experiment_id=experiment, run_name=run_name, tags={
            **git_tags(), **dvc_tags(), **tags, "dvc_stage": stage, "dataset": dataset,
            "host": socket.gethostname(), "pid": str(os.getpid()),
        }, description=description or None, log_system_metrics=system_metrics)
    previous_handler = signal.signal(signal.SIGTERM, _raise_interrupt)
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


def training_run(name: str, dataset: str, params: dict, tags: dict, table: Table, description: str
                 ) -> contextlib.AbstractContextManager:
    """The run of `train@NAME` (`continue@NAME` for a continuation) of ``table``'s pipeline, with the
    description `mlflow ui` shows and MLflow's system metrics."""
    stage = table.stage("continue" if params.get("init_from") else "train", name)
    return tracked_run(name + table.run_suffix, stage, dataset, params, {**tags, "table": table.name},
                       description, system_metrics=True)


def _flatten(params: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in params.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold SIGINT and SIGTERM until the block ends, then raise KeyboardInterrupt. An interrupt inside a
    store write leaves its SQLite transaction open, and ending the run KILLED then finds the database
    locked. (Python handlers, not a signal mask: the OS may deliver the signal to any of TensorFlow's threads.)"""
    if threading.current_thread() is not threading.main_thread():  # only the main thread may set handlers
        yield
        return
    received = []
    handlers = {number: signal.signal(number, lambda signum, frame: received.append(signum))
                for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for number, handler in handlers.items():
            signal.signal(number, handler)
        if received:
            raise KeyboardInterrupt(f"signal {received[0]}")


class EpochMetrics(keras.callbacks.Callback):
    """Logs every epoch's metrics, learning rate and seconds to the active run."""

    def on_epoch_end(self, epoch, logs=None):
        with signals_deferred():
            mlflow.log_metrics({key: float(value) for key, value in (logs or {}).items()}, step=epoch + 1)


def log_datasets(splits: dict[str, tuple[np.ndarray, np.ndarray, str]], source: str, dataset: str) -> None:
    """Log each split as an MLflow dataset (the runs table's *Dataset* column): its name, the archive it
    came from as source, and the DVC (md5) hash of its images file as digest."""
    if not source.startswith(("http://", "https://")):
        source = Path(source).expanduser().resolve().as_uri()
    for context, (images, labels, digest) in splits.items():
        with warnings.catch_warnings():
            # MLflow registers two equivalent local-file sources and says so on every call.
            warnings.filterwarnings("ignore", "The specified dataset source can be interpreted in multiple ways")
            logged = mlflow.data.from_numpy(images, source=source, targets=labels, name=f"{dataset}-{context}",
                                            digest=digest)
        mlflow.log_input(logged, context=context)


def log_model(model: keras.Model, example_images: np.ndarray, name: str = MODEL_ARTIFACT,
              run_id: str | None = None) -> str:
    """Log with the TensorFlow flavor, a signature and an input example (uint8 images) into the active
    run, or into run ``run_id`` without reopening it; return the logged model's URI."""
    import tensorflow as tf

    signature = infer_signature(example_images, model.predict(example_images, verbose=0))
    # Explicit requirements: MLflow's inference would reload the model in a subprocess.
    requirements = [f"tensorflow=={tf.__version__}", f"keras=={keras.__version__}", f"numpy=={np.__version__}"]
    return mlflow.tensorflow.log_model(model, name=name, signature=signature, input_example=example_images,
                                       pip_requirements=requirements, run_id=run_id).model_uri


def log_keras_model(model: keras.Model, example_images: np.ndarray) -> str | None:
    """The trained model, logged into the training run (:func:`log_model`); its URI.

    A store that refuses the upload gives one warning line and None: the caller has saved the model
    already, so the training, its metrics and the DVC output are kept; only the registry lacks it.
    """
    try:
        return log_model(model, example_images)
    except (mlflow.exceptions.MlflowException, OSError) as error:
        print(f"warning: the model is saved in models/ but MLflow did not take it ({' '.join(str(error).split())}); "
              f"`python -m src.promote` needs it: `dvc repro --force train@{model.name}` once the store works",
              file=sys.stderr)
        mlflow.set_tag("model_logged", "false")
        return None


def find_run(run_id: str):
    """The run in the current store, or None where this store never saw it."""
    try:
        return mlflow.MlflowClient().get_run(run_id)
    except mlflow.exceptions.MlflowException as error:
        if error.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return None
        raise


@contextlib.contextmanager
def evaluation_run(name: str, trained: dict, model_path: Path, dataset: str) -> Iterator[tuple[str, Run | None]]:
    """The id of the run to log test results into, without reopening it, and the training run (None where
    this store does not have it).

    Normally the training run: logging through the client leaves its status, start and end time the
    training's. If the current store does not have it (a fresh `mlflow.db`, another machine), a new run
    names the model it scores, so evaluation never forces a retrain for tracking reasons.
    """
    training = find_run(trained["run_id"])
    if training is not None:
        yield trained["run_id"], training
        return
    print(f"evaluate@{name}: training run {trained['run_id']} is not in {mlflow.get_tracking_uri()}; "
          "logging the test results into a new run that names it")
    params = {"architecture": name, "evaluated_run_id": trained["run_id"],
              "model_md5": files_md5([model_path]), "data_md5": trained.get("data_md5", "unknown")}
    with tracked_run(f"{name} (evaluation)", f"evaluate@{name}", dataset, params,
                     {"evaluated_run_id": trained["run_id"], "architecture": name}) as run:
        yield run.info.run_id, None


def log_evaluation(run_id: str, metrics: dict, tta: str, details: Path, classification_report: dict) -> None:
    client = mlflow.MlflowClient()
    now = int(time.time() * 1000)
    client.log_batch(run_id, metrics=[Metric(key, float(value), now, 0) for key, value in metrics.items()],
                     tags=[RunTag("tta", tta)])  # the test-time augmentation the test metrics were scored with
    client.log_artifacts(run_id, str(details), artifact_path="evaluation")
    client.log_dict(run_id, classification_report, "evaluation/classification_report.json")
