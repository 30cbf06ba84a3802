"""B8: using a trained model: predict's and `mlflow models serve`'s speed, without and with test-time augmentation.

For each architecture, side by side without TTA and with params.yaml's `evaluate.tta`: the latency of
one image in-process (model loaded, median of --calls), the throughput of `src.predict` over a folder of
32x32 PNGs cut from the test set (reading the files included), the wall time of one `python -m src.predict`
command on one image (TensorFlow's start-up included), and `mlflow models serve` of the same model
saved in MLflow's TensorFlow flavor: start-up, then one and 100 images per request (medians of --calls).

Usage: python benchmarks/b8_inference.py [--repo REPO] [--architectures elu3 airbench] [--files 2000]
       [--calls 20] (REPO after `dvc repro`: its models/, data/processed/ and params.yaml)
"""

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import src  # noqa: F401  (TensorFlow settings, as in every stage)
from benchmarks.common import REPO, append_result, median
from src.core.arrays import load_array
from src.core.cli import DefaultsHelpFormatter
from src.core.params import load_params


def seconds_per_call(function, calls: int) -> float:
    function()  # traces
    times = []
    for _ in range(calls):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return median(times)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def post(url: str, images: np.ndarray) -> None:
    body = json.dumps({"inputs": images.tolist()}).encode()
    request = urllib.request.Request(url, body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=120) as response:
        response.read()


def serve(model_dir: Path, images: np.ndarray, calls: int) -> tuple[float, float, float]:
    """`mlflow models serve` of a saved MLflow model: start-up seconds, then seconds per 1 and 100 images."""
    port = free_port()
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    started = time.perf_counter()
    server = subprocess.Popen([sys.executable, "-m", "mlflow", "models", "serve", "-m", str(model_dir),
                               "--env-manager", "local", "-p", str(port)], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        while True:
            if server.poll() is not None:
                sys.exit(f"mlflow models serve of {model_dir} exited with {server.returncode}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2):
                    break
            except OSError:
                time.sleep(0.2)
        startup = time.perf_counter() - started
        url = f"http://127.0.0.1:{port}/invocations"
        return (startup, seconds_per_call(lambda: post(url, images[:1]), calls),
                seconds_per_call(lambda: post(url, images[:100]), calls))
    finally:
        os.killpg(server.pid, 15)
        server.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=DefaultsHelpFormatter)
    parser.add_argument("--repo", type=Path, default=REPO, help="a repository after `dvc repro`")
    parser.add_argument("--architectures", nargs="*", help="the nets to time (default: params.yaml's `architectures`)")
    parser.add_argument("--files", type=int, default=2000, help="32x32 PNG files predicted from a folder")
    parser.add_argument("--calls", type=int, default=20, help="timed calls per median")
    args = parser.parse_args()

    import keras
    import mlflow
    from PIL import Image

    from src import predict
    from src.evaluation.tta import with_tta

    keras.utils.disable_interactive_logging()
    repo = args.repo.resolve()
    params = load_params(repo / "params.yaml")
    tta = params.evaluate.tta
    names = args.architectures or params.architectures
    images = load_array(repo / "data/processed", "test_images")[:max(args.files, 100)]
    rows, commands = [], []
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        folder = scratch / "images"
        folder.mkdir()
        for i, image in enumerate(images[:args.files]):
            Image.fromarray(image).save(folder / f"{i:05d}.png")
        os.chdir(repo)  # predict reads classes.json and params.yaml from the project root
        for name in names:
            net = keras.models.load_model(repo / "models" / f"{name}.keras")
            for mode in dict.fromkeys(("none", tta)):
                model = with_tta(net, mode)
                one = seconds_per_call(lambda model=model: model.predict_on_batch(images[:1]), args.calls)
                files, errors = predict.image_files([str(folder)])
                started = time.perf_counter()
                for _, _, batch in predict.batches(files, 256, errors):
                    model.predict_on_batch(batch)
                throughput = len(files) / (time.perf_counter() - started)
                saved = scratch / f"{name}-{mode}"
                mlflow.tensorflow.save_model(model, saved, input_example=images[:2])
                startup, request_one, request_hundred = serve(saved, images, args.calls)
                rows.append(f"| {name} | {mode} | {1000 * one:.1f} ms | {throughput:,.0f} images/s | "
                            f"{startup:.1f} s | {1000 * request_one:.0f} ms | {1000 * request_hundred:.0f} ms |")
            one_file = str(folder / "00000.png")
            command = [sys.executable, "-m", "src.predict", "--model", f"models/{name}.keras", one_file]
            walls = []
            for _ in range(3):
                started = time.perf_counter()
                subprocess.run(command, check=True, capture_output=True, env={**os.environ, "PYTHONPATH": str(repo)})
                walls.append(time.perf_counter() - started)
            commands.append(f"- `python -m src.predict --model models/{name}.keras one.png` (TTA {tta}): "
                            f"{median(walls):.1f} s wall, median of 3")
    command = (f"python benchmarks/b8_inference.py --repo {args.repo} --files {args.files} --calls {args.calls}"
               + (f" --architectures {' '.join(args.architectures)}" if args.architectures else ""))
    append_result("B8 inference: predict and serve, without and with TTA", command, [
        f"Models of `{repo.name}` (its `dvc repro`); {args.files:,} PNGs of 32x32 test images; medians of "
        f"{args.calls} calls after one warm-up.",
        "",
        "| net | TTA | one image in-process | folder of PNGs via src.predict | `mlflow models serve` start-up "
        "| 1 image per request | 100 images per request |",
        "|---|---|---:|---:|---:|---:|---:|",
        *rows,
        "",
        "One command on one image, TensorFlow's start-up and the model's loading included:",
        "",
        *commands,
    ])


if __name__ == "__main__":
    main()
