"""Shared fixtures: generated archives, a scratch project folder, and a stage runner."""

import copy
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from benchmarks.common import REAL_ARCHIVE, REAL_MD5, set_param  # noqa: F401  (tests import them from here)
from tests import cifar_fixtures

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def cifar10_archive(tmp_path_factory) -> Path:
    return cifar_fixtures.write_archive(tmp_path_factory.mktemp("c10") / "cifar-10-python.tar.gz",
                                        cifar_fixtures.cifar10_members())


@pytest.fixture(scope="session")
def cifar100_archive(tmp_path_factory) -> Path:
    return cifar_fixtures.write_archive(tmp_path_factory.mktemp("c100") / "cifar-100-python.tar.gz",
                                        cifar_fixtures.cifar100_members())


@pytest.fixture
def imagenet_unreachable(monkeypatch, tmp_path) -> None:
    """Keras fetches the VGG16 ImageNet weights from a closed local port, with no cached copy."""
    from src.architectures import blocks

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    name, _, md5 = blocks.VGG16_NOTOP
    monkeypatch.setattr(blocks, "VGG16_NOTOP", (name, f"http://127.0.0.1:{port}/{name}", md5))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))


def base_params() -> dict:
    return yaml.safe_load((REPO / "params.yaml").read_text())


# The fields a recipe must set; a test sets what it is about on top.
MINIMAL_RECIPE = {"optimizer": "adam", "learning_rate": 0.001, "batch_size": 32, "epochs": 1, "seed": 0}


def recipe(**fields):
    """A validated recipe (src/training/recipe.py), as params.yaml's sections reach the training code."""
    from src.training.recipe import Train

    return Train.model_validate({**MINIMAL_RECIPE, **fields})


def repository_recipe(name: str, **fields):
    """params.yaml's `train.NAME`, changed by ``fields``."""
    from src.training.recipe import Train

    return Train.model_validate({**base_params()["train"][name], "net": name, **fields})


class Project:
    """A scratch folder laid out like the repository root, where stages run as DVC runs them."""

    def __init__(self, root: Path, archive: Path | None):
        self.root = root
        self.params = copy.deepcopy(base_params())
        if archive is not None:
            dataset = "cifar100" if "100" in archive.name else "cifar10"
            # 2 % of a generated archive's 250 training images would leave some classes out of validation.
            self.set(**{"data.dataset": dataset, "data.source": str(archive),
                        "data.md5": cifar_fixtures.md5_of(archive), "split.val_fraction": 0.2})

    def set(self, **dotted_values) -> "Project":
        for dotted, value in dotted_values.items():
            set_param(self.params, dotted, value)
        (self.root / "params.yaml").write_text(yaml.safe_dump(self.params, sort_keys=False))
        return self

    def run(self, stage: str, *args: str, check: bool = True, env: dict | None = None) -> subprocess.CompletedProcess:
        (self.root / "params.yaml").write_text(yaml.safe_dump(self.params, sort_keys=False))
        result = subprocess.run([sys.executable, "-m", f"src.stages.{stage}", *args], cwd=self.root,
                                capture_output=True, text=True, env=stage_env(env))
        if check and result.returncode != 0:
            raise AssertionError(f"stage {stage} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
        return result

    def files(self, folder: str) -> list[str]:
        path = self.root / folder
        return sorted(p.name for p in path.iterdir()) if path.exists() else []


def stage_env(extra: dict | None = None) -> dict:
    """The environment a stage gets: the project's own default store (mlflow.db at the root the stage
    runs in) unless ``extra`` names one; mlflow.set_tracking_uri() in a test exports
    MLFLOW_TRACKING_URI to os.environ, and DVC_ROOT would anchor the store elsewhere."""
    inherited = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "DVC_ROOT")}
    return {**inherited, "PYTHONPATH": str(REPO), "PYTHONHASHSEED": "0", **(extra or {})}


@pytest.fixture
def project(tmp_path, cifar10_archive) -> Project:
    return Project(tmp_path, cifar10_archive)


@pytest.fixture
def make_project(tmp_path):
    def make(archive: Path | None, name: str = "project") -> Project:
        root = tmp_path / name
        root.mkdir()
        return Project(root, archive)

    return make


def git_project(root: Path, archive: Path, **dotted_values) -> Path:
    """A git repository of this project's files (the working tree's: tracked and untracked, less what git
    ignores) with params.yaml pointed at ``archive`` and set as ``dotted_values`` say, committed."""
    names = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                           check=True, capture_output=True, text=True).stdout.split("\0")
    for name in filter(None, names):
        if (REPO / name).is_file():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, root / name)
    params = base_params()
    dotted = {"data.source": str(archive), "data.md5": cifar_fixtures.md5_of(archive), "split.val_fraction": 0.2}
    for key, value in {**dotted, **dotted_values}.items():
        set_param(params, key, value)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    commit = ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "base"]
    for command in (["init", "-q"], ["add", "-A"], commit):
        subprocess.run(["git", *command], cwd=root, check=True, capture_output=True)
    return root


def start_train_stage(root: Path, *args: str) -> subprocess.Popen:
    """Start ``python -m src.stages.train ARGS`` in ``root`` as DVC would, its output in root/train.log:
    a file, not a pipe, since an unread pipe fills up and blocks the child's exit."""
    with (root / "train.log").open("w") as out:
        # SIGINT as in a terminal: a shell starts background jobs (CI's may be one) with it ignored.
        return subprocess.Popen([sys.executable, "-m", "src.stages.train", *args], cwd=root, stdout=out,
                                stderr=subprocess.STDOUT, env=stage_env(),
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def kill_once_backed_up(process: subprocess.Popen, backup: Path) -> int:
    """SIGKILL a training once its ``backup`` folder holds a finished epoch; the epochs it holds."""
    progress = backup / "progress.json"
    deadline = time.monotonic() + 300
    while not progress.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    process.kill()
    process.wait(timeout=30)
    return len(json.loads(progress.read_text())["epochs"])


def assert_one_error_line(result: subprocess.CompletedProcess, *fragments: str) -> str:
    """The stage failed with exit code 2 and one `error:` line containing every fragment."""
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in result.stderr, result.stderr
    for fragment in fragments:
        assert fragment in errors[0], (fragment, errors[0])
    return errors[0]
