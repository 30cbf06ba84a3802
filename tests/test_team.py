"""Working as a team, end to end with real servers on 127.0.0.1 (scripts/team_stack.py): a DVC remote on
S3 object storage (SeaweedFS) and an MLflow tracking server on PostgreSQL with its artifacts in the same
bucket. Clone A reproduces and pushes; clone B pulls, reproduces nothing, and evaluates into A's run.
Faults: the tracking server restarting during a training, unreachable at the start, the remote
unreachable on `dvc push`.
"""

import contextlib
import hashlib
import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

from scripts import team_stack
from tests.conftest import Project, assert_one_error_line, stage_env
from tests.test_dvc_pipeline import edit_params, ran_stages, tiny_repo

RESTART_EPOCHS = 6
HISTORY_KEYS = ["loss", "accuracy", "val_loss", "val_accuracy", "learning_rate", "epoch_seconds"]


@pytest.fixture(scope="session")
def stack(request):
    """The three servers, on free ports, with their data in one folder; stopped and removed at the end."""
    if not team_stack.postgres_available():
        reason = f"PostgreSQL 15 is not installed ({team_stack.PG_BIN / 'pg_ctl'} missing)"
        print(f"skipping the team stack tests: {reason}")
        pytest.skip(reason)
    # Not under pytest's tmp folder: that is private to root, and PostgreSQL runs as `postgres`.
    folder = Path(tempfile.mkdtemp(prefix="team-stack-"))
    folder.chmod(0o711)
    started = {}

    def teardown():
        team_stack.stop(folder / "stack", started.get("stack"), grace=2)
        shutil.rmtree(folder, ignore_errors=True)

    request.addfinalizer(teardown)
    started["stack"] = team_stack.start(folder / "stack")
    return started["stack"]


def env_for(uri: str | None) -> dict:
    """A stage's environment with MLFLOW_TRACKING_URI set and no AWS credentials: DVC must take its
    from .dvc/config.local, and MLflow's clients need none (the server proxies the artifacts)."""
    env = stage_env({"MLFLOW_TRACKING_URI": uri} if uri else None)
    return {k: v for k, v in env.items() if not k.startswith("AWS_") and k != "MLFLOW_S3_ENDPOINT_URL"}


def run(cwd, *command: str, env: dict, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, env=env)
    if check:
        assert result.returncode == 0, f"{' '.join(command)} failed:\n{result.stdout}\n{result.stderr}"
    return result


def git(cwd, *args: str) -> str:
    return run(cwd, "git", "-c", "user.name=t", "-c", "user.email=t@t", *args, env=stage_env()).stdout


def configure_remote(root: Path, stack, env: dict, shared: bool = True) -> None:
    """What each team member runs once: the remote (committed, by one of them) and their credentials."""
    commands = stack.dvc_remote_commands()
    for command in commands if shared else commands[2:]:
        run(root, *command, env=env)


def client(stack):
    import mlflow

    return mlflow.MlflowClient(tracking_uri=stack.tracking_uri)


@contextlib.contextmanager
def tracking_to(uri: str):
    """mlflow's global tracking URI (and the MLFLOW_TRACKING_URI it exports) set for a block only."""
    import mlflow
    from mlflow.tracking._tracking_service import utils

    saved_uri, saved_env = utils._tracking_uri, os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(saved_uri)
        os.environ.pop("MLFLOW_TRACKING_URI", None)
        if saved_env is not None:
            os.environ["MLFLOW_TRACKING_URI"] = saved_env


def workspace_digest(root: Path) -> dict[str, str]:
    skip = (".git", ".dvc/tmp", ".dvc/cache")
    return {str(p.relative_to(root)): hashlib.md5(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*"))
            if p.is_file() and not str(p.relative_to(root)).startswith(skip)}


def run_json(root: Path) -> dict:
    return json.loads((root / "models/elu3.run.json").read_text())


@pytest.fixture(scope="module")
def clone_a(stack, tmp_path_factory, cifar10_archive):
    """Clone A: `dvc repro` tracked on the server, `dvc push` to the S3 remote, everything committed."""
    root = tiny_repo(tmp_path_factory.mktemp("team"), cifar10_archive, ["elu3"], folder="a")
    env = env_for(stack.tracking_uri)
    configure_remote(root, stack, env)
    repro = run(root, "dvc", "repro", env=env).stdout
    started = time.perf_counter()
    push = run(root, "dvc", "push", env=env).stdout
    print(f"clone A: dvc push {time.perf_counter() - started:.1f} s: {push.strip().splitlines()[-1]}")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "reproduced")
    return root, repro, push


@pytest.fixture(scope="module")
def clone_b(stack, clone_a, tmp_path_factory):
    """Clone B: a fresh `git clone` of A with its own credentials, then `dvc pull`."""
    a, _, _ = clone_a
    root = tmp_path_factory.mktemp("team") / "b"
    run(a.parent, "git", "clone", "-q", str(a), str(root), env=stage_env())
    env = env_for(stack.tracking_uri)
    configure_remote(root, stack, env, shared=False)
    started = time.perf_counter()
    pull = run(root, "dvc", "pull", env=env).stdout
    print(f"clone B: dvc pull {time.perf_counter() - started:.1f} s")
    return root, pull


def test_clone_a_tracks_every_run_on_the_server_and_pushes_to_s3(stack, clone_a):
    root, repro, push = clone_a
    assert ran_stages(repro) == ["download", "evaluate@elu3", "preprocess", "report", "split", "train@elu3"]
    assert "pushed" in push
    # The remote in .dvc/config (committed), the credentials only in .dvc/config.local (never committed).
    config, local = (root / ".dvc/config").read_text(), (root / ".dvc/config.local").read_text()
    assert stack.dvc_url in config and stack.s3_endpoint in config and stack.secret_key not in config
    assert stack.secret_key in local and ".dvc/config.local" not in git(root, "ls-files")
    assert "are in sync" in run(root, "dvc", "status", "--cloud", env=env_for(None)).stdout

    trained = run_json(root)
    assert trained["tracking_uri"] == stack.tracking_uri
    mlflow_client = client(stack)
    experiment = mlflow_client.get_experiment_by_name("cifar10")
    runs = mlflow_client.search_runs([experiment.experiment_id])
    assert [r.info.run_id for r in runs] == [trained["run_id"]]  # evaluate logged into the training run
    tracked = runs[0]
    assert tracked.info.status == "FINISHED" and tracked.data.tags["dvc_stage"] == "train@elu3"
    test_metrics = json.loads((root / "reports/eval/elu3.json").read_text())
    assert tracked.data.metrics["test_accuracy"] == pytest.approx(test_metrics["test_accuracy"])
    assert [m.step for m in mlflow_client.get_metric_history(trained["run_id"], "val_accuracy")] == [1]
    artifacts = {a.path for a in mlflow_client.list_artifacts(trained["run_id"], "evaluation")}
    assert "evaluation/confusion_matrix.png" in artifacts
    assert tracked.info.artifact_uri.startswith("mlflow-artifacts:")  # proxied by the server, stored in S3

    import mlflow

    images = np.load(root / "data/processed/test_images.npy")[:5]
    with tracking_to(stack.tracking_uri):
        predicted = mlflow.pyfunc.load_model(trained["model_uri"]).predict(images)
    expected = [line.split(",")[2] for line in (root / "reports/predictions/elu3.csv").read_text().splitlines()[1:6]]
    classes = json.loads((root / "data/processed/classes.json").read_text())["class_names"]
    assert [classes[i] for i in np.asarray(predicted).argmax(axis=1)] == expected

    keys = [o["Key"] for o in team_stack.s3_client(stack).list_objects_v2(Bucket=team_stack.BUCKET)["Contents"]]
    assert any(k.startswith(f"{team_stack.DVC_PREFIX}/files/md5/") for k in keys)
    assert any(k.startswith(f"{team_stack.ARTIFACTS_PREFIX}/") and k.endswith("confusion_matrix.png") for k in keys)


def test_clone_b_pulls_and_reproduces_nothing(stack, clone_a, clone_b):
    a, b = clone_a[0], clone_b[0]
    env = env_for(stack.tracking_uri)
    assert (b / "models/elu3.keras").read_bytes() == (a / "models/elu3.keras").read_bytes()
    assert "up to date" in run(b, "dvc", "status", env=env).stdout
    repro = run(b, "dvc", "repro", env=env).stdout
    assert ran_stages(repro) == [], repro
    shown = {root: json.loads(run(root, "dvc", "metrics", "show", "--json", env=env).stdout) for root in (a, b)}
    assert shown[a] == shown[b] and "reports/eval/elu3.json" in json.dumps(shown[b])


def test_evaluating_in_b_logs_into_the_run_a_trained(stack, clone_b):
    b = clone_b[0]
    run_id = run_json(b)["run_id"]
    before = client(stack).get_run(run_id)
    edit_params(b, **{"evaluate.batch_size": 16})
    repro = run(b, "dvc", "repro", env=env_for(stack.tracking_uri)).stdout
    stages = ran_stages(repro)
    print(f"clone B, evaluate.batch_size 16: ran {stages}")
    assert "evaluate@elu3" in stages and set(stages) <= {"evaluate@elu3", "report"}, repro
    after = client(stack).get_run(run_id)
    assert after.info.status == "FINISHED" and after.info.end_time == before.info.end_time
    assert len(client(stack).get_metric_history(run_id, "test_accuracy")) == 2  # A's evaluation, then B's
    assert after.data.metrics["test_accuracy"] == pytest.approx(
        json.loads((b / "reports/eval/elu3.json").read_text())["test_accuracy"])


def scratch_project(root: Path, archive: Path, clone: Path, **dotted) -> Project:
    """A stage folder (as DVC runs stages) holding clone's data stages' outputs."""
    root.mkdir()
    project = Project(root, archive).set(**dotted)
    for folder in ("data/processed", "data/split"):
        shutil.copytree(clone / folder, root / folder)
    return project


def test_training_survives_a_tracking_server_restart(stack, clone_a, cifar10_archive, tmp_path):
    project = scratch_project(tmp_path / "restart", cifar10_archive, clone_a[0],
                              **{"train.elu3.epochs": RESTART_EPOCHS, "train.elu3.batch_size": 50})
    command = [sys.executable, "-m", "src.stages.train", "elu3"]
    process = subprocess.Popen(command, cwd=project.root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, env=env_for(stack.tracking_uri))
    lines, stopped_at, restarted = [], None, None
    for line in process.stdout:
        lines.append((time.perf_counter(), line.rstrip()))
        if stopped_at is None and f"elu3 epoch 1/{RESTART_EPOCHS}" in line:
            stopped_at, started = time.time(), time.perf_counter()
            team_stack.stop_mlflow(stack)
            team_stack.start_mlflow(stack)  # same port, same PostgreSQL store
            restarted = time.perf_counter() - started
    output = "\n".join(text for _, text in lines)
    assert process.wait() == 0 and restarted is not None, output
    epochs = [t for t, text in lines if " epoch " in text]
    gaps = [round(later - earlier, 1) for earlier, later in itertools.pairwise(epochs)]
    print(f"tracking server down for {restarted:.1f} s; seconds between epoch lines: {gaps}")

    trained = run_json(project.root)
    mlflow_client = client(stack)
    tracked = mlflow_client.get_run(trained["run_id"])
    # The run went on through the restart: it started before the server stopped and ended after.
    assert tracked.info.status == "FINISHED"
    assert tracked.info.start_time / 1000 < stopped_at < tracked.info.end_time / 1000
    for key in HISTORY_KEYS:
        steps = sorted({m.step for m in mlflow_client.get_metric_history(trained["run_id"], key)})
        assert steps == list(range(1, RESTART_EPOCHS + 1)), (key, steps, output)
    history = (project.root / "reports/history/elu3.csv").read_text().splitlines()
    assert len(history) == RESTART_EPOCHS + 1


def test_unreachable_tracking_server_fails_at_once(clone_a, cifar10_archive, tmp_path):
    project = scratch_project(tmp_path / "down", cifar10_archive, clone_a[0])
    closed = team_stack.free_ports(1)[0]
    started = time.perf_counter()
    result = project.run("train", "elu3", check=False, env={"MLFLOW_TRACKING_URI": f"http://127.0.0.1:{closed}"})
    elapsed = time.perf_counter() - started
    assert_one_error_line(result, "MLFLOW_TRACKING_URI", f"127.0.0.1:{closed}")
    assert elapsed < 20, elapsed  # the /health check, not MLflow's minutes of retries
    assert project.files("models") == [] and project.files("reports") == []


def test_unreachable_remote_fails_push_and_keeps_the_workspace(stack, clone_a):
    root = clone_a[0]
    env = env_for(stack.tracking_uri)
    (root / "notes.bin").write_bytes(os.urandom(100_000))  # something the remote does not have yet
    run(root, "dvc", "add", "notes.bin", env=env)
    before = workspace_digest(root)
    closed = team_stack.free_ports(1)[0]
    run(root, "dvc", "remote", "modify", "--local", team_stack.REMOTE, "endpointurl",
        f"http://127.0.0.1:{closed}", env=env)
    started = time.perf_counter()
    failed = run(root, "dvc", "push", env=env, check=False)
    elapsed = time.perf_counter() - started
    print(f"dvc push to a closed port: exit {failed.returncode} after {elapsed:.1f} s: {failed.stderr.strip()}")
    run(root, "dvc", "remote", "modify", "--local", "--unset", team_stack.REMOTE, "endpointurl", env=env)
    assert failed.returncode != 0 and "ERROR" in failed.stderr, (failed.stdout, failed.stderr)
    assert workspace_digest(root) == before
    assert "up to date" in run(root, "dvc", "status", env=env).stdout
    pushed = run(root, "dvc", "push", env=env).stdout  # the remote is back: the same push goes through
    assert "1 file pushed" in pushed, pushed
