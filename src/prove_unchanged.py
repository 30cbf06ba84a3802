"""Prove that a change leaves the trained results unchanged, so its stages can be `dvc commit`ted, not retrained.

    python -m src.prove_unchanged [--base REV] [--images N] [--epochs N] [--commit] [STAGE ...]

STAGE is a training stage as `dvc status` names it (`train@elu3`, `seeds/dvc.yaml:train@relu6`); without
any, every training stage of dvc.yaml and seeds/dvc.yaml whose code, params or command `dvc status` reports
changed. Each one is trained twice, in two scratch copies of the project: one of REV's files, one of the
working tree's. Both run the stage's own command from the same seed, for ``--epochs`` epochs of the first
``--images`` training images of data/split (a quarter as many validation images); a continuation's parent
is trained first in the same way. Then every output is compared bit for bit: each model variable and
optimizer variable, the history and the training metrics without their timing columns. Where the data
stages changed, both copies also run them on the real archive and their outputs' md5s are compared.

One line per stage: identical, or DIFFERENT and what differs. Exit status 0 when all are identical, 1
otherwise. With --commit and all identical, `dvc commit` records the change for those stages (outputs
not in this workspace keep their recorded hashes): the result DVC holds is the one the changed code makes.
A stage that differs is retrained with `dvc repro`. docs/pipeline.md ("Changing code") has the workflow.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from src.core import config as paths
from src.core.errors import PipelineError, run_stage
from src.core.fileio import files_md5

PIPELINES = ["dvc.yaml", "seeds/dvc.yaml"]
DATA_STAGES = ["download", "preprocess", "split"]
# Columns and keys that measure time, not the result.
TIMING = {"epoch_seconds", "train_seconds", "validation_seconds", "seconds_per_epoch", "images_per_second"}
# Outputs naming a run, a path or a machine: different on every run by design.
IDENTITY_SUFFIX = ".run.json"


@dataclass
class Copy:
    """A scratch project: the files of one revision, with its own data, params and MLflow store."""

    label: str
    root: Path

    def stages(self) -> dict:
        return stages_of(self.root)

    def run(self, stage) -> None:
        # The copy's own store and backups: never the team's server, nor a long training's backup folder.
        env = {k: v for k, v in os.environ.items()
               if k not in ("MLFLOW_TRACKING_URI", "DVC_ROOT", "PYTHONPATH", paths.BACKUP_DIR_VARIABLE)}
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
        result = subprocess.run(stage.cmd, shell=True, cwd=stage.wdir, env=env, capture_output=True, text=True)
        if result.returncode != 0:
            tail = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["no output"]
            raise PipelineError(f"{stage.name} failed in the {self.label} copy ({self.root}): {tail[0]}")


def stages_of(root: Path | str = ".") -> dict:
    """Every stage of the project at ``root``, by its address as `dvc status` prints it from that root."""
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        stages = repo.index.stages
        root_dir = Path(repo.root_dir)
    addresses = {}
    for stage in stages:
        dvcfile = Path(stage.dvcfile.path).relative_to(root_dir).as_posix()
        addresses[stage.name if dvcfile == "dvc.yaml" else f"{dvcfile}:{stage.name}"] = stage
    return addresses


def git(*args: str, **kwargs) -> str:
    return subprocess.run(["git", *args], check=True, capture_output=True, text=True, **kwargs).stdout


def resolve(rev: str) -> str:
    try:
        return git("rev-parse", "--verify", f"{rev}^{{commit}}").strip()
    except subprocess.CalledProcessError:
        raise PipelineError(f"--base {rev!r} is not a commit of this repository; name one (`git log`)") from None


def make_copy(label: str, root: Path, base: str | None) -> Copy:
    """REV's files (``base``), or the working tree's: tracked and untracked, less what git ignores."""
    root.mkdir(parents=True)
    if base:
        archive = subprocess.run(["git", "archive", base], check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(root)], input=archive, check=True)
    else:
        for name in git("ls-files", "-z", "--cached", "--others", "--exclude-standard").split("\0"):
            if name and Path(name).is_file():
                (root / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(name, root / name)
    # No git in a copy: DVC works without it when told so.
    (root / ".dvc" / "config.local").write_text("[core]\n    no_scm = true\n")
    return Copy(label, root)


def changed_stages() -> tuple[list[str], list[str]]:
    """(training stages, data stages) whose code, params or command changed, as `dvc status` reports."""
    from dvc.repo import Repo

    trainings, data = [], []
    stages = stages_of()
    with Repo() as repo:
        status = repo.status(targets=PIPELINES)
    for address, changes in status.items():
        touched = False
        for change in changes:
            if isinstance(change, str):  # "changed command", "always changed"
                touched = True
            elif "changed deps" in change:
                touched |= any(not _is_data(path) for path in change["changed deps"])
        if touched and address in stages:
            if address in DATA_STAGES:
                data.append(address)
            elif _is_training(stages[address]):
                trainings.append(address)
    return trainings, data


def _is_data(path: str) -> bool:
    """A dependency that another stage writes (data, models), not code or params."""
    return path.startswith((f"{paths.DATA_DIR}/", f"{paths.MODELS_DIR}/", f"{paths.SEEDS_DIR}/models/"))


def _is_training(stage) -> bool:
    return any(out.def_path.endswith(".keras") for out in stage.outs)


def with_parents(stages: dict, wanted: list[str]) -> list[str]:
    """``wanted`` in training order, each continuation after the stage whose model it starts from."""
    writer = {out.def_path: address for address, stage in stages.items() for out in stage.outs}
    ordered: list[str] = []

    def visit(address: str) -> None:
        for dep in stages[address].deps:
            parent = writer.get(dep.def_path)
            if parent and _is_training(stages[parent]):
                visit(parent)
        if address not in ordered:
            ordered.append(address)

    for address in wanted:
        visit(address)
    return ordered


def folder_md5s(folder: Path) -> dict[str, str]:
    return {path.relative_to(folder).as_posix(): files_md5([path]) for path in sorted(folder.rglob("*"))
            if path.is_file()}


def prepare_data(copies: list[Copy], data_stages: list[str], images: int) -> list[str]:
    """Put a small split in every copy; where the data stages changed, each copy makes its own from the
    real archive first and the differences are returned."""
    differences = []
    if data_stages:
        for copy in copies:
            params_file = copy.root / paths.PARAMS_FILE
            params = yaml.safe_load(params_file.read_text())
            source = params["data"].get("source")
            if source and not Path(source).is_absolute() and "://" not in source:
                params["data"]["source"] = str((Path.cwd() / source).resolve())
                params_file.write_text(yaml.safe_dump(params, sort_keys=False))
            stages = copy.stages()
            for address in DATA_STAGES:
                copy.run(stages[address])
        for folder in (paths.RAW_DIR, paths.PROCESSED_DIR, paths.SPLIT_DIR):
            if folder_md5s(copies[0].root / folder) != folder_md5s(copies[1].root / folder):
                differences.append(f"{folder} differs")
    for copy in copies:
        source = copy.root if data_stages else Path.cwd()
        split = {name: np.load(source / paths.SPLIT_DIR / f"{name}.npy") for name in paths.SPLIT_FILES}
        (copy.root / paths.SPLIT_DIR).mkdir(parents=True, exist_ok=True)
        for name, array in split.items():
            count = images if name.startswith("train") else max(1, images // 4)
            np.save(copy.root / paths.SPLIT_DIR / f"{name}.npy", array[:count])
        if not data_stages:
            (copy.root / paths.PROCESSED_DIR).mkdir(parents=True, exist_ok=True)
            shutil.copy2(paths.PROCESSED_DIR / "classes.json", copy.root / paths.PROCESSED_DIR / "classes.json")
    return differences


def shorten(copy: Copy, stage, epochs: int) -> None:
    """Set ``epochs`` in the params section(s) the stage reads (`train.NAME`, `seeds.train.NAME`)."""
    params_file = copy.root / paths.PARAMS_FILE
    params = yaml.safe_load(params_file.read_text())
    for dependency in stage.params:
        for dotted in dependency.params:
            section = params
            for key in dotted.split("."):
                section = section[key]
            if isinstance(section, dict) and "epochs" in section:
                section["epochs"] = epochs
    params_file.write_text(yaml.safe_dump(params, sort_keys=False))


def saved_variables(path: Path) -> dict[str, np.ndarray]:
    """Every array a .keras archive stores (layer weights, optimizer and seed-generator states), by its
    name in the archive: read as stored, without rebuilding the model (the archive's zip entries carry
    the time it was saved, so its own hash always differs)."""
    import h5py

    arrays = {}

    def keep(name: str, item) -> None:  # h5py stops visiting at the first value returned
        if isinstance(item, h5py.Dataset):
            arrays[name] = item[()]

    with zipfile.ZipFile(path) as archive, archive.open("model.weights.h5") as stream, h5py.File(stream) as h5:
        h5.visititems(keep)
    return arrays


def without_timing(path: Path):
    if path.suffix == ".csv":
        table = pd.read_csv(path)
        return table.drop(columns=[c for c in table.columns if c in TIMING]).to_dict("list")
    return {k: v for k, v in json.loads(path.read_text()).items() if k not in TIMING}


def compare_outputs(stage, base: Copy, work: Copy) -> list[str]:
    """What differs between the two copies' outputs of ``stage``; empty when identical."""
    differences = []
    for out in stage.outs:
        name = out.def_path
        if name.endswith(IDENTITY_SUFFIX):
            continue
        first, second = base.root / name, work.root / name
        if not (first.exists() and second.exists()):
            differences.append(f"{name} missing in the {'base' if not first.exists() else 'working-tree'} copy")
        elif name.endswith(".keras"):
            ours, theirs = saved_variables(first), saved_variables(second)
            unequal = sorted(key for key in ours.keys() | theirs.keys() if key not in ours or key not in theirs
                             or ours[key].shape != theirs[key].shape or not np.array_equal(ours[key], theirs[key]))
            if unequal:
                differences.append(f"{name}: {len(unequal)} of {len(ours)} arrays ({', '.join(unequal[:3])}"
                                   f"{', ...' if len(unequal) > 3 else ''})")
        elif without_timing(first) != without_timing(second):
            differences.append(f"{name} without timings")
    return differences


def commit(addresses: list[str] | None = None) -> None:
    """`dvc commit --force` of ``addresses`` (every stage: None), where an output that is not in this
    workspace keeps the hash the lock records for it. (`Repo.commit(allow_missing=True)` would still
    hash the missing outputs for DVC's run cache, and fail.)"""
    from dvc.repo import Repo

    with Repo() as repo, repo.lock:
        for address in addresses or [None]:
            stages = repo.stage.collect(address)
            for stage in stages:
                stage.save(allow_missing=True, run_cache=False)
                stage.commit(allow_missing=True)
            for dvcfile in {id(stage.dvcfile): stage.dvcfile for stage in stages}.values():
                dvcfile.dump_stages([stage for stage in stages if stage.dvcfile is dvcfile], update_pipeline=False)


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m src.prove_unchanged", description=__doc__.splitlines()[0])
    parser.add_argument("stages", nargs="*", metavar="STAGE",
                        help="training stages to prove (default: those `dvc status` reports changed)")
    parser.add_argument("--base", default="HEAD", help="the revision whose code trained the results (default: HEAD)")
    parser.add_argument("--images", type=int, default=2048,
                        help="training images each copy trains on (default: 2048; validation: a quarter)")
    parser.add_argument("--epochs", type=int, default=2, help="epochs each copy trains (default: 2)")
    parser.add_argument("--commit", action="store_true",
                        help="`dvc commit` the stages when every one is identical (default: only report)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch copies (default: removed)")
    args = parser.parse_args(argv)
    if args.images < 1 or args.epochs < 1:
        raise PipelineError("--images and --epochs must be at least 1")
    base = resolve(args.base)
    trainings, data_stages = changed_stages()
    requested = args.stages or trainings
    if not requested and not data_stages:
        print("prove_unchanged: `dvc status` reports no changed code or params in any training or data stage")
        return
    if not data_stages and not (paths.SPLIT_DIR / "train_images.npy").exists():
        raise PipelineError(f"{paths.SPLIT_DIR} is missing; run `dvc repro split` (or `dvc pull split`) first")

    scratch = Path(tempfile.mkdtemp(prefix="prove-unchanged-"))
    try:
        copies = [make_copy("base", scratch / "base", base), make_copy("working-tree", scratch / "work", None)]
        base_stages, work_stages = (copy.stages() for copy in copies)
        unknown = [address for address in requested if address not in work_stages
                   or not _is_training(work_stages[address])]
        if unknown:
            raise PipelineError(f"not a training stage of {' or '.join(PIPELINES)}: {', '.join(unknown)}; name "
                                "them as `dvc status` does (train@elu3, seeds/dvc.yaml:train@relu6)")
        order = with_parents(work_stages, requested)
        print(f"prove_unchanged: base {base[:10]} ({args.base}) against the working tree: {args.epochs} epochs of "
              f"the first {args.images} training images; data stages changed: {', '.join(data_stages) or 'none'}",
              flush=True)
        results: dict[str, list[str]] = {}
        for difference in prepare_data(copies, data_stages, args.images):
            results.setdefault("data", []).append(difference)
        for address in order:
            if address not in base_stages:
                results[address] = [f"no stage {address} at {args.base}"]
                continue
            for copy, stages in zip(copies, (base_stages, work_stages), strict=True):
                shorten(copy, stages[address], args.epochs)
                copy.run(stages[address])
            results[address] = compare_outputs(work_stages[address], *copies)
            verdict = "DIFFERENT: " + "; ".join(results[address]) if results[address] else "identical"
            print(f"{address:40} {verdict}", flush=True)
        for stage in data_stages:
            verdict = "DIFFERENT: " + "; ".join(results["data"]) if results.get("data") else "identical"
            print(f"{stage:40} {verdict}", flush=True)
    finally:
        if args.keep:
            print(f"prove_unchanged: copies kept in {scratch}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)

    different = [address for address, found in results.items() if found]
    if different:
        print(f"prove_unchanged: {len(different)} of {len(results)} differ; retrain them with `dvc repro`")
        sys.exit(1)
    print(f"prove_unchanged: all {len(order) + len(data_stages)} identical")
    if args.commit:
        commit([*data_stages, *order])
        print("prove_unchanged: `dvc commit` done; commit dvc.lock and seeds/dvc.lock with this output")


if __name__ == "__main__":
    run_stage(main)
