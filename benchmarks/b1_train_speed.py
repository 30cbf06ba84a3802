"""B1: seed 000's notebook code against the pipeline's train@elu3, same epochs, batch, optimizer.

Runs alternate A (seed) B (pipeline) A B ..., each under /usr/bin/time -v. The pipeline side
uses seed 000's normalization (standardize) and is scored by the evaluate stage. The seed trains
on all 50,000 training images and validates on the test set; the pipeline keeps a validation
split, here 1 % (49,500 training images) so that both learn from the same data: with the
default 20 % split elu3 lands ~3 points lower from the smaller training set alone. The seed
validates on 10,000 images each epoch and the pipeline on its 500, so the ratio compares training
alone: epoch time less the validation pass, on both sides. Both train in float32 (bfloat16's gain
is B6's), and time per training image is reported beside time per epoch.

Usage: python benchmarks/b1_train_speed.py [--epochs 20] [--pairs 3] [--val-fraction 0.01]
       [--archive PATH --md5 MD5]
"""

import argparse
import csv
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import (
    REAL_ARCHIVE,
    REAL_MD5,
    REPO,
    append_result,
    median,
    run_stage,
    scratch_project,
    timed,
)
from src.core.cli import DefaultsHelpFormatter


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=DefaultsHelpFormatter)
    parser.add_argument("--epochs", type=int, default=20, help="epochs of each timed training")
    parser.add_argument("--pairs", type=int, default=3, help="alternated pairs of runs")
    parser.add_argument("--val-fraction", type=float, default=0.01,
                        help="the pipeline's split.val_fraction (tiny test archives need a larger one)")
    parser.add_argument("--archive", type=Path, default=REAL_ARCHIVE, help="the CIFAR-10 archive")
    parser.add_argument("--md5", default=REAL_MD5, help="its md5")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as scratch:
        project = scratch_project(Path(scratch) / "pipeline", args.archive.resolve(), args.md5,
                                  **{"train.elu3.normalization": "standardize", "split.val_fraction": args.val_fraction,
                                     "train.elu3.epochs": args.epochs, "train.elu3.precision": "float32"})
        for stage in ("download", "preprocess", "split"):
            run_stage(project, stage)
        seed, pipeline = [], []
        for _ in range(args.pairs):
            _, peak, out = timed([sys.executable, str(REPO / "benchmarks/seed000_notebook.py"),
                                  str(args.archive.resolve()), str(args.epochs)], Path(scratch))
            result = json.loads(out.strip().splitlines()[-1])
            training = median(result["training_seconds"])
            seed.append({"epoch": median(result["epoch_seconds"]), "training": training, "peak": peak,
                         "acc": result["test_accuracy"], "per_image": training / result["train_images"]})
            _, peak, _ = run_stage(project, "train", "elu3")
            with (project / "reports/history/elu3.csv").open() as history:
                epoch_seconds = [float(row["epoch_seconds"]) for row in csv.DictReader(history)]
            summary = json.loads((project / "reports/train/elu3.json").read_text())
            training = median(epoch_seconds) - summary["validation_seconds"] / summary["epochs_run"]
            run_stage(project, "evaluate", "elu3")
            accuracy = json.loads((project / "reports/eval/elu3.json").read_text())["test_accuracy_single_view"]
            train_images = sum(json.loads((project / "data/split/class_counts.json").read_text())["train"].values())
            pipeline.append({"epoch": median(epoch_seconds), "training": training, "peak": peak, "acc": accuracy,
                             "per_image": training / train_images})

    def row(name, runs):
        return (f"| {name} | {median([r['epoch'] for r in runs]):.2f} | {median([r['training'] for r in runs]):.2f} | "
                f"{1e6 * median([r['per_image'] for r in runs]):.0f} | {max(r['peak'] for r in runs):,.0f} | "
                f"{100 * median([r['acc'] for r in runs]):.2f} % |")

    ratio_epoch = median([r["training"] for r in pipeline]) / median([r["training"] for r in seed])
    ratio_image = median([r["per_image"] for r in pipeline]) / median([r["per_image"] for r in seed])
    append_result("B1 train speed vs seed 000", f"python benchmarks/b1_train_speed.py --epochs {args.epochs} "
                  f"--pairs {args.pairs} --val-fraction {args.val_fraction}", [
        f"{args.pairs} pairs, alternated seed / pipeline, {args.epochs} epochs each, batch 250, Adam, float32; "
        f"the pipeline with normalization standardize, val_fraction {args.val_fraction} "
        f"({train_images:,} training images).",
        "",
        "| code | s / epoch, validation included (median) | s / epoch, training alone | µs / training image "
        "(training alone) | peak RSS (MB, max) | test accuracy (median) |",
        "|---|---:|---:|---:|---:|---:|",
        row("seed 000 notebook", seed),
        row("pipeline train@elu3", pipeline),
        "",
        "The seed validates on 10,000 images per epoch, the pipeline on its validation split; the ratio "
        "compares training alone.",
        "",
        f"Ratio pipeline / seed, training alone: **{ratio_epoch:.2f}** per epoch, **{ratio_image:.2f}** per "
        "training image.",
    ])


if __name__ == "__main__":
    main()
