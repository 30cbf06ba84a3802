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
from src.core.errors import PipelineError
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
        "reports/eval/elu3.json": {"test_accuracy_tta": 0.60, "test_loss": 1.1},
        "reports/eval/strided2.json": {"test_accuracy_tta": 0.50, "test_loss": 1.4},
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
        "reports/eval/elu3.json": {"test_accuracy_tta": 0.65, "test_loss": 1.0},
        "reports/eval/strided2.json": None, "reports/train/strided2.json": None,
        "reports/eval/vgg6.json": {"test_accuracy_tta": 0.70, "test_loss": 0.9},
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


def table(text: str, title: str) -> list[list[str]]:
    """The cells of the Markdown table that follows the heading ``title``, header row first."""
    lines = text.split(f"### {title}", 1)[1].split("\n\n")[1].splitlines()
    assert all(line.startswith("|") and line.endswith("|") for line in lines), lines
    assert set(lines[1]) <= set("|:-"), lines[1]  # the rule under the header
    return [[cell.strip() for cell in line[1:-1].split(" | ")] for line in lines[:1] + lines[2:]]


def row(text: str, title: str, first_cell: str) -> list[str]:
    return next(cells for cells in table(text, title) if cells[0] == first_cell)


def test_params_table_shows_changed_keys_with_both_values(comment):
    params = table(comment, "Params")
    assert params[0] == ["param", "base", "new"]
    assert params[1:] == [["`architectures`", "`['elu3', 'strided2']`", "`['elu3', 'vgg6']`"],
                          ["`train.elu3.epochs`", "`1`", "`2`"],
                          ["`train.vgg6.epochs`", "–", "`1`"]]  # unchanged params stay out
    assert "### Params (3 changed)" in comment


def test_accuracy_table_has_deltas_in_points_and_new_and_removed_architectures(comment):
    assert table(comment, "Accuracy per architecture")[0] == [
        "architecture", "test accuracy (base)", "test accuracy (new)", "Δ test",
        "val accuracy (base)", "val accuracy (new)", "Δ val"]
    assert row(comment, "Accuracy per architecture", "elu3") == [
        "elu3", "60.00 %", "65.00 %", "+5.00 pp", "58.00 %", "58.00 %", "+0.00 pp"]
    assert row(comment, "Accuracy per architecture", "strided2 (removed)") == [
        "strided2 (removed)", "50.00 %", "–", "–", "48.00 %", "–", "–"]
    assert row(comment, "Accuracy per architecture", "vgg6 (new)") == [
        "vgg6 (new)", "–", "70.00 %", "–", "–", "69.00 %", "–"]
    assert "New architectures: `vgg6`. Removed architectures: `strided2`." in comment


def test_one_architecture_per_side_is_still_named(repo, tmp_path):
    """DVC's metrics_show would merge a lone file's keys unnamed; the report reads each file."""
    one = tmp_path / "one"
    shutil.copytree(repo, one)
    sh(one, "git", "checkout", "-q", "-b", "only-elu3", "main")
    write(one, {"reports/eval/strided2.json": None, "reports/train/strided2.json": None,
                "reports/eval/elu3.json": {"test_accuracy_tta": 0.62}})
    commit(one, "elu3 alone")
    assert pr_report.accuracies(one, "HEAD") == {"elu3": {"test": (0.62, 0.62), "val": (0.58, 0.58)}}
    assert pr_report.accuracies(one, "main") == {
        "elu3": {"test": (0.60, 0.62), "val": (0.58, 0.58)},
        "strided2": {"test": (0.50, None), "val": (0.48, None)}}


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


def test_unreadable_params_are_one_error_line(repo, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(repo, broken)
    (broken / "params.yaml").write_text("train: [unclosed\n")
    assert_one_error_line(run_cli(broken, "--base", "main"), "DVC cannot read the params to compare",
                          "params.yaml")


def test_unknown_rev_in_dvc_is_a_pipeline_error(repo):
    with pytest.raises(PipelineError, match="DVC cannot read the metrics at no-such-rev"):
        pr_report.accuracies_at(repo, "no-such-rev")


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
