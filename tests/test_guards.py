"""Guards: each test here fails when a behaviour the pipeline relies on is removed or changed (issue 27,
"Tests that must be able to fail"). Every number is compared with an independent computation (numpy, by
hand) or with the exact weights and pixels expected, never with a figure derived from the code under test.
"""

import ast
import functools
import hashlib
import math
import os
import socket
import subprocess
import time
from pathlib import Path

import keras
import numpy as np
import pytest
import yaml

from src import architectures
from src.core import config, tracking
from src.core.errors import PipelineError
from src.evaluation import scoring
from src.training import fit, models, normalization
from src.training.recipe import Augmentation
from tests.conftest import recipe

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src"
CORE = SRC / "core"


# --- 1. early stopping keeps the best epoch's weights ---------------------------------------------------

def colour_data(count: int, flipped: int, seed: int, size: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Two classes told apart by colour (class 0 red, class 1 green); the first ``flipped`` labels are
    wrong. A net trained on clean images grows ever more confident, so on images with some labels flipped
    the validation loss falls, then rises: its best epoch is not the last."""
    rng = np.random.default_rng(seed)
    labels = np.arange(count) % 2
    images = np.empty((count, size, size, 3), np.uint8)
    images[...] = rng.integers(0, 40, (count, 1, 1, 3))
    images[labels == 0, :, :, 0] += 150
    images[labels == 1, :, :, 1] += 150
    labels[:flipped] = 1 - labels[:flipped]
    return images, np.eye(2, dtype=np.uint8)[labels]


def colour_net(size: int = 8) -> keras.Model:
    inputs = keras.Input((size, size, 3), dtype="uint8")
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Rescaling(1 / 255)(inputs))
    outputs = keras.layers.Activation("softmax")(keras.layers.Dense(2)(x))
    return keras.Model(inputs, outputs, name="colour")


def same_weights(first: list, second: list) -> bool:
    return all(np.array_equal(a, b) for a, b in zip(first, second, strict=True))


class EpochWeights(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.weights = []

    def on_epoch_end(self, epoch, logs=None):
        self.weights.append(self.model.get_weights())


def test_restore_best_weights_saves_the_best_epochs_weights_and_scores_them():
    config = recipe(learning_rate=0.1, batch_size=16, epochs=8, seed=1,
                    early_stopping={"monitor": "val_loss", "patience": 8, "restore_best_weights": True})
    train_data, val_data = colour_data(64, 0, seed=0), colour_data(40, 8, seed=1)
    fit.make_deterministic(config.seed)
    model, epochs = colour_net(), EpochWeights()
    result = fit.train(model, config, train_data, val_data, extra_callbacks=[epochs])
    val_loss = result.history["val_loss"].to_numpy()
    best = int(np.argmin(val_loss))
    assert len(val_loss) == 8 and 0 < best < 7, val_loss  # the data make the best epoch neither the first nor last
    assert val_loss[-1] - val_loss[best] > 0.01, val_loss
    assert result.best_epoch == result.evaluated_epoch == best + 1
    # The model as train() leaves it (and the train stage saves) holds the best epoch's weights ...
    kept = [epoch + 1 for epoch, weights in enumerate(epochs.weights) if same_weights(model.get_weights(), weights)]
    assert kept == [best + 1], f"the model holds the weights of epochs {kept}, the best epoch is {best + 1}"
    # ... scores the best epoch's validation loss, not the last epoch's ...
    saved = model.evaluate(val_data[0], val_data[1].astype("float32"), batch_size=64, return_dict=True, verbose=0)
    assert saved["loss"] == pytest.approx(val_loss[best], rel=1e-5)
    assert saved["loss"] != pytest.approx(val_loss[-1], rel=1e-3)
    # ... and that is what the summary reports as the saved model's validation.
    summary = result.summary(fit.monitor_of(config))
    assert summary["val_loss"] == pytest.approx(saved["loss"], abs=2e-6)
    assert summary["val_accuracy"] == pytest.approx(saved["accuracy"], abs=2e-6)


# --- 2. test metrics against an independent computation ---------------------------------------------------

def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def logits_net(classes: int, kernel: np.ndarray | None = None) -> keras.Model:
    """Probabilities softmax(x) of the logits fed in, or softmax(x @ kernel): predictions set by hand."""
    inputs = keras.Input((classes,))
    x = inputs
    if kernel is not None:
        dense = keras.layers.Dense(classes, use_bias=False)
        x = dense(x)
        dense.set_weights([kernel.astype("float32")])
    return keras.Model(inputs, keras.layers.Activation("softmax", name="probabilities")(x))


def by_hand(actual: np.ndarray, probabilities: np.ndarray, classes: int) -> dict:
    predicted = probabilities.argmax(axis=1)
    counts = np.zeros((classes, classes), int)
    np.add.at(counts, (actual, predicted), 1)
    true_positives = np.diag(counts).astype(float)
    support, predicted_count = counts.sum(axis=1), counts.sum(axis=0)
    precision = np.divide(true_positives, predicted_count, out=np.zeros(classes), where=predicted_count > 0)
    recall = np.divide(true_positives, support, out=np.zeros(classes), where=support > 0)
    denominator = precision + recall
    f1 = np.divide(2 * precision * recall, denominator, out=np.zeros(classes), where=denominator > 0)
    top5 = np.argsort(-probabilities, axis=1)[:, :5]
    return {"accuracy": float(np.mean(predicted == actual)),
            "loss": float(-np.mean(np.log(probabilities[np.arange(len(actual)), actual]))),
            "counts": counts, "precision": precision, "recall": recall, "f1": f1, "support": support,
            "macro_f1": float(f1.mean()), "weighted_f1": float((f1 * support).sum() / support.sum()),
            "top5": float(np.mean([a in row for a, row in zip(actual, top5, strict=True)]))}


@pytest.mark.parametrize("counts", [(30, 12, 6, 2), (20, 14, 10, 8, 6, 5, 4, 3, 3, 2, 2, 1)])
def test_evaluation_metrics_match_an_independent_computation(counts):
    classes = len(counts)
    rng = np.random.default_rng(classes)
    actual = rng.permutation(np.repeat(np.arange(classes), counts))  # imbalanced
    logits = (rng.normal(0, 1, (len(actual), classes)) + 1.2 * np.eye(classes)[actual]).astype("float32")
    # The single view mixes each class's logit with the next class's: other predictions, another loss.
    kernel = 0.5 * np.eye(classes) + 0.5 * np.roll(np.eye(classes), 1, axis=1)
    tta = by_hand(actual, softmax(logits.astype(np.float64)), classes)
    single = by_hand(actual, softmax(logits.astype(np.float64) @ kernel), classes)
    # The data tell each mistake apart: weighted from macro average, one view from the other, a matrix from
    # its transpose.
    assert abs(tta["weighted_f1"] - tta["macro_f1"]) > 0.01
    assert abs(tta["loss"] - single["loss"]) > 0.01 and tta["accuracy"] != single["accuracy"]
    assert not np.array_equal(tta["counts"], tta["counts"].T)

    names = [f"class_{i}" for i in range(classes)]
    result = scoring.evaluate(logits_net(classes), logits, np.eye(classes, dtype=np.uint8)[actual], names,
                              batch_size=16, single_view=logits_net(classes, kernel))
    expected = {"test_accuracy_single_view": single["accuracy"], "test_loss_single_view": single["loss"],
                "test_accuracy_tta": tta["accuracy"], "test_loss_tta": tta["loss"],
                "test_macro_f1_tta": tta["macro_f1"], "test_images": len(actual)}
    if classes > 10:
        expected["test_top5_accuracy_tta"] = tta["top5"]
    assert result.metrics.keys() == expected.keys()
    for key, value in expected.items():
        assert result.metrics[key] == pytest.approx(value, abs=2e-6), key

    assert result.confusion.index.name == "actual" and result.confusion.columns.name == "predicted"
    assert list(result.confusion.index) == names and list(result.confusion.columns) == names
    np.testing.assert_array_equal(result.confusion.to_numpy(), tta["counts"])  # rows actual, columns predicted
    assert list(result.per_class.index) == names
    for column in ("precision", "recall", "f1"):
        np.testing.assert_allclose(result.per_class[f"{column}-score" if column == "f1" else column].to_numpy(
            dtype=float), tta[column], atol=1e-12, err_msg=column)
    np.testing.assert_array_equal(result.per_class["support"].to_numpy(dtype=float), tta["support"])
    # Validation and training images are scored per view the same way, each view by its own net.
    one_hot = np.eye(classes, dtype=np.uint8)[actual]
    assert scoring.accuracy_by_view("val", {"single_view": logits_net(classes, kernel), "tta": logits_net(classes)},
                                    logits, one_hot, batch_size=16) == pytest.approx(
        {"val_accuracy_single_view": single["accuracy"], "val_accuracy_tta": tta["accuracy"]}, abs=1e-6)
    probabilities = softmax(logits.astype(np.float64))
    assert list(result.predictions["actual"]) == [names[a] for a in actual]
    assert list(result.predictions["predicted"]) == [names[p] for p in probabilities.argmax(axis=1)]
    np.testing.assert_allclose(result.predictions["confidence"], probabilities.max(axis=1), atol=6e-5)


# --- 3. augmentation moves the pixels it should -------------------------------------------------------------

def coordinate_image() -> np.ndarray:
    """Channel 0 holds each pixel's row, channel 1 its column, channel 2 both (32 * row + column)."""
    rows, columns = np.meshgrid(np.arange(32), np.arange(32), indexing="ij")
    return np.stack([rows, columns, 32 * rows + columns], axis=-1).astype("float32")


def augmented(augmentation: dict, images: int = 16, seed: int = 3) -> tuple[list, np.ndarray]:
    steps = models.augmentation_layers(Augmentation(**augmentation), seed)
    batch = np.repeat(coordinate_image()[None], images, axis=0)
    for step in steps:
        batch = step(batch, training=True)
    return steps, np.asarray(batch)


def test_shift_translates_each_image_with_nearest_fill_borders():
    steps, out = augmented({"shift": 0.1})
    assert len(steps) == 1
    rows, columns = np.meshgrid(np.arange(32), np.arange(32), indexing="ij")
    shifts = []
    for image in out:
        # A translation by (dy, dx) pixels, interpolated, borders filled by the nearest edge pixel: a pixel
        # shows the source pixel (row - dy, column - dx) clamped into the image.
        dy, dx = 16 - image[16, 16, 0], 16 - image[16, 16, 1]
        source_rows, source_columns = np.clip(rows - dy, 0, 31), np.clip(columns - dx, 0, 31)
        np.testing.assert_allclose(image[..., 0], source_rows, atol=2e-3)
        np.testing.assert_allclose(image[..., 1], source_columns, atol=2e-3)
        np.testing.assert_allclose(image[..., 2], 32 * source_rows + source_columns, atol=0.05)
        shifts.append((dy, dx))
    dy, dx = np.array(shifts).T
    limit = 0.1 * 32
    assert np.all(np.abs(dy) <= limit + 1e-3) and np.all(np.abs(dx) <= limit + 1e-3)
    # Both ways along both axes, and far enough for the borders to be filled.
    assert dy.min() < -1 and dy.max() > 1 and dx.min() < -1 and dx.max() > 1, shifts


def test_crop_padding_shifts_whole_pixels_with_reflected_borders():
    padding = 4
    steps, out = augmented({"crop_padding": padding})
    assert len(steps) == 1
    image = coordinate_image()
    # Keras' fill_mode="reflect" reflects about the edge of the last pixel (d c b a | a b c d): numpy's
    # "symmetric". "nearest" would repeat the edge pixel instead (a a a a | a b c d).
    padded = np.pad(image, [(padding, padding), (padding, padding), (0, 0)], mode="symmetric")
    shifts = []
    for shifted in out:
        dy, dx = int(shifted[16, 16, 0]) - 16, int(shifted[16, 16, 1]) - 16
        assert shifted[16, 16, 0] == 16 + dy and shifted[16, 16, 1] == 16 + dx  # whole pixels
        assert abs(dy) <= padding and abs(dx) <= padding
        np.testing.assert_array_equal(shifted, padded[padding + dy:padding + dy + 32, padding + dx:padding + dx + 32])
        shifts.append((dy, dx))
    dy, dx = np.array(shifts).T
    # Shifts of 2 pixels or more, both ways along both axes: there reflecting and repeating the edge differ.
    assert dy.min() <= -2 and dy.max() >= 2 and dx.min() <= -2 and dx.max() >= 2, shifts


# --- 4. training moves the weights; learning-rate schedules ---------------------------------------------

def test_training_changes_the_weights_and_lowers_the_loss():
    config = recipe(learning_rate=0.01, batch_size=16, epochs=3)
    images, labels = colour_data(64, 0, seed=0, size=32)
    fit.make_deterministic(config.seed)
    model = models.build_model("elu3", 2, normalization.normalization_stats(images, "scale"), config)
    before = [np.array(w) for w in model.trainable_weights]
    result = fit.train(model, config, (images, labels), colour_data(32, 0, seed=1, size=32))
    after = [np.array(w) for w in model.trainable_weights]
    unchanged = [w.path for w, b, a in zip(model.trainable_weights, before, after, strict=True) if np.array_equal(b, a)]
    assert not unchanged, f"training left these weights as initialized: {unchanged}"
    assert float(keras.ops.convert_to_numpy(model.optimizer.learning_rate)) == pytest.approx(0.01)
    loss = result.history["loss"].to_numpy()
    assert loss[-1] < 0.5 * loss[0], loss  # an easy problem: the training loss falls fast
    assert result.history["val_accuracy"].iloc[-1] >= 0.9


def test_cosine_schedule_decays_from_the_rate_to_zero_over_all_steps():
    steps_per_epoch, epochs, rate = 10, 4, 0.1
    schedule = fit.learning_rate(recipe(learning_rate=rate, schedule="cosine", epochs=epochs), steps_per_epoch)
    assert isinstance(schedule, keras.optimizers.schedules.LearningRateSchedule)
    total = steps_per_epoch * epochs
    reference = keras.optimizers.schedules.CosineDecay(rate, decay_steps=total)
    for step in (0, 1, total // 4, total // 2, total - 1, total):
        expected = 0.5 * rate * (1 + math.cos(math.pi * step / total))
        assert float(schedule(step)) == pytest.approx(expected, rel=1e-5, abs=1e-6 * rate), step
        assert float(schedule(step)) == pytest.approx(float(reference(step)), rel=1e-6, abs=1e-9), step
    assert float(schedule(total)) == pytest.approx(0.0, abs=1e-9)


# --- 5. normalization statistics from the training images only ----------------------------------------------

def numpy_stats(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pixels = images.reshape(-1, 3).astype(np.float64)
    return pixels.mean(axis=0), pixels.std(axis=0)


def test_normalization_stats_are_numpys_over_the_images_given():
    rng = np.random.default_rng(0)
    train_images = rng.integers(0, 200, (12, 32, 32, 3), dtype=np.uint8)
    train_images[..., 2] //= 4  # channels differ
    val_images = np.full((4, 32, 32, 3), 255, np.uint8)
    mean, std = numpy_stats(train_images)
    stats = normalization.normalization_stats(train_images, "per_channel")
    np.testing.assert_allclose(stats["mean"], mean, atol=2e-6)
    np.testing.assert_allclose(stats["std"], std, atol=2e-6)
    both_mean, both_std = numpy_stats(np.concatenate([train_images, val_images]))
    assert np.all(np.abs(both_mean - mean) > 10) and np.all(np.abs(both_std - std) > 10)
    standardized = normalization.normalization_stats(train_images, "standardize")
    pixels = train_images.astype(np.float64)
    np.testing.assert_allclose(standardized["mean"], [pixels.mean()] * 3, atol=2e-6)
    np.testing.assert_allclose(standardized["std"], [pixels.std()] * 3, atol=2e-6)


def test_train_stage_normalizes_with_the_training_images_statistics_only(project):
    project.set(**{"train.elu3.epochs": 1, "train.elu3.batch_size": 200, "train.elu3.normalization": "per_channel",
                   "train.elu3.precision": "float32"})
    for stage in ("download", "preprocess", "split"):
        project.run(stage)
    split, processed = project.root / config.SPLIT_DIR, project.root / config.PROCESSED_DIR
    train_images = np.load(split / "train_images.npy")
    # Every other image set the stage could read gets statistics far from the training images': validation
    # images all white, the whole processed training and test sets all black.
    np.save(split / "val_images.npy", np.full_like(np.load(split / "val_images.npy"), 255))
    for name in ("train_images", "test_images"):
        np.save(processed / f"{name}.npy", np.zeros_like(np.load(processed / f"{name}.npy")))
    project.run("train", "elu3")
    layer = keras.models.load_model(project.root / "models/elu3.keras").get_layer("normalization")
    mean, std = numpy_stats(train_images)
    np.testing.assert_allclose(np.ravel(layer.mean), mean, rtol=1e-5)
    np.testing.assert_allclose(np.sqrt(np.ravel(layer.variance)), std, rtol=1e-5)


# --- 6. dvc.yaml: plots once each, every stage depends on what it reads and imports ---------------------------

def load_yaml(path: str) -> dict:
    return yaml.safe_load((REPO / path).read_text())


def in_repo(dvc_file: str, path: str, wdir: str = ".") -> str:
    """``path`` as written in ``dvc_file`` (relative to its folder, or to a stage's ``wdir``), from the root."""
    return os.path.normpath(Path(dvc_file).parent / wdir / path)


def tracked_files(folder: str) -> list[Path]:
    listed = subprocess.run(["git", "ls-files", "-z", folder], cwd=REPO, capture_output=True, text=True, check=True)
    return [REPO / name for name in listed.stdout.split("\0") if name]


@pytest.mark.parametrize("lock", ["dvc.lock", "seeds/dvc.lock"])
def test_the_locks_record_the_code_in_git(lock):
    """Every `src/` dependency a lock records is the committed code: a file's md5, a folder's tracked files
    (no bytecode a test run leaves there). Otherwise a fresh clone's `dvc status` sees changed code and
    `dvc repro` retrains: a code change is committed with its proof (`src.prove_unchanged --commit`) or
    its retraining, never without."""
    stale = []
    for name, stage in load_yaml(lock)["stages"].items():
        for dep in stage.get("deps", []):
            if not dep["path"].startswith("src"):
                continue
            path = REPO / dep["path"]  # the stages run from the root (seeds/dvc.yaml's with wdir: ..)
            if dep["md5"].endswith(".dir"):
                files = tracked_files(dep["path"])
                recorded = (dep["size"], dep["nfiles"])
                if recorded != (sum(f.stat().st_size for f in files), len(files)):
                    stale.append(f"{name}: {dep['path']} ({recorded[1]} files, {recorded[0]} bytes recorded)")
            elif hashlib.md5(path.read_bytes()).hexdigest() != dep["md5"]:
                stale.append(f"{name}: {dep['path']}")
    assert not stale, f"{lock} records other code than git holds: {stale}"


def plot_definitions(dvc_file: str) -> dict:
    definitions = {}
    for entry in load_yaml(dvc_file).get("plots", []):
        for target, props in entry.items():
            target = in_repo(dvc_file, target)
            assert target not in definitions, f"{dvc_file}: plot {target} defined twice"
            definitions[target] = props or {}
    return definitions


@pytest.mark.parametrize("dvc_file", ["dvc.yaml", "seeds/dvc.yaml"])
def test_each_plot_is_defined_once_at_top_level(dvc_file):
    prefix = in_repo(dvc_file, "reports")
    plots = plot_definitions(dvc_file)
    assert set(plots) == {f"{prefix}/history", f"{prefix}/predictions"}
    history = plots[f"{prefix}/history"]
    assert history["x"] == "epoch" and {"val_accuracy", "accuracy", "val_loss", "loss"} <= set(history["y"])
    assert history.get("title")
    predictions = plots[f"{prefix}/predictions"]
    assert (predictions["template"], predictions["x"], predictions["y"]) == ("confusion", "actual", "predicted")
    assert predictions.get("title")
    written = set()
    for name, stage in load_yaml(dvc_file)["stages"].items():
        body = stage.get("do", stage)
        assert "plots" not in body, f"stage {name} defines plots of its own: DVC would draw them twice"
        written |= {in_repo(dvc_file, out_path(out), body.get("wdir", ".")) for out in body.get("outs", [])}
    for target in plots:  # each plot draws the files its pipeline's stages write
        assert any(out.startswith(target + "/") for out in written), (target, sorted(written))


def module_file(module: str) -> Path | None:
    """src/a/b.py or src/a/b/__init__.py for ``src.a.b``; None when it names no module (a function, say)."""
    base = REPO.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def with_packages(path: Path) -> set[Path]:
    """A module and the __init__.py of every package above it: importing it runs them all."""
    files, folder = {path}, path.parent
    while folder != REPO:
        files.add(folder / "__init__.py")
        folder = folder.parent
    return files


@functools.cache
def src_imports(path: Path) -> frozenset[Path]:
    """The files of src that ``path`` imports, anywhere in it (function-local imports included)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}: relative import"
            names = [node.module or ""] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            if name == "src" or name.startswith("src."):
                file = module_file(name)
                if file is not None:
                    found |= with_packages(file)
    return frozenset(found)


def imported_closure(*roots: Path) -> set[Path]:
    """The files of src that importing ``roots`` runs, less what only src/core/ imports (it validates every
    params section, so it imports their schemas: a stage depends on the schema of the section it reads)."""
    seen, todo = set(), [file for root in roots for file in with_packages(root)]
    while todo:
        file = todo.pop()
        if file not in seen:
            seen.add(file)
            if CORE not in file.parents:
                todo.extend(src_imports(file) - seen)
    return seen


def concrete_stages(path: str) -> list[tuple[str, dict]]:
    """(name, stage) for every stage of a dvc.yaml, its foreach stages expanded for every architecture (the
    train stage builds the one named, importing src/architectures/NAME.py at run time)."""
    pipeline = load_yaml(path)
    expanded = []
    for name, stage in pipeline["stages"].items():
        if "foreach" not in stage:
            expanded.append((name, stage))
            continue
        for arch in architectures.names():
            text = yaml.safe_dump(stage["do"]).replace("${item}", arch).replace("${key}", arch)
            expanded.append((f"{name}@{arch}", yaml.safe_load(text)))
    return expanded


def out_path(entry: str | dict) -> str:
    return next(iter(entry)) if isinstance(entry, dict) else entry


def dep_paths(dvc_file: str, stage: dict) -> list[str]:
    return [in_repo(dvc_file, out_path(dep), stage.get("wdir", ".")) for dep in stage.get("deps", [])]


def covered(path: str, deps: list[str]) -> bool:
    return any(path == dep or path.startswith(dep.rstrip("/") + "/") for dep in deps)


@pytest.mark.parametrize("path", ["dvc.yaml", "seeds/dvc.yaml"])
def test_every_stage_depends_on_the_code_it_runs_and_on_no_plumbing(path):
    missing, plumbing = {}, {}
    for name, stage in concrete_stages(path):
        command = stage["cmd"].split()
        assert command[:3] == ["python", "-m", command[2]] and command[2].startswith("src.stages."), stage["cmd"]
        roots = [module_file(command[2])]
        if command[2] == "src.stages.train":
            roots.append(SRC / "architectures" / f"{command[3]}.py")
        deps = dep_paths(path, stage)
        needed = {file.relative_to(REPO).as_posix() for file in imported_closure(*roots)
                  if CORE not in file.parents and file not in DOCSTRING_ONLY}
        if command[2] not in ("src.stages.train", "src.stages.evaluate", "src.stages.seed_table"):
            needed.discard("src/__init__.py")  # its settings are TensorFlow's: no other stage runs it
        lacking = sorted(file for file in needed if not covered(file, deps))
        if lacking:
            missing[name] = lacking
        if any(covered(dep, ["src/core"]) or dep == "src" for dep in deps):
            plumbing[name] = deps
    assert not missing, f"{path}: stages lack deps on source they run: {missing}"
    assert not plumbing, f"{path}: stages depend on src/core/, which computes no output: {plumbing}"


# Packages whose __init__.py every import of one of their modules runs: kept to a docstring, so that a stage
# depending on one module of the package (not on the whole folder) misses no code.
DOCSTRING_ONLY = {SRC / folder / "__init__.py" for folder in ("stages", "core", "data", "training", "evaluation",
                                                               "reporting")}


def test_package_inits_that_no_stage_lists_hold_a_docstring_only():
    for init in DOCSTRING_ONLY:
        body = ast.parse(init.read_text()).body
        assert len(body) == 1 and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant), init


def test_a_training_backup_is_tied_to_exactly_the_code_its_stage_depends_on():
    for path in ("dvc.yaml", "seeds/dvc.yaml"):
        stage = dict(concrete_stages(path))["train@elu3"]
        deps = [REPO / dep for dep in dep_paths(path, stage) if dep.startswith("src")]
        listed = sorted({file for dep in deps for file in ([dep] if dep.is_file() else dep.rglob("*.py"))})
        assert sorted(fit.training_code("elu3")) == listed, path


def stages_depending_on(file: str) -> set[str]:
    return {f"{path}:{name}" for path in ("dvc.yaml", "seeds/dvc.yaml") for name, stage in concrete_stages(path)
            if covered(file, dep_paths(path, stage))}


def test_editing_one_net_or_the_report_stales_only_their_own_stages():
    assert stages_depending_on("src/architectures/elu3.py") == {"dvc.yaml:train@elu3", "seeds/dvc.yaml:train@elu3",
                                                                "seeds/dvc.yaml:continue@elu3"}
    for module in (SRC / "reporting").glob("*.py"):
        assert stages_depending_on(module.relative_to(REPO).as_posix()) <= {"dvc.yaml:report",
                                                                             "seeds/dvc.yaml:table"}, module
    for module in CORE.rglob("*.py"):
        assert stages_depending_on(module.relative_to(REPO).as_posix()) == set(), module
    # 139 hand-kept lines before src/ was arranged by what each stage computes
    lines = [line for path in ("dvc.yaml", "seeds/dvc.yaml") for line in (REPO / path).read_text().splitlines()
             if line.strip().startswith("- src/")]
    assert len(lines) <= 139 // 3


def test_report_depends_on_every_file_it_reads():
    report = load_yaml("dvc.yaml")["stages"]["report"]
    deps = dep_paths("dvc.yaml", report)
    # details/NAME/training_run.json, not models/NAME.run.json: the report reads committed files only.
    reads = [*config.PER_ARCHITECTURE_DIRS, config.PROCESSED_DIR / "test_images.npy",
             config.PROCESSED_DIR / "classes.json"]
    lacking = [path.as_posix() for path in reads if not covered(path.as_posix(), deps)]
    assert not lacking, f"the report stage reads {lacking} without depending on them"


# --- 7. an unreachable tracking server stops a stage at once ------------------------------------------------

def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_unreachable_tracking_server_is_an_error_naming_the_variable(monkeypatch, tmp_path):
    uri = f"http://127.0.0.1:{closed_port()}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.delenv("DVC_ROOT", raising=False)
    monkeypatch.chdir(tmp_path)  # no DVC repository here: only the server is checked
    started = time.perf_counter()
    with pytest.raises(PipelineError, match=f"MLFLOW_TRACKING_URI={uri} is unreachable"):
        tracking.configure_store()
    assert time.perf_counter() - started < 3
