"""DVC experiments keep their MLflow runs: queued, parallel and temporary runs land in the root store,
and evaluation never reopens, fails or forces a retrain of the training run."""

import json
import shutil
import time

import mlflow
import pytest

from tests.conftest import stage_env
from tests.test_dvc_pipeline import edit_params, ran_stages, sh, tiny_repo

QUEUE_SECONDS = 900


@pytest.fixture(scope="module")
def baseline(tmp_path_factory, cifar10_archive):
    """A committed one-architecture pipeline after `dvc repro`, to copy per test."""
    root = tiny_repo(tmp_path_factory.mktemp("experiments"), cifar10_archive, ["elu3"])
    sh(root, "git", "config", "user.name", "t")
    sh(root, "git", "config", "user.email", "t@t")
    sh(root, "dvc", "repro")
    sh(root, "git", "add", "-A")
    sh(root, "git", "commit", "-qm", "baseline")
    return root


def copy_of(baseline, tmp_path):
    root = tmp_path / "repo"
    shutil.copytree(baseline, root, symlinks=True)
    return root


def client_of(root) -> mlflow.MlflowClient:
    return mlflow.MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")


def runs(root, stage="train@elu3"):
    client = client_of(root)
    experiment = client.get_experiment_by_name("cifar10")
    return client.search_runs([experiment.experiment_id], filter_string=f"tags.dvc_stage = '{stage}'")


def wait_for_queue(root):
    deadline = time.monotonic() + QUEUE_SECONDS
    while True:
        status = sh(root, "dvc", "queue", "status")
        if not any(word in status for word in ("Queued", "Running")):
            return status
        assert time.monotonic() < deadline, status
        time.sleep(2)


def test_queued_parallel_and_temporary_experiments_land_in_the_root_store(baseline, tmp_path):
    root = copy_of(baseline, tmp_path)
    # A fresh store: the first queue workers race to create its schema and the experiment.
    (root / "mlflow.db").unlink()
    shutil.rmtree(root / "mlruns")
    baseline_rev = sh(root, "git", "rev-parse", "HEAD").strip()

    sh(root, "dvc", "exp", "run", "--queue", "-S", "train.elu3.learning_rate=0.002,0.0005")
    sh(root, "dvc", "queue", "start", "-j", "2")
    status = wait_for_queue(root)
    assert status.count("Success") == 2, status + "".join(
        sh(root, "dvc", "queue", "logs", line.split()[0]) for line in status.splitlines() if "Failed" in line)
    sh(root, "dvc", "exp", "run", "--temp", "-S", "train.elu3.learning_rate=0.003")

    names = set(sh(root, "dvc", "exp", "ls", "--name-only").split())
    trained = runs(root)
    assert len(names) == 3 and {r.data.tags["dvc_exp_name"] for r in trained} == names
    assert sorted(float(r.data.params["learning_rate"]) for r in trained) == [0.0005, 0.002, 0.003]
    for run in trained:
        assert run.info.status == "FINISHED"
        assert run.data.tags["dvc_exp_baseline_rev"] == baseline_rev
        assert "test_accuracy_tta" in run.data.metrics  # evaluate@elu3 found the run in the same store
        assert run.info.artifact_uri.startswith((root / "mlruns").as_uri()), run.info.artifact_uri
        [dataset_input, _] = sorted(run.inputs.dataset_inputs, key=lambda d: d.dataset.name)
        assert dataset_input.dataset.name == "cifar10-training" and len(dataset_input.dataset.digest) == 32
    experiment = client_of(root).get_experiment_by_name("cifar10")
    assert experiment.artifact_location == (root / "mlruns").as_uri()
    assert list((root / ".dvc/tmp").rglob("mlflow.db")) == []


def test_fresh_store_and_new_evaluate_params_rerun_only_evaluation(baseline, tmp_path):
    root = copy_of(baseline, tmp_path)
    original = json.loads((root / "models/elu3.run.json").read_text())["run_id"]
    (root / "mlflow.db").unlink()
    shutil.rmtree(root / "mlruns")
    edit_params(root, **{"evaluate.batch_size": 7})

    output = sh(root, "dvc", "repro")
    assert set(ran_stages(output)) <= {"evaluate@elu3", "report"} and "evaluate@elu3" in ran_stages(output)
    assert f"training run {original} is not in" in output
    [run] = runs(root, "evaluate@elu3")
    assert run.info.status == "FINISHED" and run.data.tags["evaluated_run_id"] == original
    assert run.data.params["model_md5"] and run.data.params["architecture"] == "elu3"
    metrics = json.loads((root / "reports/eval/elu3.json").read_text())
    assert run.data.metrics["test_accuracy_tta"] == pytest.approx(metrics["test_accuracy_tta"])


@pytest.mark.parametrize("fresh_store", [False, True])
def test_failed_evaluation_leaves_the_training_run_as_it_was(baseline, tmp_path, monkeypatch, fresh_store):
    root = copy_of(baseline, tmp_path)
    run_id = json.loads((root / "models/elu3.run.json").read_text())["run_id"]
    if fresh_store:  # before any client opens it: a cached engine would keep reading the deleted file
        (root / "mlflow.db").unlink()
    else:
        before = client_of(root).get_run(run_id).info
    eval_before = (root / "reports/eval/elu3.json").read_text()

    from src.core import tracking
    from src.stages import evaluate

    def broken(*args, **kwargs):
        raise RuntimeError("artifact store went away")

    for name, value in stage_env().items():
        monkeypatch.setenv(name, value)
    for name in ("MLFLOW_TRACKING_URI", "DVC_ROOT"):  # an earlier test's mlflow.set_tracking_uri exports the first
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(root)
    monkeypatch.setattr(tracking, "log_evaluation", broken)
    with pytest.raises(RuntimeError, match="artifact store went away"):
        evaluate.main(["elu3"])

    assert (root / "reports/eval/elu3.json").read_text() == eval_before
    assert not list((root / "reports/details").glob(".*partial*"))
    if fresh_store:
        [failed] = runs(root, "evaluate@elu3")
        assert failed.info.status == "FAILED" and failed.data.tags["evaluated_run_id"] == run_id
    else:
        after = client_of(root).get_run(run_id).info
        assert (after.status, after.start_time, after.end_time) == ("FINISHED", before.start_time, before.end_time)
