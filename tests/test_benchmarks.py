"""Each benchmark runs once on generated data, so the scripts cannot rot (figures come from real runs)."""

import json
import subprocess
import sys

import pytest

from src.training import cpu
from tests import cifar_fixtures
from tests.conftest import REPO, stage_env


def run_benchmark(script, results, *args):
    result = subprocess.run([sys.executable, f"benchmarks/{script}", *args], cwd=REPO, capture_output=True,
                            text=True, env=stage_env({"BENCHMARKS_MD": str(results)}))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return results.read_text()


def test_b1_train_speed_smoke(tmp_path, cifar10_archive):
    text = run_benchmark("b1_train_speed.py", tmp_path / "B.md", "--epochs", "1", "--pairs", "1",
                         "--val-fraction", "0.2", "--archive", str(cifar10_archive),
                         "--md5", cifar_fixtures.md5_of(cifar10_archive))
    assert "| seed 000 notebook |" in text and "| pipeline train@elu3 |" in text
    assert "Ratio pipeline / seed, training alone: **" in text
    assert f"flags {' '.join(cpu.flags()) or 'none'}." in text  # every section names its CPU


@pytest.mark.parametrize(("script", "model"), [("seed000_notebook.py", None), ("seed002_notebook.py", "model_1"),
                                               ("seed002_notebook.py", "model_2"), ("seed004_notebook.py", None)])
def test_seed_notebook_smoke(cifar10_archive, script, model):
    """The seed notebooks' own code (issue 26 item 4) runs one epoch and ends with the JSON line the table reads."""
    args = [str(cifar10_archive), *([model] if model else []), "1"]
    result = subprocess.run([sys.executable, f"benchmarks/{script}", *args], cwd=REPO, capture_output=True,
                            text=True, env=stage_env())
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    line = json.loads(result.stdout.strip().splitlines()[-1])
    expected_model = {"seed000_notebook.py": None, "seed004_notebook.py": "cifar_cnn"}.get(script, model)
    assert line.get("model") == expected_model and line["train_images"] == 250  # 5 batches of 50
    assert len(line["epoch_seconds"]) == len(line["training_seconds"]) == 1 and 0 <= line["test_accuracy"] <= 1
    if script == "seed004_notebook.py":  # its fit does not validate: nothing to leave out
        assert line["training_seconds"] == line["epoch_seconds"]
    else:  # the others validate on the test set each epoch, and training_seconds leaves that pass out
        assert 0 < line["training_seconds"][0] < line["epoch_seconds"][0]


def test_b6_distance_to_limit_smoke(tmp_path, project):
    for stage in ("download", "preprocess", "split"):
        project.run(stage)
    text = run_benchmark("b6_distance_to_limit.py", tmp_path / "B.md", "--rounds", "1", "--images", "64",
                         "--limit-seconds", "0.2", "--split", str(project.root / "data/split"),
                         "--architectures", "strided2")
    assert "| **limit** (best) |" in text
    # FLOPs counted from the model: strided2's two 5x5 convs and dense layers, forward and backward.
    row = next(line for line in text.splitlines() if line.startswith("| strided2 |"))
    assert float(row.split("|")[2]) == 13.0 and row.count("img/s") == 2


def test_b10_determinism_cost_smoke(tmp_path, project):
    project.set(**{"train.airbench.batch_size": 32})
    for stage in ("download", "preprocess", "split"):
        project.run(stage)
    text = run_benchmark("b10_determinism_cost.py", tmp_path / "B.md", "--images", "64", "--epochs", "2",
                         "--rounds", "1", "--repo", str(project.root))
    assert "| on (TensorFlow's default) |" in text and "| off (`TF_NUM_INTEROP_THREADS=1`, the pipeline's) |" in text
    assert "×** the default's epoch time." in text


def test_b2_data_stages_smoke(tmp_path, cifar10_archive):
    text = run_benchmark("b2_data_stages.py", tmp_path / "B.md", "--repeats", "1",
                         "--archive", str(cifar10_archive), "--md5", cifar_fixtures.md5_of(cifar10_archive),
                         "--val-fraction", "0.2")
    assert "| preprocess |" in text and "| **all three** |" in text


def test_jpeg_quality_is_found_from_decoded_pixels():
    import io

    import numpy as np
    from PIL import Image

    from benchmarks import jpeg_quality

    rng = np.random.default_rng(0)
    # Smooth colour fields plus noise: energy at every frequency the check reads.
    base = rng.integers(0, 256, (300, 4, 4, 3)).repeat(8, axis=1).repeat(8, axis=2)
    images = np.clip(base + rng.normal(0, 25, base.shape), 0, 255).astype(np.uint8)

    def jpeg(quality):
        decoded = []
        for image in images:
            buffer = io.BytesIO()
            Image.fromarray(image).save(buffer, format="JPEG", quality=quality)
            decoded.append(np.asarray(Image.open(buffer).convert("RGB")))
        return np.stack(decoded)

    for quality in (75, 50):
        assert jpeg_quality.quality(jpeg_quality.steps(jpeg(quality))) == quality
    assert jpeg_quality.quality(jpeg_quality.steps(images)) is None  # never JPEG-encoded
