"""`python -m src.pr_report` in a temporary git + DVC repository with two commits, and actionlint on the workflow."""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from src import pr_report
from src.errors import PipelineError
from tests.conftest import REPO, assert_one_error_line, stage_env

PNG = b"\x89PNG\r\n\x1a\n"
WORKFLOW = REPO / ".github" / "workflows" / "pr-report.yml"


def sh(cwd: Path, *command: str) -> str:
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, env=stage_env({"DVC_NO_ANALYTICS": "1"}))
    assert result.returncode == 0, f"{' '.join(command)} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def commit(root: Path, message: str) -> None:
    sh(root, "git", "add", "-A")
    sh(root, "git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", message)


def write(root: Path, files: dict[str, object]) -> None:
    """Write each file: dicts as JSON (params.yaml as YAML), bytes as they are; None deletes it."""
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if content is None:
            path.unlink()
        elif isinstance(content, bytes):
            path.write_bytes(content)
        elif name.endswith(".yaml"):
            path.write_text(yaml.safe_dump(content, sort_keys=False))
        else:
            path.write_text(json.dumps(content))


def run_cli(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "src.pr_report", *args], cwd=root, capture_output=True, text=True,
                          env=stage_env({"DVC_NO_ANALYTICS": "1"}))


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    """main: elu3 60 %, strided2 50 %. Workspace (branch feature + one untracked figure): elu3 65 % after
    train.elu3.epochs 1 -> 2, strided2 removed, vgg6 70 % added, one figure changed, one deleted, one new."""
    root = tmp_path_factory.mktemp("pr") / "repo"
    root.mkdir()
    sh(root, "git", "init", "-q", "-b", "main")
    sh(root, "dvc", "init", "-q")
    (root / "dvc.yaml").write_text("metrics:\n  - reports/train\n  - reports/eval\n")
    write(root, {
        "params.yaml": {"architectures": ["elu3", "strided2"],
                        "train": {"elu3": {"epochs": 1, "batch_size": 50}, "strided2": {"epochs": 1}}},
        "reports/eval/elu3.json": {"test_accuracy": 0.60, "test_loss": 1.1},
        "reports/eval/strided2.json": {"test_accuracy": 0.50, "test_loss": 1.4},
        "reports/train/elu3.json": {"val_accuracy": 0.58},
        "reports/train/strided2.json": {"val_accuracy": 0.48},
        "reports/figures/learning_curves.png": PNG + b"base",
        "reports/figures/confusion_strided2.png": PNG + b"strided2",
        "reports/figures/samples_best.png": PNG + b"unchanged",
    })
    commit(root, "base")
    sh(root, "git", "checkout", "-q", "-b", "feature")
    write(root, {
        "params.yaml": {"architectures": ["elu3", "vgg6"],
                        "train": {"elu3": {"epochs": 2, "batch_size": 50}, "strided2": {"epochs": 1},
                                  "vgg6": {"epochs": 1}}},
        "reports/eval/elu3.json": {"test_accuracy": 0.65, "test_loss": 1.0},
        "reports/eval/strided2.json": None, "reports/train/strided2.json": None,
        "reports/eval/vgg6.json": {"test_accuracy": 0.70, "test_loss": 0.9},
        "reports/train/elu3.json": {"val_accuracy": 0.58},
        "reports/train/vgg6.json": {"val_accuracy": 0.69},
        "reports/figures/learning_curves.png": PNG + b"changed",
        "reports/figures/confusion_strided2.png": None,
    })
    commit(root, "change")
    write(root, {"reports/figures/confusion_vgg6.png": PNG + b"vgg6"})  # untracked, as `dvc repro` leaves it
    return root


@pytest.fixture(scope="module")
def comment(repo) -> str:
    result = run_cli(repo, "--base", "main", "--output", "pr-comment.md")
    assert result.returncode == 0, result.stderr
    assert "-> pr-comment.md" in result.stdout
    return (repo / "pr-comment.md").read_text()


def row(text: str, first_cell: str) -> str:
    return next(line for line in text.splitlines() if line.startswith(f"| {first_cell} |"))


def test_params_table_shows_changed_keys_with_both_values(comment):
    assert row(comment, "`train.elu3.epochs`") == "| `train.elu3.epochs` | `1` | `2` |"
    assert row(comment, "`train.vgg6.epochs`") == "| `train.vgg6.epochs` | – | `1` |"
    assert "`['elu3', 'strided2']`" in row(comment, "`architectures`")
    assert "batch_size" not in comment and "train.strided2" not in comment  # unchanged params stay out


def test_accuracy_table_has_deltas_in_points_and_new_and_removed_architectures(comment):
    elu3 = row(comment, "elu3")
    assert "| 60.00 % | 65.00 % | +5.00 pp |" in elu3 and "| 58.00 % | 58.00 % | +0.00 pp |" in elu3
    assert row(comment, "strided2 (removed)").startswith("| strided2 (removed) | 50.00 % | – | – |")
    assert row(comment, "vgg6 (new)").startswith("| vgg6 (new) | – | 70.00 % | – |")
    assert "New architectures: `vgg6`. Removed architectures: `strided2`." in comment


def test_changed_figures_are_embedded_with_paths_cml_uploads(comment, repo):
    embedded = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", comment)
    assert embedded == ["reports/figures/confusion_vgg6.png", "reports/figures/learning_curves.png"]
    for link in embedded:  # cml comment create resolves them against the comment's folder
        assert (repo / link).read_bytes().startswith(PNG)
    assert "Deleted figures: `reports/figures/confusion_strided2.png`." in comment


def test_stdout_without_output_and_links_relative_to_the_output_folder(repo, comment):
    printed = run_cli(repo, "--base", "main")
    assert printed.returncode == 0 and printed.stdout == comment
    nested = run_cli(repo, "--base", "main", "--output", "out/comment.md")
    assert nested.returncode == 0, nested.stderr
    assert "![learning_curves.png](../reports/figures/learning_curves.png)" in (repo / "out/comment.md").read_text()


def test_unknown_base_is_one_error_line(repo):
    assert_one_error_line(run_cli(repo, "--base", "no-such-branch"), "base revision 'no-such-branch' is unknown",
                          "git fetch")


def test_outside_a_git_repository_is_one_error_line(tmp_path):
    assert_one_error_line(run_cli(tmp_path, "--base", "main"), "is not inside a git repository")


def test_missing_dvc_is_a_pipeline_error(monkeypatch):
    monkeypatch.setattr(pr_report.shutil, "which", lambda name: None)
    monkeypatch.setattr(pr_report.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(PipelineError, match="dvc is not installed"):
        pr_report.dvc_command()


def test_workflow_passes_actionlint_and_runs_this_command():
    beside_python = Path(sys.executable).parent / "actionlint"
    actionlint = str(beside_python) if beside_python.exists() else shutil.which("actionlint")
    assert actionlint, "actionlint is not installed: pip install -r requirements-dev.txt"
    result = subprocess.run([actionlint, str(WORKFLOW.relative_to(REPO))], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr
    text = WORKFLOW.read_text()
    for step in ("fetch-depth: 0", "pull-requests: write", "dvc pull", "dvc repro",
                 'python -m src.pr_report --base "origin/$BASE_REF" --output pr-comment.md',
                 "cml comment create pr-comment.md", "REPO_TOKEN: ${{ secrets.GITHUB_TOKEN }}"):
        assert step in text, step
