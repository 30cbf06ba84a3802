"""B5: a second clean clone, same params, against a reference clone (B4's): are the results identical?

Clones --source again, runs `dvc repro` (or only the given targets and what they need), then
compares with --reference: the dvc.lock hash of every data stage output, every trained model's
weights (the .keras archive also stores the time it was saved, so its hash always differs), the
per-epoch histories and training metrics without their timing columns, and the test metrics.

Usage: python benchmarks/b5_reproducibility.py --reference ../cifar-cnn-b4 [--dest ../cifar-cnn-b5]
       [--source REPO] [TARGET ...]
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import REPO, append_result, clean_clone, dvc_repro, git_head
from src.core.cli import DefaultsHelpFormatter

DATA_STAGES = ("download", "preprocess", "split")
TIMING = {"epoch_seconds", "train_seconds", "validation_seconds", "seconds_per_epoch", "images_per_second"}


def lock_hashes(clone: Path) -> dict[str, str]:
    lock = yaml.safe_load((clone / "dvc.lock").read_text())["stages"]
    return {out["path"]: out["md5"] for stage in DATA_STAGES for out in lock[stage]["outs"]}


def same_weights(a: Path, b: Path) -> bool:
    import keras

    first, second = keras.models.load_model(a).get_weights(), keras.models.load_model(b).get_weights()
    return len(first) == len(second) and all(np.array_equal(x, y) for x, y in zip(first, second, strict=True))


def without_timing(path: Path):
    if path.suffix == ".csv":
        table = pd.read_csv(path)
        return table.drop(columns=[c for c in table.columns if c in TIMING]).to_dict("list")
    return {k: v for k, v in json.loads(path.read_text()).items() if k not in TIMING}


def compare(reference: Path, clone: Path) -> list[tuple[str, bool]]:
    checks = []
    reference_hashes, clone_hashes = lock_hashes(reference), lock_hashes(clone)
    for path, md5 in clone_hashes.items():
        checks.append((f"`{path}` (dvc.lock md5 `{md5}`)", reference_hashes.get(path) == md5))
    for model in sorted((clone / "models").glob("*.keras")):
        name = model.stem
        checks.append((f"`{name}`: model weights", same_weights(reference / "models" / model.name, model)))
        for output in (f"reports/history/{name}.csv", f"reports/train/{name}.json"):
            checks.append((f"`{name}`: `{output}` without timings",
                           without_timing(reference / output) == without_timing(clone / output)))
        output = f"reports/eval/{name}.json"
        checks.append((f"`{name}`: `{output}` (test metrics)",
                       json.loads((reference / output).read_text()) == json.loads((clone / output).read_text())))
    return checks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=DefaultsHelpFormatter)
    parser.add_argument("--reference", type=Path, required=True, help="a clone where `dvc repro` ran (B4); required")
    parser.add_argument("--source", type=Path, default=REPO, help="the repository to clone (its HEAD)")
    parser.add_argument("--dest", type=Path, default=REPO.parent / "cifar-cnn-b5", help="where the clone goes")
    parser.add_argument("targets", nargs="*", help="stages to reproduce (default: the whole pipeline)")
    args = parser.parse_args()
    reference_commit = git_head(args.reference)
    commit = clean_clone(args.source, args.dest)
    if commit != reference_commit:
        print(f"note: the reference ran commit {reference_commit[:10]}, this clone is {commit[:10]}")
    wall, _ = dvc_repro(args.dest, *args.targets)
    checks = compare(args.reference, args.dest)
    different = [what for what, same in checks if not same]
    repro = " ".join(["dvc repro", *args.targets])
    append_result("B5 reproducibility across two clean clones",
                  " ".join(["python benchmarks/b5_reproducibility.py", f"--reference {args.reference}",
                            f"--dest {args.dest}", *args.targets]), [
        f"Second clone of `{commit[:10]}` (reference clone: `{reference_commit[:10]}`), "
        f"`{repro}` in {wall / 60:.1f} min.",
        "",
        f"**{len(checks) - len(different)} of {len(checks)} outputs identical**"
        + (": " + ", ".join(different) + " differ." if different else "."),
        "",
        "| output | identical |",
        "|---|---|",
        *(f"| {what} | {'yes' if same else '**no**'} |" for what, same in checks),
    ])
    if different:
        sys.exit(1)


if __name__ == "__main__":
    main()
