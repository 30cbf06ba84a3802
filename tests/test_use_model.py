"""Using the trained model (issue 14): promote it to the registry, predict image files, serve it over REST."""

import contextlib
import csv
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import mlflow
import numpy as np
import pytest
from PIL import Image

import src  # noqa: F401  (before keras: the stages' TensorFlow settings)
from tests.conftest import assert_one_error_line, stage_env
from tests.test_dvc_pipeline import edit_params, sh, tiny_repo

ARCHITECTURES = ["elu3", "strided2"]
MODEL_NAME = "cifar10-cnn"


def start(root: Path, module: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", module, *args], cwd=root, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=stage_env())


def finish(process: subprocess.Popen) -> subprocess.CompletedProcess:
    stdout, stderr = process.communicate(timeout=300)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def run(root: Path, module: str, *args: str) -> subprocess.CompletedProcess:
    return finish(start(root, module, *args))


@pytest.fixture(scope="module")
def root(tmp_path_factory, cifar10_archive) -> Path:
    """The pipeline up to evaluate (the report is not needed here), two architectures, one epoch each,
    scored without test-time augmentation: generated images are noise, and averaged over 6 views both
    tiny nets predict one class (10 % each), where promote's tests need a better and a worse one. The
    last tests switch `evaluate.tta` on."""
    root = tiny_repo(tmp_path_factory.mktemp("use_model"), cifar10_archive, ARCHITECTURES)
    # Seed 2: on this noise strided2 validates at 12 % and elu3 (seed 42) at 8 %, so promote, which
    # chooses by validation accuracy, has a better and a worse model (seed 42 for both tied at 8 %).
    edit_params(root, **{"evaluate.tta": "none", "train.strided2.seed": 2})
    sh(root, "dvc", "repro", *(f"evaluate@{name}" for name in ARCHITECTURES))
    return root


def accuracy(root: Path, name: str) -> float:
    return json.loads((root / f"reports/eval/{name}.json").read_text())["test_accuracy_tta"]


def val_accuracy(root: Path, name: str) -> float:
    return json.loads((root / f"reports/train/{name}.json").read_text())["val_accuracy"]


@pytest.fixture(scope="module")
def background(root, images):
    """Predictions that need no champion, started beside the promotions: each process spends seconds
    importing TensorFlow on one core, and there are two."""
    started = {
        "keras_file": start(root, "src.predict", "--model", "models/elu3.keras", str(images["files"][4])),
        "bad_uri": start(root, "src.predict", "--model", "models:/cifar10-cnn@nobody", str(images["files"][0]),
                         str(images["missing"])),
    }
    yield started
    for process in started.values():
        if process.poll() is None:
            process.kill()
            process.communicate()


@pytest.fixture(scope="module")
def promotions(root, background) -> dict:
    """Promote the model best on validation, then try the worse one without and with --force."""
    best, worse = sorted(ARCHITECTURES, key=lambda name: val_accuracy(root, name), reverse=True)
    assert val_accuracy(root, best) > val_accuracy(root, worse), "the tiny models tie: pick other seeds"
    return {"best": best, "worse": worse, "default": run(root, "src.promote"),
            "refused": run(root, "src.promote", worse), "forced": run(root, "src.promote", worse, "--force")}


def test_promote_registers_the_best_model_under_the_champion_alias(root, promotions):
    best, worse = promotions["best"], promotions["worse"]
    assert promotions["default"].returncode == 0, promotions["default"].stderr
    assert f"{MODEL_NAME} version 1 ({best}" in promotions["default"].stdout
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")
    first = client.get_model_version(MODEL_NAME, "1")
    trained = json.loads((root / f"models/{best}.run.json").read_text())
    assert first.source == trained["model_uri"] and first.run_id == trained["run_id"]  # `evaluate.tta: none`
    assert first.tags["tta"] == "none" and first.tags["architecture"] == best
    assert float(first.tags["val_accuracy"]) == pytest.approx(val_accuracy(root, best))
    assert float(first.tags["test_accuracy_tta"]) == pytest.approx(accuracy(root, best))
    assert first.tags["git_commit"] == trained["git_commit"] == sh(root, "git", "rev-parse", "HEAD").strip()
    assert first.tags["data_md5"] == trained["data_md5"]
    assert json.loads(first.tags["class_names"])[:2] == ["airplane", "automobile"]

    points = 100 * (val_accuracy(root, best) - val_accuracy(root, worse))
    assert_one_error_line(promotions["refused"], f"{worse} (validation accuracy",
                          f"{points:.2f} percentage points below",
                          f"{MODEL_NAME}@champion (version 1, {best}", "--force")
    assert promotions["forced"].returncode == 0, promotions["forced"].stderr
    champion = client.get_model_version_by_alias(MODEL_NAME, "champion")
    assert int(champion.version) == 2 and champion.tags["architecture"] == worse
    assert float(champion.tags["test_accuracy_tta"]) == pytest.approx(accuracy(root, worse))


@pytest.mark.parametrize(("argument", "fragments"), [
    ("resnet_nope", ["unknown architecture 'resnet_nope'", "elu3, strided2"]),
    ("relu4", ["training metrics of relu4 is missing", "dvc repro train@relu4"]),
])
def test_promote_names_what_to_fix(root, argument, fragments):
    assert_one_error_line(run(root, "src.promote", argument), *fragments)


# --- predict ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> dict:
    """Readable images of several sizes, modes and formats (some in a folder), and unreadable files."""
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(7)

    def pixels(height, width, channels=3):
        return rng.integers(0, 256, (height, width, channels), dtype=np.uint8)

    (folder / "batch/nested").mkdir(parents=True)
    Image.fromarray(pixels(32, 32)).save(folder / "rgb.png")
    Image.fromarray(pixels(40, 48, 4), "RGBA").save(folder / "rgba.png")
    Image.fromarray(pixels(50, 50)[..., 0], "L").save(folder / "gray.jpg", quality=90)
    Image.fromarray(pixels(30, 40)).convert("P").save(folder / "palette.png")
    Image.fromarray(pixels(60, 100)).save(folder / "wide.png")  # 100 wide, 60 high
    Image.fromarray(pixels(64, 64)).save(folder / "batch/nested/photo.JPEG", quality=85)
    Image.fromarray(pixels(33, 31)).save(folder / "batch/small.png")
    (folder / "batch/readme.txt").write_text("not an image, and not picked up from a folder")
    (folder / "broken.png").write_bytes((folder / "rgb.png").read_bytes()[:300])  # truncated PNG
    (folder / "notes.txt").write_text("not an image")
    readable = [folder / name for name in ("rgb.png", "rgba.png", "gray.jpg", "palette.png", "wide.png")]
    return {"files": readable, "folder": folder / "batch", "folder_files": [
        folder / "batch/nested/photo.JPEG", folder / "batch/small.png"], "broken": folder / "broken.png",
        "text": folder / "notes.txt", "missing": folder / "missing.png"}


def expected_pixels(path: Path) -> np.ndarray:
    """The rule `--help` documents, computed independently: alpha over white, RGB, bicubic 32x32."""
    with Image.open(path) as image:
        if image.mode == "RGBA":
            rgba = np.asarray(image, dtype=np.float64)
            alpha = rgba[..., 3:] / 255
            rgb = Image.fromarray(np.round(rgba[..., :3] * alpha + 255 * (1 - alpha)).astype(np.uint8))
        else:
            rgb = image.convert("RGB")
        return np.asarray(rgb.resize((32, 32), Image.Resampling.BICUBIC))


def read_csv(path: Path) -> list[dict]:
    with path.open(newline="") as stream:
        return list(csv.DictReader(stream))


def keras_probabilities(root: Path, name: str, pixels: np.ndarray) -> np.ndarray:
    """The trained net's predictions behind the project's test-time augmentation, as evaluate scores them."""
    import keras
    import yaml

    from src.evaluation.tta import with_tta

    tta = yaml.safe_load((root / "params.yaml").read_text())["evaluate"]["tta"]
    return with_tta(keras.models.load_model(root / f"models/{name}.keras"), tta).predict(pixels, verbose=0)


@pytest.fixture(scope="module")
def request_body(root, images) -> dict:
    """`--request-json` on every readable image: the exact pixels predict feeds the model."""
    readable = images["files"] + images["folder_files"]
    result = run(root, "src.predict", "--request-json", *map(str, readable))
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_request_json_holds_the_documented_pixels(root, images, request_body):
    readable = images["files"] + images["folder_files"]
    pixels = np.array(request_body["inputs"])
    assert pixels.shape == (len(readable), 32, 32, 3) and pixels.min() >= 0 and pixels.max() <= 255
    for path, got in zip(readable, pixels, strict=True):
        difference = np.abs(got - expected_pixels(path).astype(int)).max()
        assert difference <= (1 if path.name == "rgba.png" else 0), (path.name, difference)  # rounding of alpha
    assert pixels[0].tolist() == np.asarray(Image.open(readable[0])).tolist()  # 32x32 RGB passes unchanged
    help_text = run(root, "src.predict", "--help").stdout
    assert "bicubic" in help_text and "white" in help_text and "no crop" in help_text


@pytest.fixture(scope="module")
def champion_predictions(root, images, promotions, tmp_path_factory) -> tuple[subprocess.CompletedProcess, Path]:
    """The default model (the champion) on files, a folder, and three bad paths, to a CSV."""
    output = tmp_path_factory.mktemp("predictions") / "preds.csv"
    paths = [*images["files"][:3], images["broken"], images["text"], images["missing"], *images["files"][3:],
             images["folder"]]
    result = run(root, "src.predict", "--output", str(output), "--batch-size", "3", *map(str, paths))
    return result, output


def test_predict_reports_each_bad_file_and_predicts_the_others(root, images, promotions, champion_predictions,
                                                                  request_body):
    result, output = champion_predictions
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 3 and "Traceback" not in result.stderr, result.stderr
    assert any(str(images["broken"]) in e and "not a readable image" in e for e in errors)
    assert any(str(images["text"]) in e and "not a readable image" in e for e in errors)
    assert any(str(images["missing"]) in e and "does not exist" in e for e in errors)

    readable = images["files"] + images["folder_files"]
    rows = read_csv(output)
    assert [row["path"] for row in rows] == list(map(str, readable))  # input order, folder sorted; no readme.txt
    classes = json.loads((root / "data/processed/classes.json").read_text())["class_names"]
    assert list(rows[0]) == ["path", "top1", "top1_probability", "top2", "top2_probability", "top3",
                             "top3_probability", *classes]
    got = np.array([[float(row[name]) for name in classes] for row in rows])
    pixels = np.array(request_body["inputs"], dtype=np.uint8)
    expected = keras_probabilities(root, promotions["worse"], pixels)  # the champion after --force
    np.testing.assert_allclose(got, expected, atol=1e-5)
    for row, probabilities in zip(rows, expected, strict=True):
        best = np.argsort(-probabilities)[:3]
        assert [row[f"top{k}"] for k in (1, 2, 3)] == [classes[i] for i in best]
        assert float(row["top1_probability"]) == pytest.approx(probabilities[best[0]], abs=1e-5)


def test_predict_from_a_keras_file_prints_the_top_three(root, images, background):
    path = images["files"][4]
    result = finish(background["keras_file"])
    assert result.returncode == 0, result.stderr
    classes = json.loads((root / "data/processed/classes.json").read_text())["class_names"]
    probabilities = keras_probabilities(root, "elu3", expected_pixels(path)[None])[0]
    best = np.argsort(-probabilities)[:3]
    assert result.stdout == f"{path}: " + ", ".join(f"{classes[i]} {probabilities[i]:.4f}" for i in best) + "\n"


def test_predict_with_a_model_that_does_not_resolve_is_one_error(root, images, background):
    assert_one_error_line(finish(background["bad_uri"]), "model models:/cifar10-cnn@nobody does not resolve")
    result = run(root, "src.predict", "--model", "models/missing.keras", str(images["files"][0]))
    assert_one_error_line(result, "model file models/missing.keras does not exist")


# --- serve ----------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", 0))
        except OSError as error:
            print(f"skipping: cannot bind a local port ({error})")
            pytest.skip(f"cannot bind a local port ({error})")
        return probe.getsockname()[1]


def post(url: str, body: dict) -> dict:
    request = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


def test_served_champion_answers_with_the_predicted_probabilities(root, promotions, champion_predictions,
                                                                  request_body, tmp_path):
    port = free_port()
    log = (tmp_path / "serve.log").open("w")
    # `mlflow models serve` execs `uvicorn` from PATH: the virtualenv's bin must be on it.
    env = stage_env({"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"})
    command = [sys.executable, "-m", "mlflow", "models", "serve", "-m", f"models:/{MODEL_NAME}@champion",
               "--env-manager", "local", "-p", str(port)]
    server = subprocess.Popen(command, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT,
                              start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            assert server.poll() is None, (tmp_path / "serve.log").read_text()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2):
                    break
            except OSError:
                assert time.monotonic() < deadline, (tmp_path / "serve.log").read_text()
                time.sleep(0.5)
        answer = post(f"http://127.0.0.1:{port}/invocations", request_body)
    finally:  # the server's whole process group: mlflow and the uvicorn it starts
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        log.close()
    classes = json.loads((root / "data/processed/classes.json").read_text())["class_names"]
    predicted = np.array([[float(row[name]) for name in classes] for row in read_csv(champion_predictions[1])])
    np.testing.assert_allclose(np.array(answer["predictions"]), predicted, atol=1e-5)


# --- test-time augmentation: what the test metrics score is what promote registers and predict uses ----


@pytest.fixture(scope="module")
def promoted_with_tta(root, images, promotions, champion_predictions, request_body) -> dict:
    """After the tests above: `evaluate.tta: flip_shift`, evaluate again, promote elu3 (twice) and predict."""
    edit_params(root, **{"evaluate.tta": "flip_shift"})
    sh(root, "dvc", "repro", *(f"evaluate@{name}" for name in ARCHITECTURES))
    promoted = [run(root, "src.promote", "elu3", "--force") for _ in range(2)]
    predicted = run(root, "src.predict", "--model", "models/elu3.keras", str(images["files"][0]))
    return {"promoted": promoted, "predicted": predicted}


def test_promote_registers_the_net_behind_tta_and_predict_applies_it(root, images, request_body,
                                                                     promoted_with_tta):
    first, again = promoted_with_tta["promoted"]
    assert first.returncode == 0 and "(elu3, validation accuracy" in first.stdout, first.stderr
    assert again.returncode == 0 and "elu3 is already cifar10-cnn@champion" in again.stdout, again.stderr
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")
    champion = client.get_model_version_by_alias(MODEL_NAME, "champion")
    trained = json.loads((root / "models/elu3.run.json").read_text())
    # Not the training's own logged model: the net behind flip_shift, logged into the training run.
    assert champion.tags["tta"] == "flip_shift" and champion.tags["run_id"] == trained["run_id"]
    assert champion.source != trained["model_uri"] and champion.run_id == trained["run_id"]
    assert client.get_logged_model(champion.source.removeprefix("models:/")).source_run_id == trained["run_id"]
    assert float(champion.tags["test_accuracy_tta"]) == accuracy(root, "elu3")
    pixels = np.array(request_body["inputs"], dtype=np.uint8)
    expected = keras_probabilities(root, "elu3", pixels)  # behind flip_shift, as evaluate scored it
    import keras

    alone = keras.models.load_model(root / "models/elu3.keras").predict(pixels, verbose=0)
    assert np.abs(expected - alone).max() > 1e-3  # the augmentation changes the probabilities
    local = client.get_model_version_download_uri(MODEL_NAME, champion.version)  # under mlruns/
    served = mlflow.pyfunc.load_model(local).predict(pixels)  # as `mlflow models serve` does
    np.testing.assert_allclose(np.asarray(served), expected, atol=1e-5)
    classes = json.loads((root / "data/processed/classes.json").read_text())["class_names"]
    first = keras_probabilities(root, "elu3", pixels[:1])[0]  # one image, as predict called it (bfloat16 rounds
    best = np.argsort(-first)[:3]                              # differently in other batch sizes)
    assert promoted_with_tta["predicted"].stdout == (
        f"{images['files'][0]}: " + ", ".join(f"{classes[i]} {first[i]:.4f}" for i in best) + "\n")


def test_b8_inference_benchmark_smoke(root, tmp_path, promoted_with_tta):
    result = subprocess.run([sys.executable, "benchmarks/b8_inference.py", "--repo", str(root), "--architectures",
                             "strided2", "--files", "20", "--calls", "2"], cwd=Path(__file__).resolve().parents[1],
                            capture_output=True, text=True, env=stage_env({"BENCHMARKS_MD": str(tmp_path / "B.md")}))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    text = (tmp_path / "B.md").read_text()
    assert "| strided2 | none |" in text and "| strided2 | flip_shift |" in text
    assert "`python -m src.predict --model models/strided2.keras one.png`" in text
