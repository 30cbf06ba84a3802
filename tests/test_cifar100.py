"""CIFAR-100 through train, evaluate and report: top-5 accuracy, a readable 100-class report."""

import json

import pytest


@pytest.mark.parametrize(("label_mode", "classes"), [("fine", 100), ("coarse", 20)])
def test_cifar100_pipeline(make_project, cifar100_archive, label_mode, classes):
    project = make_project(cifar100_archive).set(**{
        "data.label_mode": label_mode, "architectures": ["strided2"], "split.val_fraction": 0.5,
        "train.strided2.epochs": 1, "train.strided2.batch_size": 64})
    for stage in ("download", "preprocess", "split"):
        project.run(stage)
    project.run("train", "strided2")
    project.run("evaluate", "strided2")
    project.run("report")
    metrics = json.loads((project.root / "reports/eval/strided2.json").read_text())
    assert metrics["test_images"] == 200 and 0 <= metrics["test_accuracy"] <= metrics["test_top5_accuracy"] <= 1
    confusion = (project.root / "reports/details/strided2/confusion_matrix.csv").read_text().splitlines()
    assert len(confusion) == classes + 1
    report = (project.root / "reports/report.md").read_text()
    assert "# CIFAR CNN comparison: cifar100" in report
    assert "| 64.50 % (cifar10: not comparable) |" in report  # strided2's reference is from CIFAR-10
    f1_header = next(line for line in report.splitlines() if line.startswith("| architecture | ") and "_" in line)
    assert f1_header.count("|") - 2 == (classes if classes <= 20 else 15)  # 100: the 10 hardest, 5 easiest
    assert (project.root / "reports/figures/confusion_strided2.png").stat().st_size > 10_000
