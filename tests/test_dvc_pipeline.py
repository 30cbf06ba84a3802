"""`dvc repro` in a temporary git copy of the repository, and the data stages on real CIFAR-10."""

import json
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
import yaml

from src.training import cpu
from tests.conftest import (
    REAL_ARCHIVE,
    REAL_MD5,
    REPO,
    Project,
    assert_one_error_line,
    git_project,
    set_param,
    stage_env,
)

COPIED = ["dvc.yaml", "params.yaml", ".dvcignore", ".gitignore", "src", ".dvc/config", ".dvc/.gitignore",
          "seeds/dvc.yaml", "seeds/notebooks"]


def sh(cwd, *command, env=None) -> str:
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, env=stage_env(env))
    assert result.returncode == 0, f"{' '.join(command)} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout + result.stderr


def dvc_json(root, *command) -> dict:
    """`dvc COMMAND --json`'s output. DVC warns on stderr about the seed table's metrics and plots where
    seeds/dvc.yaml has not run; those are the only errors these repositories may show."""
    result = subprocess.run(["dvc", *command, "--json"], cwd=root, capture_output=True, text=True, env=stage_env())
    assert result.returncode == 0, f"dvc {' '.join(command)} failed:\n{result.stdout}\n{result.stderr}"
    return json.loads(result.stdout)


def default_pipeline_metrics(root) -> dict:
    """`dvc metrics show`'s files of dvc.yaml (not seeds/dvc.yaml's), with their values."""
    return {path: entry.get("data") for path, entry in dvc_json(root, "metrics", "show")[""]["data"].items()
            if not path.startswith("seeds/")}


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


def tiny_repo(base, archive, architectures: list[str], folder: str = "repo"):
    """``base/folder``: a git + DVC repository of the pipeline on a generated archive, training
    ``architectures`` for one epoch each."""
    params = scratch_params(base, archive)
    params["architectures"] = architectures
    for name in architectures:
        params["train"][name].update(epochs=1, batch_size=50)
    return dvc_repo(base / folder, params)


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
    val_per_class = round(5000 * project.params["split"]["val_fraction"])  # stratified: each class alike
    assert set(counts["train"].values()) == {5000 - val_per_class} and set(counts["val"].values()) == {val_per_class}
    assert float(train[:1000].mean()) == pytest.approx(120.7, abs=2)


# --- the whole pipeline on generated data: train, evaluate, report ------------------------------

TINY_ARCHITECTURES = ["elu3", "strided2"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def tiny_pipeline(tmp_path_factory, cifar10_archive):
    """`dvc repro` of the whole pipeline, two architectures, one epoch each, on a small archive."""
    root = tiny_repo(tmp_path_factory.mktemp("pipeline"), cifar10_archive, TINY_ARCHITECTURES)
    output = sh(root, "dvc", "repro")
    return root, output


def test_dvc_repro_runs_every_stage(tiny_pipeline):
    root, output = tiny_pipeline
    expected = ["download", "preprocess", "report", "split"]
    expected += [f"{stage}@{name}" for stage in ("evaluate", "train") for name in TINY_ARCHITECTURES]
    assert ran_stages(output) == sorted(expected)
    assert sorted(p.name for p in (root / "models").iterdir()) == [
        ".gitignore", "elu3.keras", "elu3.run.json", "strided2.keras", "strided2.run.json"]
    ignored = (root / "models/.gitignore").read_text().split()
    assert {"/elu3.keras", "/strided2.run.json"} <= set(ignored)  # DVC-cached, never in git


def test_evaluation_is_logged_into_the_training_run(tiny_pipeline):
    import mlflow

    root, _ = tiny_pipeline
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")
    for name in TINY_ARCHITECTURES:
        run_id = json.loads((root / f"models/{name}.run.json").read_text())["run_id"]
        run = client.get_run(run_id)
        metrics = json.loads((root / f"reports/eval/{name}.json").read_text())
        assert run.data.metrics["test_accuracy_tta"] == pytest.approx(metrics["test_accuracy_tta"])
        assert run.info.status == "FINISHED" and run.data.tags["dvc_stage"] == f"train@{name}"
        # Figures from different CPUs are not comparable: every run names its CPU and precision.
        assert run.data.tags["cpu_flags"] == (" ".join(cpu.flags()) or "none")
        assert run.data.tags["cpu_model"] == cpu.model_name() and run.data.tags["dtype_policy"] in (
            "float32", "mixed_bfloat16")
        # Logged without reopening the run: it ended with its training, before the test scores came in.
        [logged] = client.get_metric_history(run_id, "test_accuracy_tta")
        assert run.info.end_time <= logged.timestamp
        artifacts = {a.path for a in client.list_artifacts(run_id, "evaluation")}
        assert {"evaluation/confusion_matrix.png", "evaluation/classification_report.json"} <= artifacts


def test_evaluation_outputs_are_consistent(tiny_pipeline):
    root, _ = tiny_pipeline
    for name in TINY_ARCHITECTURES:
        metrics = json.loads((root / f"reports/eval/{name}.json").read_text())
        predictions = (root / f"reports/predictions/{name}.csv").read_text().splitlines()
        assert predictions[0] == "image,actual,predicted,confidence" and len(predictions) == 51
        rows = [line.split(",") for line in predictions[1:]]
        assert metrics["test_accuracy_tta"] == pytest.approx(sum(r[1] == r[2] for r in rows) / 50)
        confusion = (root / f"reports/details/{name}/confusion_matrix.csv").read_text().splitlines()
        assert sum(int(v) for line in confusion[1:] for v in line.split(",")[1:]) == 50


def test_report_links_tables_and_determinism(tiny_pipeline):
    root, _ = tiny_pipeline
    report = (root / "reports/report.md").read_text()
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", report)
    assert len(links) == 4 + len(TINY_ARCHITECTURES)  # curves, trade-off, samples, normalized + one each
    for link in links:
        assert (root / "reports" / link).read_bytes().startswith(PNG_MAGIC), link
    for name in TINY_ARCHITECTURES:
        test = json.loads((root / f"reports/eval/{name}.json").read_text())
        train = json.loads((root / f"reports/train/{name}.json").read_text())
        row = next(line for line in report.splitlines() if line.startswith(f"| {name} |"))
        assert f"{100 * test['test_accuracy_tta']:.2f} %" in row and f"{test['test_loss_tta']:.4f}" in row
        assert f"{100 * test['test_accuracy_single_view']:.2f} %" in row
        assert f"{100 * train['val_accuracy']:.2f} %" in row
        assert json.loads((root / f"models/{name}.run.json").read_text())["run_id"] in report
    before = {p: p.read_bytes() for p in (root / "reports").rglob("*") if p.is_file()}
    sh(root, "dvc", "repro", "--force", "--single-item", "report")
    assert before == {p: p.read_bytes() for p in (root / "reports").rglob("*") if p.is_file()}


def test_dvc_metrics_and_plots(tiny_pipeline):
    root, _ = tiny_pipeline
    shown = json.dumps(default_pipeline_metrics(root))
    for name in TINY_ARCHITECTURES:
        assert f"reports/eval/{name}.json" in shown and f"reports/train/{name}.json" in shown
    assert '"test_accuracy_tta"' in shown and '"test_accuracy_single_view"' in shown
    shown = dvc_json(root, "plots", "show")
    # The seed table's plots (seeds/dvc.yaml) have no data until it runs; the default pipeline's have no error.
    assert not [error for error in shown.get("errors") or [] if not error["name"].startswith("seeds/")], shown
    plots = {path: plot for path, plot in shown["data"].items() if not path.startswith("seeds/")}
    # One plot per file, with the title and x its definition gives: no second plot DVC made up by itself.
    expected = {**{f"reports/history/{n}.csv": ("epoch", "Learning curves") for n in TINY_ARCHITECTURES},
                **{f"reports/predictions/{n}.csv": ("actual", "Test confusion matrix") for n in TINY_ARCHITECTURES}}
    assert set(plots) == set(expected), sorted(plots)
    for path, (x, title) in expected.items():
        [plot] = plots[path]
        assert plot["content"]["title"]["text"].startswith(title), path
        assert f'"field": "{x}"' in json.dumps(plot["content"]), path


def test_report_names_the_architecture_whose_metrics_are_broken(tiny_pipeline, tmp_path):
    root, _ = tiny_pipeline
    copy = tmp_path / "copy"
    shutil.copytree(root, copy)
    (copy / "reports/eval/strided2.json").write_text("{not json")
    result = subprocess.run([sys.executable, "-m", "src.stages.report"], cwd=copy, capture_output=True,
                            text=True, env=stage_env())
    assert_one_error_line(result, "test metrics of strided2 is corrupt", "dvc repro evaluate@strided2")
    (copy / "reports/eval/strided2.json").unlink()
    result = subprocess.run([sys.executable, "-m", "src.stages.report"], cwd=copy, capture_output=True,
                            text=True, env=stage_env())
    assert_one_error_line(result, "test metrics of strided2 is missing")


def test_changing_one_architecture_reruns_only_its_stages(tiny_pipeline, tmp_path):
    # A copy: the module's pipeline stays as built, whatever order the tests run in. Without its MLflow
    # store: that experiment's artifact location is the original's mlruns/.
    root = tmp_path / "repo"
    shutil.copytree(tiny_pipeline[0], root, symlinks=True, ignore=shutil.ignore_patterns("mlflow.db", "mlruns"))
    assert "up to date" in sh(root, "dvc", "status", "dvc.yaml")
    edit_params(root, **{"train.strided2.epochs": 2})
    status = sh(root, "dvc", "status", "dvc.yaml")
    changed = sorted(line.rstrip(":").strip() for line in status.splitlines()
                     if line.endswith(":") and not line.startswith("\t"))
    # `dvc status` names the stages whose own inputs changed; evaluate@strided2 follows once its model does.
    assert changed == ["report", "train@strided2"], status
    assert ran_stages(sh(root, "dvc", "repro")) == ["evaluate@strided2", "report", "train@strided2"]
    # Editing one net's module reruns that net's stages, not the others'.
    source = root / "src/architectures/elu3.py"
    source.write_text(source.read_text() + "\n# edited\n")
    status = sh(root, "dvc", "status", "dvc.yaml")
    assert "train@elu3:" in status and "train@strided2" not in status, status


def test_removing_an_architecture_removes_its_results(tiny_pipeline, tmp_path):
    root = tmp_path / "repo"
    shutil.copytree(tiny_pipeline[0], root, symlinks=True, ignore=shutil.ignore_patterns("mlflow.db", "mlruns"))
    edit_params(root, architectures=["elu3"])
    assert ran_stages(sh(root, "dvc", "repro")) == ["report"]
    assert not [path for path in (root / "reports").rglob("strided2*")]
    assert "strided2" not in json.dumps(default_pipeline_metrics(root))
    assert not [path for path in dvc_json(root, "plots", "show")["data"] if "strided2" in path
                and not path.startswith("seeds/")]
    assert "up to date" in sh(root, "dvc", "status", "dvc.yaml")
    assert "| elu3 |" in (root / "reports/report.md").read_text()


def test_b3_overhead_benchmark_on_the_tiny_pipeline(tiny_pipeline, tmp_path):
    root, _ = tiny_pipeline
    results = tmp_path / "B.md"
    result = subprocess.run([sys.executable, "benchmarks/b3_pipeline_overhead.py", "--repeats", "1",
                             "--repo", str(root)], cwd=REPO, capture_output=True, text=True,
                            env=stage_env({"BENCHMARKS_MD": str(results)}))
    assert result.returncode == 0, result.stderr
    assert "`evaluate@elu3`, `report`, `train@elu3`" in results.read_text()
    assert f"--architecture elu3 --repo {root}`" in results.read_text()  # the command reproduces it
    assert yaml.safe_load((root / "params.yaml").read_text())["train"]["elu3"]["epochs"] == 1  # restored


def test_b4_and_b5_clean_clones_of_the_tiny_pipeline(tiny_pipeline, tmp_path):
    root, _ = tiny_pipeline
    results = tmp_path / "B.md"
    env = {"BENCHMARKS_MD": str(results)}
    sh(REPO, sys.executable, "benchmarks/b4_clean_clone.py", "--source", str(root), "--dest",
       str(tmp_path / "b4"), env=env)
    text = results.read_text()
    assert "B4 default pipeline from a clean clone" in text and "| elu3 | 1 |" in text
    assert (tmp_path / "b4/reports/report.md").exists()
    sh(REPO, sys.executable, "benchmarks/b5_reproducibility.py", "--reference", str(tmp_path / "b4"),
       "--source", str(root), "--dest", str(tmp_path / "b5"), "evaluate@elu3", env=env)
    text = results.read_text()
    assert "B5 reproducibility" in text and "| `elu3`: model weights | yes |" in text
    assert "| `data/split` (dvc.lock md5" in text and "**no**" not in text

    from benchmarks.b5_reproducibility import compare

    metrics = tmp_path / "b5/reports/eval/elu3.json"
    metrics.write_text(metrics.read_text().replace('"test_images": 50', '"test_images": 49'))
    assert [what for what, same in compare(tmp_path / "b4", tmp_path / "b5") if not same] == [
        "`elu3`: `reports/eval/elu3.json` (test metrics)"]


TINY_NET = '''from keras import layers


def tiny(x, num_classes):
    """Ours: one convolution and a linear classifier, the smallest net that trains."""
    x = layers.Conv2D(8, 3, activation="relu")(x)
    return layers.Dense(num_classes)(layers.GlobalAveragePooling2D()(x))
'''


def test_a_net_added_as_one_file_and_params_lines_trains_with_dvc_repro_and_joins_the_tests(tmp_path,
                                                                                          cifar10_archive):
    """docs/architectures.md's "Add a net", done in a copy: the registry finds it, `dvc repro` trains and
    evaluates it, and the tests that take their nets from the registry cover it unedited."""
    listed = yaml.safe_load((REPO / "params.yaml").read_text())["architectures"]
    root = git_project(tmp_path / "copy", cifar10_archive, architectures=[*listed, "tiny"], **{
        "train.tiny": {"optimizer": "adam", "learning_rate": 0.001, "batch_size": 50, "epochs": 1, "seed": 0}})
    (root / "src/architectures/tiny.py").write_text(TINY_NET)
    env = {"PYTHONPATH": ""}
    sh(root, "dvc", "repro", "evaluate@tiny", env=env)
    assert json.loads((root / "reports/eval/tiny.json").read_text())["test_images"] > 0
    tests = subprocess.run([sys.executable, "-m", "pytest", "-q", "-n", "0", "-p", "no:cacheprovider",
                            "tests/test_models.py", "tests/test_params.py", "tests/test_guards.py",
                            "-k", "registry or (builds_for and tiny) or depends_on_the_code"],
                           cwd=root, capture_output=True, text=True, env=stage_env(env))
    assert tests.returncode == 0 and " passed" in tests.stdout, tests.stdout[-3000:]
    assert "tiny" in subprocess.run([sys.executable, "-m", "pytest", "-q", "-n", "0", "-p", "no:cacheprovider",
                                     "--collect-only", "tests/test_models.py"], cwd=root, capture_output=True,
                                    text=True, env=stage_env(env)).stdout
