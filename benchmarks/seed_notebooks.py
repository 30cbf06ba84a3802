"""Run a seed notebook's own code (benchmarks/seed*_notebook.py) on the pipeline's archive and record its
result for the seed table: seeds/notebooks/ROW.json (test accuracy, seconds per epoch, CPU, command, date).

Usage: python benchmarks/seed_notebooks.py ROW [--archive PATH] [--epochs N] [--from-log LOG]
ROW is the seed table's row the notebook's net is: elu3 (seed 000), strided2 and strided4 (seed 002's
model_1 and model_2), vgg6 (seed 004's cifar_cnn). --from-log records a run already made with the command
this script prints (its JSON line is the log's last line) instead of running it again.
"""

import argparse
import datetime
import json
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import REAL_ARCHIVE, REPO
from src.core.cli import DefaultsHelpFormatter
from src.core.config import NOTEBOOK_RESULTS_DIR
from src.core.fileio import write_json
from src.training import cpu

NOTEBOOKS = {  # row: (script, arguments before the epochs, the notebook's epochs)
    "elu3": ("benchmarks/seed000_notebook.py", [], 20),
    "strided2": ("benchmarks/seed002_notebook.py", ["model_1"], 15),
    "strided4": ("benchmarks/seed002_notebook.py", ["model_2"], 5),
    "vgg6": ("benchmarks/seed004_notebook.py", [], 10),
}


def command(row: str, archive: Path, epochs: int) -> list[str]:
    script, arguments, _ = NOTEBOOKS[row]
    return ["python", script, os.path.relpath(archive, REPO), *arguments, str(epochs)]


def record(row: str, output: str, run: list[str], folder: Path = REPO / NOTEBOOK_RESULTS_DIR) -> Path:
    result = json.loads(output.strip().splitlines()[-1])
    epochs = result["epoch_seconds"]
    entry = {"row": row, "command": " ".join(run), "test_accuracy": round(float(result["test_accuracy"]), 6),
             "epochs": len(epochs), "train_images": result["train_images"],
             "seconds_per_epoch": round(sorted(epochs)[len(epochs) // 2], 3),  # the median, as the pipeline's
             "training_seconds_per_epoch": round(sorted(result["training_seconds"])[len(epochs) // 2], 3),
             "train_seconds": round(sum(epochs), 2), "date": datetime.date.today().isoformat(), **cpu.describe()}
    path = folder / f"{row}.json"
    write_json(path, entry)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=DefaultsHelpFormatter)
    parser.add_argument("row", choices=sorted(NOTEBOOKS), help="the seed table's row whose notebook code runs")
    parser.add_argument("--archive", type=Path, default=REAL_ARCHIVE, help="the CIFAR-10 archive")
    parser.add_argument("--epochs", type=int, help="epochs (default: the notebook's)")
    parser.add_argument("--from-log", type=Path,
                        help="read the figures from this log of an earlier run instead of running (default: run)")
    args = parser.parse_args()
    run = command(args.row, args.archive, args.epochs or NOTEBOOKS[args.row][2])
    if args.from_log:
        output = args.from_log.read_text()
    else:
        result = subprocess.run([sys.executable, *run[1:]], cwd=REPO, capture_output=True, text=True)
        if result.returncode != 0:
            sys.exit(f"error: {' '.join(run)} failed:\n{result.stderr[-2000:]}")
        output = result.stdout
    print(f"{args.row}: {record(args.row, output, run)}")


if __name__ == "__main__":
    main()
