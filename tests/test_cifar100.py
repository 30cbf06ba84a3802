"""CIFAR-100 through `dvc repro`: top-5 accuracy, a readable 100-class report, and reference figures
labelled where they were measured on another problem (CIFAR-10, or 100 classes for a 20-class run)."""

import json

import pytest

from tests.test_dvc_pipeline import dvc_repo, ran_stages, scratch_params, sh


@pytest.mark.parametrize(("label_mode", "classes", "architecture", "labelled"), [
    ("fine", 100, "elu3", "(cifar10: not comparable)"),  # elu3's seed figure is from CIFAR-10
    ("coarse", 20, "conv4", "(cifar100, fine labels: not comparable)"),  # conv4's from 100 fine classes
])
def test_cifar100_through_dvc_repro(tmp_path, cifar100_archive, label_mode, classes, architecture, labelled):
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
    assert metrics["test_images"] == 200 and 0 <= metrics["test_accuracy"] <= metrics["test_top5_accuracy"] <= 1
    predictions = (root / f"reports/predictions/{architecture}.csv").read_text().splitlines()[1:]
    rows = [line.split(",") for line in predictions]
    assert metrics["test_accuracy"] == pytest.approx(sum(r[1] == r[2] for r in rows) / 200)
    assert {r[1] for r in rows} == {f"{label_mode}_{i}" for i in range(classes)}
    confusion = (root / f"reports/details/{architecture}/confusion_matrix.csv").read_text().splitlines()
    assert len(confusion) == classes + 1

    report = (root / "reports/report.md").read_text()
    assert "# CIFAR CNN comparison: cifar100" in report
    row = next(line for line in report.splitlines() if line.startswith(f"| {architecture} | cifar100 |"))
    reference = params["reference"][architecture]
    assert row.endswith(f"| {100 * reference['accuracy']:.2f} % {labelled} |"), row
    f1_header = next(line for line in report.splitlines() if line.startswith("| architecture | ") and "_" in line)
    assert f1_header.count("|") - 2 == (classes if classes <= 20 else 15)  # 100: the 10 hardest, 5 easiest
    assert (root / f"reports/figures/confusion_{architecture}.png").stat().st_size > 10_000
