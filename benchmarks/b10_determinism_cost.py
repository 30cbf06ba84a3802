"""B10: what determinism costs: `airbench` epochs with TensorFlow's inter-op parallelism on (its default)
and off (TF_NUM_INTEROP_THREADS=1, what src/__init__.py sets so that bfloat16 fits repeat bit for bit).

Each fit runs in a fresh process, the two settings alternated round by round, on the first --images
training images of data/split (params.yaml's airbench recipe, --epochs epochs). Reports the median of
every epoch but each fit's first (tracing, warm-up), and whether the two runs of each setting gave the
same weights and history.

Usage: python benchmarks/b10_determinism_cost.py [--images 8192] [--epochs 3] [--rounds 3] [--repo PATH]
"""

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import REPO, append_result, median

# One fit in its own process. `import src` sets TF_NUM_INTEROP_THREADS=1; "default" removes it again before
# TensorFlow starts, as the pipeline ran before.
FIT = """
import hashlib, json, os, sys
import src
if sys.argv[1] == "default":
    del os.environ["TF_NUM_INTEROP_THREADS"]
import numpy as np
from src.core.arrays import load_array
from src.core.params import load_params
from src.training import fit, models
from src.training.normalization import normalization_stats
images, epochs = int(sys.argv[2]), int(sys.argv[3])
config = load_params().train["airbench"].model_copy(update={"epochs": epochs})
train = [load_array("data/split", name)[:images] for name in ("train_images", "train_labels")]
val = [load_array("data/split", name)[:2000] for name in ("val_images", "val_labels")]
fit.make_deterministic(config.seed)
model = models.build_model("airbench", train[1].shape[1], normalization_stats(train[0], config.normalization),
                           config, train_images=train[0])
result = fit.train(model, config, tuple(train), tuple(val))
digest = hashlib.sha256(result.history.drop(columns="epoch_seconds").to_csv().encode())
for weight in model.get_weights():
    digest.update(np.ascontiguousarray(weight).tobytes())
print(json.dumps({"seconds": result.history["epoch_seconds"].tolist()[1:], "hash": digest.hexdigest()[:12]}))
"""
SETTINGS = ("default", "one_op_at_a_time")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=8192, help="training images per fit (default: 8192)")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per fit, the first not timed (default: 3)")
    parser.add_argument("--rounds", type=int, default=3, help="fits of each setting, alternated (default: 3)")
    parser.add_argument("--repo", type=Path, default=REPO,
                        help="the project whose params.yaml and data/split it reads (default: this repository)")
    args = parser.parse_args()
    if args.epochs < 2:
        parser.error("--epochs must be at least 2: the first epoch of a fit is not timed")
    seconds, hashes = {s: [] for s in SETTINGS}, {s: [] for s in SETTINGS}
    for round_ in range(args.rounds):
        for setting in SETTINGS if round_ % 2 == 0 else reversed(SETTINGS):
            result = subprocess.run([sys.executable, "-c", FIT, setting, str(args.images), str(args.epochs)],
                                    cwd=args.repo, capture_output=True, text=True,
                                    env={**os.environ, "PYTHONPATH": str(REPO)})
            if result.returncode != 0:
                sys.exit(f"error: the {setting} fit failed: {result.stderr.strip().splitlines()[-1:]}")
            fitted = json.loads(result.stdout.strip().splitlines()[-1])
            seconds[setting] += fitted["seconds"]
            hashes[setting].append(fitted["hash"])
            print(f"round {round_ + 1} {setting}: {fitted}", flush=True)
    default, serial = (median(seconds[s]) for s in SETTINGS)
    append_result("B10 what determinism costs", " ".join(["python benchmarks/b10_determinism_cost.py",
                                                           f"--images {args.images}", f"--epochs {args.epochs}",
                                                           f"--rounds {args.rounds}"]), [
        f"`airbench` (params.yaml's recipe, bfloat16), {args.epochs} epochs of {args.images} training images per "
        f"fit, {args.rounds} fits of each setting in fresh processes, alternated; median of every epoch but each "
        "fit's first.",
        "",
        "| TensorFlow inter-op parallelism | median epoch | distinct results over the fits |",
        "|---|---:|---:|",
        f"| on (TensorFlow's default) | {default:.2f} s | {len(set(hashes['default']))} of {args.rounds} |",
        f"| off (`TF_NUM_INTEROP_THREADS=1`, the pipeline's) | {serial:.2f} s | "
        f"{len(set(hashes['one_op_at_a_time']))} of {args.rounds} |",
        "",
        f"**{serial / default:.3f}×** the default's epoch time.",
    ])


if __name__ == "__main__":
    main()
