"""`dvc repro` in a temporary git copy of the repository, and the data stages on real CIFAR-10."""

import json
import shutil
import subprocess

import numpy as np
import pytest
import yaml

from tests.conftest import REAL_ARCHIVE, REAL_MD5, REPO, Project, set_param, stage_env

COPIED = ["dvc.yaml", "params.yaml", ".dvcignore", "src", ".dvc/config"]


def sh(cwd, *command, env=None) -> str:
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, env=stage_env(env))
    assert result.returncode == 0, f"{' '.join(command)} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout + result.stderr


def dvc_repo(root, params: dict):
    """A fresh git + DVC repository holding this project's pipeline and ``params``."""
    for name in COPIED:
        source, target = REPO / name, root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(source, target)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    sh(root, "git", "init", "-q")
    sh(root, "git", "-c", "user.name=t", "-c", "user.email=t@t", "add", "-A")
    sh(root, "git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init")
    return root


def scratch_params(tmp_path, archive) -> dict:
    """params.yaml as the repository has it, pointed at a generated archive."""
    (tmp_path / "scratch").mkdir(exist_ok=True)
    return Project(tmp_path / "scratch", archive).params


def ran_stages(output: str) -> list[str]:
    return sorted(line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage"))


def edit_params(root, **dotted_values):
    params = yaml.safe_load((root / "params.yaml").read_text())
    for dotted, value in dotted_values.items():
        set_param(params, dotted, value)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def test_dvc_repro_data_stages_caches_and_reruns_only_what_changed(tmp_path, cifar10_archive):
    root = dvc_repo(tmp_path / "repo", scratch_params(tmp_path, cifar10_archive))
    first = sh(root, "dvc", "repro", "split")
    assert ran_stages(first) == ["download", "preprocess", "split"]
    lock = yaml.safe_load((root / "dvc.lock").read_text())
    assert set(lock["stages"]) == {"download", "preprocess", "split"}

    again = sh(root, "dvc", "repro", "split")
    assert ran_stages(again) == [] and "up to date" in again

    edit_params(root, **{"split.seed": 7})
    status = sh(root, "dvc", "status", "split")
    assert "split:" in status and "download:" not in status and "preprocess:" not in status
    assert ran_stages(sh(root, "dvc", "repro", "split")) == ["split"]


def test_bad_params_stop_dvc_repro_before_any_work(tmp_path, cifar10_archive):
    root = dvc_repo(tmp_path / "repo", scratch_params(tmp_path, cifar10_archive))
    edit_params(root, **{"split.val_fraction": 1.5, "data.dataset": "imagenet"})
    result = subprocess.run(["dvc", "repro", "split"], cwd=root, capture_output=True, text=True, env=stage_env())
    assert result.returncode != 0
    assert "`data.dataset` is 'imagenet'" in result.stderr and "`split.val_fraction` is 1.5" in result.stderr
    assert not (root / "data" / "raw").exists() or not any((root / "data" / "raw").iterdir())


@pytest.mark.skipif(not REAL_ARCHIVE.exists(), reason="real CIFAR-10 archive not present")
def test_data_stages_on_real_cifar10(tmp_path):
    project = Project(tmp_path, None).set(**{"data.dataset": "cifar10", "data.source": str(REAL_ARCHIVE),
                                             "data.md5": REAL_MD5})
    for stage in ("download", "preprocess", "split"):
        project.run(stage)
    train = np.load(tmp_path / "data/processed/train_images.npy", mmap_mode="r")
    test_labels = np.load(tmp_path / "data/processed/test_labels.npy")
    assert train.shape == (50000, 32, 32, 3) and train.dtype == np.uint8
    assert test_labels.shape == (10000, 10) and (test_labels.sum(axis=0) == 1000).all()
    counts = json.loads((tmp_path / "data/split/class_counts.json").read_text())
    assert set(counts["train"].values()) == {4000} and set(counts["val"].values()) == {1000}
    assert float(train[:1000].mean()) == pytest.approx(120.7, abs=2)
