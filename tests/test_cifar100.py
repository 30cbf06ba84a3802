"""CIFAR-100 through `dvc repro`: top-5 accuracy and a readable 100- or 20-class report."""

import json

import pytest

from tests.test_dvc_pipeline import dvc_repo, ran_stages, scratch_params, sh


@pytest.mark.parametrize(("label_mode", "classes", "architecture"), [
    ("fine", 100, "elu3"),
    ("coarse", 20, "conv4"),
])
def test_cifar100_through_dvc_repro(tmp_path, cifar100_archive, label_mode, classes, architecture):
    params = scratch_params(tmp_path, cifar100_archive)
    params["data"]["label_mode"] = label_mode
    params["architectures"] = [architecture]
    params["split"]["val_fraction"] = 0.5  # 200 validation images: every one of 100 classes in both parts
    params["train"][architecture].update(epochs=1, batch_size=50)
    root = dvc_repo(tmp_path / "repo", params)
    output = sh(root, "dvc", "repro")
    assert ran_stages(output) == sorted(["download", "preprocess", "split", f"train@{architecture}",
                                         f"evaluate@{architecture}", "report"])

    metrics = json.loads((root / f"reports/eval/{architecture}.json").read_text())
    assert metrics["test_images"] == 200
    assert 0 <= metrics["test_accuracy_tta"] <= metrics["test_top5_accuracy_tta"] <= 1
    predictions = (root / f"reports/predictions/{architecture}.csv").read_text().splitlines()[1:]
    rows = [line.split(",") for line in predictions]
    assert metrics["test_accuracy_tta"] == pytest.approx(sum(r[1] == r[2] for r in rows) / 200)
    assert {r[1] for r in rows} == {f"{label_mode}_{i}" for i in range(classes)}
    confusion = (root / f"reports/details/{architecture}/confusion_matrix.csv").read_text().splitlines()
    assert len(confusion) == classes + 1

    report = (root / "reports/report.md").read_text()
    assert "# CIFAR CNN comparison: cifar100" in report
    row = next(line for line in report.splitlines() if line.startswith(f"| {architecture} | cifar100 |"))
    assert f"| {100 * metrics['test_accuracy_tta']:.2f} % |" in row, row
    f1_header = next(line for line in report.splitlines() if line.startswith("| architecture | ") and "_" in line)
    assert f1_header.count("|") - 2 == (classes if classes <= 20 else 15)  # 100: the 10 hardest, 5 easiest
    assert (root / f"reports/figures/confusion_{architecture}.png").stat().st_size > 10_000
