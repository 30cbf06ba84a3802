"""B2: wall time and peak RSS of the data stages (download from the local archive, preprocess, split).

Each repeat runs the three stages in a fresh scratch folder, each under /usr/bin/time -v; the
total is the sum of the three walls, the peak the largest of the three processes.

Usage: python benchmarks/b2_data_stages.py [--repeats 3] [--archive PATH --md5 MD5] [--val-fraction F]
"""

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import REAL_ARCHIVE, REAL_MD5, append_result, median, run_stage, scratch_project
from src.core.cli import DefaultsHelpFormatter

STAGES = ("download", "preprocess", "split")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=DefaultsHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each stage")
    parser.add_argument("--archive", type=Path, default=REAL_ARCHIVE, help="the CIFAR-10 archive")
    parser.add_argument("--md5", default=REAL_MD5, help="its md5")
    parser.add_argument("--val-fraction", type=float, help="split.val_fraction (default: params.yaml's; "
                        "a small generated archive needs a larger one)")
    args = parser.parse_args()
    split = {"split.val_fraction": args.val_fraction} if args.val_fraction is not None else {}
    runs = []
    for repeat in range(args.repeats):
        with tempfile.TemporaryDirectory() as scratch:
            project = scratch_project(Path(scratch) / f"run{repeat}", args.archive.resolve(), args.md5, **split)
            runs.append({stage: run_stage(project, stage)[:2] for stage in STAGES})
    rows = [f"| {stage} | {median([r[stage][0] for r in runs]):.1f} | {median([r[stage][1] for r in runs]):,.0f} |"
            for stage in STAGES]
    total = median([sum(r[s][0] for s in STAGES) for r in runs])
    peak = median([max(r[s][1] for s in STAGES) for r in runs])
    append_result("B2 data stages", f"python benchmarks/b2_data_stages.py --repeats {args.repeats}", [
        f"Median of {args.repeats} runs from scratch; goal: under 60 s and 1.5 GB.",
        "",
        "| stage | wall (s) | peak RSS (MB) |",
        "|---|---:|---:|",
        *rows,
        f"| **all three** | **{total:.1f}** | **{peak:,.0f}** (largest stage) |",
    ])


if __name__ == "__main__":
    main()
