"""python -m src.prove_unchanged: a change that leaves results alone is proven so, one that does not is named."""

import subprocess
import sys

import pytest

from tests import cifar_fixtures
from tests.conftest import assert_one_error_line, git_project, stage_env


def sh(root, *command, check=True):
    result = subprocess.run(command, cwd=root, capture_output=True, text=True, env=stage_env({"PYTHONPATH": ""}))
    if check and result.returncode != 0:
        raise AssertionError(f"{command} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    """A git repository of this project's files on a generated archive, data stages run, every lock entry
    recorded for the code as it is (outputs not here keep their hashes), committed."""
    root = tmp_path_factory.mktemp("prove")
    archive = cifar_fixtures.write_archive(root.parent / "c10.tar.gz", cifar_fixtures.cifar10_members())
    git_project(root, archive)
    sh(root, "dvc", "repro", "-q", "split")
    sh(root, sys.executable, "-c", "from src.prove_unchanged import commit; commit()")
    sh(root, "git", "add", "-A")
    sh(root, "git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "data and locks")
    return root


def prove(root, *args, check=False):
    return sh(root, sys.executable, "-m", "src.prove_unchanged", "--images", "128", "--epochs", "2", *args,
              check=check)


def verdicts(result) -> dict[str, str]:
    return {words[0]: words[1] for words in map(str.split, result.stdout.splitlines())
            if len(words) > 1 and words[1] in ("identical", "DIFFERENT:")}


def test_a_comment_in_one_net_is_proven_unchanged_on_exactly_its_stages_and_committed(repo):
    net = repo / "src/architectures/elu3.py"
    net.write_text(net.read_text() + "# a comment changes no weight\n")
    try:
        result = prove(repo, "--commit", check=True)
        assert verdicts(result) == {"train@elu3": "identical", "seeds/dvc.yaml:train@elu3": "identical"}
        status = sh(repo, "dvc", "status", "--json", "train@elu3", "seeds/dvc.yaml:train@elu3").stdout
        assert "src/architectures/elu3.py" not in status  # committed: the lock records the new code
    finally:
        sh(repo, "git", "checkout", "--", ".")


def test_a_comment_in_training_is_identical_and_a_changed_default_is_named(repo):
    training = repo / "src/training/fit.py"
    training.write_text(training.read_text() + "# a comment changes no weight\n")
    result = prove(repo, "train@elu3", "seeds/dvc.yaml:train@strided2", check=True)
    assert verdicts(result) == {"train@elu3": "identical", "seeds/dvc.yaml:train@strided2": "identical"}
    assert result.stdout.splitlines()[-1] == "prove_unchanged: all 2 identical"

    schema = repo / "src/training/recipe.py"
    schema.write_text(schema.read_text().replace("label_smoothing: Fraction = 0.0", "label_smoothing: Fraction = 0.1"))
    try:
        result = prove(repo, "train@elu3", "seeds/dvc.yaml:train@strided2")
        assert result.returncode == 1, result.stdout + result.stderr
        found = verdicts(result)
        assert found["train@elu3"] == found["seeds/dvc.yaml:train@strided2"] == "DIFFERENT:"
        # the schema is the data stages' code too: their outputs are compared, and unchanged
        assert {found[stage] for stage in found if "train@" not in stage} <= {"identical"}
        assert "retrain them with `dvc repro`" in result.stdout
        assert "models/elu3.keras" in result.stdout
    finally:
        sh(repo, "git", "checkout", "--", ".")


def test_a_stage_that_is_no_training_or_a_bad_base_is_one_error_line(repo):
    assert_one_error_line(prove(repo, "evaluate@elu3"), "not a training stage", "evaluate@elu3")
    assert_one_error_line(prove(repo, "--base", "no-such-rev", "train@elu3"), "--base 'no-such-rev'")
