"""Classify image files with a trained model: the top classes of each, printed or written to a CSV.

Usage: python -m src.predict [--model MODEL] [--output CSV] [--batch-size N] [--top K] PATH...
       python -m src.predict --request-json IMAGE... > request.json   (a body for `mlflow models serve`)
"""

import argparse
import csv
import json
import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from src.core import config as paths
from src.core.errors import PipelineError, run_stage
from src.core.fileio import atomic_path

SIZE = 32
RESAMPLE = Image.Resampling.BICUBIC
FOLDER_IMAGES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
DEFAULT_DATASET = "cifar10"
HOW = f"""The input each image becomes (uint8, 32x32, RGB): Pillow reads the file (an animation's first
frame), turns it upright by its EXIF orientation, composites any transparency (RGBA, LA, palette or
tRNS) on white, replicates grayscale into R, G and B (16-bit gray scaled to 8 bits), then resizes the
whole image to 32x32 with Pillow's bicubic filter, antialiased: no crop, the aspect ratio is not kept,
and a 32x32 image passes unchanged.

Folders are searched recursively for {", ".join("*" + suffix for suffix in FOLDER_IMAGES)}
(any case; names starting with "." skipped); a file named on the command line is read whatever its
name. The model gets --batch-size images at a time; a progress bar shows on stderr when it is a terminal.

A models/NAME.keras file is the trained net alone: its predictions average the test-time
augmentation of params.yaml's `evaluate.tta`, as the test metrics do. A promoted model (the default)
has that augmentation inside.

Output: one line per image, "PATH: CLASS P, CLASS P, CLASS P" (the --top classes, probabilities). With
--output, a CSV instead, one row per image in input order, columns: path, top1, top1_probability, ...,
top3_probability, then one probability column per class, named after it.

Errors (a missing path, a file that is not an image) print one "error: ..." line each on stderr; the
other images are still predicted and the exit code is 2. A model that cannot be loaded stops it at once."""


def to_cifar(image: Image.Image) -> np.ndarray:
    """The documented rule (HOW): any Pillow image -> uint8 array (32, 32, 3)."""
    image = ImageOps.exif_transpose(image)
    if image.mode.startswith("I"):  # 16/32-bit grayscale: keep the top 8 bits
        image = image.convert("I").point(lambda value: value * (1 / 256)).convert("L")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info:
        image = Image.alpha_composite(Image.new("RGBA", image.size, "white"), image.convert("RGBA"))
    return np.asarray(image.convert("RGB").resize((SIZE, SIZE), RESAMPLE), dtype=np.uint8)


def read_image(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as image:
            return to_cifar(image)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise PipelineError(f"{path} is not a readable image ({error})") from None


def image_files(arguments: list[str]) -> tuple[list[Path], list[str]]:
    """The files to predict, in order (folders recursively, sorted), and one error per unusable argument."""
    files, errors = [], []
    for argument in arguments:
        path = Path(argument)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.suffix.lower() in FOLDER_IMAGES
                           and not p.name.startswith(".") and p.is_file())
            files += found
            if not found:
                errors.append(f"{path} holds no image files ({', '.join(sorted(FOLDER_IMAGES))})")
        elif path.exists():
            files.append(path)
        else:
            errors.append(f"{path} does not exist")
    return files, errors


def default_model() -> str:
    classes = paths.PROCESSED_DIR / "classes.json"
    if classes.exists():
        from src.core.arrays import load_classes
        from src.promote import registered_name

        return f"models:/{registered_name(load_classes(paths.PROCESSED_DIR))}@champion"
    return f"models:/{DEFAULT_DATASET}-cnn@champion"


def project_class_names(model: str) -> list[str]:
    if not (paths.PROCESSED_DIR / "classes.json").exists():
        raise PipelineError(f"model {model} carries no class names and {paths.PROCESSED_DIR}/classes.json is "
                            "missing; run from the project root after `dvc repro preprocess`, or use a model "
                            "promoted with `python -m src.promote`")
    from src.core.arrays import load_classes

    return load_classes(paths.PROCESSED_DIR)["class_names"]


def registered_class_names(uri: str) -> list[str] | None:
    """The `class_names` tag that src.promote sets on a registry version (models:/NAME@ALIAS, models:/NAME/N)."""
    match = re.fullmatch(r"models:/([^/@]+)(?:@([^/]+)|/(\d+))", uri)
    if match is None:
        return None
    import mlflow

    name, alias, number = match.groups()
    client = mlflow.MlflowClient()
    version = client.get_model_version_by_alias(name, alias) if alias else client.get_model_version(name, number)
    return json.loads(version.tags["class_names"]) if "class_names" in version.tags else None


def load_predictor(model: str) -> tuple[Callable[[np.ndarray], np.ndarray], list[str]]:
    """A function from uint8 images (N, 32, 32, 3) to probabilities (N, classes), and the class names."""
    if model.endswith((".keras", ".h5")) and not Path(model).is_file():
        raise PipelineError(f"model file {model} does not exist; train it with `dvc repro`")
    import keras

    keras.utils.disable_interactive_logging()  # no per-batch progress lines on stdout
    if model.endswith((".keras", ".h5")):
        try:
            net = keras.models.load_model(model)
        except (OSError, ValueError) as error:
            raise PipelineError(f"model file {model} cannot be loaded ({error})") from None
        names = project_class_names(model)
        from src.core.params import load_params
        from src.evaluation.tta import with_tta

        # A trained net alone: behind the test-time augmentation its test metrics were scored with.
        return with_tta(net, load_params().evaluate.tta).predict_on_batch, names

    import mlflow

    from src.core import tracking

    if model.startswith(("models:/", "runs:/")):
        uri = tracking.configure_store()
        database = tracking.sqlite_file()
        if database is not None and not database.exists():  # rather than create an empty store there
            raise PipelineError(f"no MLflow store {database} to resolve {model}; run from the project root, "
                                "set MLFLOW_TRACKING_URI, or pass --model models/NAME.keras")
    else:
        uri = mlflow.get_tracking_uri()
    try:
        net = mlflow.pyfunc.load_model(model)
        names = registered_class_names(model) or project_class_names(model)
    except mlflow.exceptions.MlflowException as error:
        hint = " (promote one with `python -m src.promote`)" if model.endswith("@champion") else ""
        raise PipelineError(f"model {model} does not resolve in {uri}: {error.message}{hint}") from None
    except OSError as error:
        raise PipelineError(f"model {model} cannot be loaded ({error})") from None
    try:  # a Keras model inside: call it directly (pyfunc's predict costs ~50 ms a call in tf.data set-up)
        raw = net.get_raw_model()
    except NotImplementedError:
        raw = None
    if isinstance(raw, keras.Model):
        return raw.predict_on_batch, names
    return (lambda images: np.asarray(net.predict(images))), names


def batches(files: list[Path], size: int, errors: list[str]) -> Iterator[tuple[list, list, np.ndarray | None]]:
    """(files, the readable ones, their images) ``size`` files at a time; unreadable files are reported."""
    for start in range(0, len(files), size):
        read, images = [], []
        for path in files[start:start + size]:
            try:
                images.append(read_image(path))
                read.append(path)
            except PipelineError as error:
                errors.append(str(error))
                report(str(error))
        yield files[start:start + size], read, np.stack(images) if images else None


def top_classes(probabilities: np.ndarray, top: int) -> np.ndarray:
    """Indices of the ``top`` most probable classes, most probable first (ties in class order)."""
    return np.argsort(-probabilities, kind="stable")[:top]


def top_line(path: Path, probabilities: np.ndarray, names: list[str], top: int) -> str:
    return f"{path}: " + ", ".join(f"{names[k]} {probabilities[k]:.4f}" for k in top_classes(probabilities, top))


def report(message: str) -> None:
    from tqdm import tqdm

    tqdm.write(f"error: {message}", file=sys.stderr)


def write_csv(output: Path, rows: list[tuple[Path, np.ndarray]], names: list[str], top: int) -> None:
    header = ["path"] + [f"top{k}{suffix}" for k in range(1, top + 1) for suffix in ("", "_probability")] + names
    with atomic_path(output, suffix=".csv") as tmp, tmp.open("w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(header)
        for path, probabilities in rows:
            best = top_classes(probabilities, top)
            writer.writerow([str(path)] + [cell for k in best for cell in (names[k], f"{probabilities[k]:.6g}")]
                            + [f"{p:.6g}" for p in probabilities])


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m src.predict", description=__doc__.split("\n\n")[0],
                                     epilog=HOW, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="+", metavar="PATH", help="image files or folders (searched recursively)")
    parser.add_argument("--model", help="models/NAME.keras, or an MLflow model URI (default: "
                        "models:/<dataset>-cnn@champion, the dataset from data/processed/classes.json, else cifar10)")
    parser.add_argument("--output", type=Path, help="write a CSV here (default: print it)")
    parser.add_argument("--batch-size", type=int, default=256, help="images per model call (default 256)")
    parser.add_argument("--top", type=int, default=3, help="classes per image (default 3)")
    parser.add_argument("--request-json", action="store_true",
                        help="print a `mlflow models serve` /invocations body {\"inputs\": [...]} for the images "
                        "(uint8, 32x32x3, converted as below) instead of predicting")
    args = parser.parse_args(argv)
    if args.batch_size < 1 or args.top < 1:
        parser.error("--batch-size and --top must be at least 1")
    return args


def request_body(files: list[Path], errors: list[str]) -> str:
    """`{"inputs": [...]}`: the images as nested uint8 lists, the JSON `mlflow models serve` takes for the
    logged model's signature (uint8 tensor, shape (-1, 32, 32, 3))."""
    images = [image for _, _, image in batches(files, max(1, len(files)), errors) if image is not None]
    return json.dumps({"inputs": images[0].tolist() if images else []}, separators=(",", ":"))


def main(argv: list[str]) -> None:
    args = parse_args(argv)
    files, errors = image_files(args.paths)
    if args.request_json or not files:  # no model needed
        for message in errors:
            report(message)
        if files:
            print(request_body(files, errors))
        raise SystemExit(2 if errors or not files else 0)
    model = args.model or default_model()
    predict, names = load_predictor(model)  # before the path errors: a bad model is the one error line
    for message in errors:
        report(message)
    from tqdm import tqdm

    rows = []
    with tqdm(total=len(files), unit="image", file=sys.stderr, disable=None, desc="predict") as progress:
        for batch, read, images in batches(files, args.batch_size, errors):
            if images is not None:
                probabilities = predict(images)
                if probabilities.shape[1] != len(names):
                    raise PipelineError(f"model {model} predicts {probabilities.shape[1]} classes but its class "
                                        f"list has {len(names)}; pass the model trained on this data set")
                predicted = list(zip(read, probabilities, strict=True))
                rows += predicted
                if not args.output:  # printed as they come, above the progress bar
                    tqdm.write("\n".join(top_line(*row, names, args.top) for row in predicted), file=sys.stdout)
            progress.update(len(batch))
    if args.output:
        write_csv(args.output, rows, names, min(args.top, len(names)))
        print(f"predict: {len(rows)} of {len(files)} images -> {args.output}")
    if errors:
        raise SystemExit(2)


if __name__ == "__main__":
    run_stage(main)
