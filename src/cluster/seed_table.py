"""The seed table's rows (seeds/dvc.yaml) as trials of a sweep: which rows to train, each row one DVC
experiment (a continuation starts from its parent's), and bringing each row's recorded result into
this workspace afterwards, as `dvc repro` would have left it.

DVC's run cache cannot carry a row from one machine to another here: DVC saves no run-cache entry for a
stage with a plain `cache: false` output (the rows' histories, predictions and details, kept in git for
reviewers). So each row is an experiment, pushed to the git remote with its models on the DVC remote,
and the row's entries of its seeds/dvc.lock and its git-tracked outputs are taken from that commit.
"""

import json
import shutil
import subprocess
from pathlib import Path

import yaml

from src.cluster.trial import Trial, error_line
from src.core.errors import PipelineError

PIPELINE = "seeds/dvc.yaml"
LOCK = Path("seeds/dvc.lock")
ABSENT = {"deleted", "not in cache"}  # an output a `dvc pull` brings: recorded, only not in this workspace


def stages_of(row: str, continued: dict[str, str]) -> tuple[str, str]:
    """The row's training and evaluation stages, as seeds/dvc.yaml names them."""
    return (f"continue@{row}", f"evaluate_continued@{row}") if row in continued else (f"train@{row}", f"evaluate@{row}")


def changed(entries: list) -> bool:
    """Whether a stage's `dvc status --json` entries say it would run: changed code, params, command or
    data, or never recorded; outputs (and a parent's model) merely absent from this workspace are not."""
    for entry in entries:
        if not isinstance(entry, dict):  # "always changed", "changed checksum"
            return True
        for kind, changes in entry.items():
            if kind not in ("changed outs", "changed deps") or not set(changes.values()) <= ABSENT:
                return True
    return False


def status() -> dict:
    shown = subprocess.run(["dvc", "status", "--json", PIPELINE], capture_output=True, text=True)
    if shown.returncode != 0:
        raise PipelineError(f"`dvc status {PIPELINE}` failed: {error_line(shown.stderr)}")
    return {name.removeprefix(f"{PIPELINE}:"): entries for name, entries in json.loads(shown.stdout or "{}").items()}


def untrained(rows: list[str], continued: dict[str, str]) -> list[str]:
    """The rows whose training `dvc repro` would run (a continuation of such a row too), in table order."""
    stale = status()
    found = [row for row in [*rows, *continued] if changed(stale.get(stages_of(row, continued)[0], []))]
    return found + [row for row, parent in continued.items() if parent in found and row not in found]


def trials(sweep_id: str, rows: list[str], continued: dict[str, str]) -> list[Trial]:
    """One trial per row, reproducing its evaluation; a continuation of a row trained here starts from
    that row's experiment (so it waits for it)."""
    named = {row: f"{sweep_id}-{row}" for row in rows}
    return [Trial(named[row], (), (f"{PIPELINE}:{stages_of(row, continued)[1]}",),
                  starts_from=named.get(continued.get(row, "")) or None) for row in rows]


def _git(*args: str) -> str:
    result = subprocess.run(["git", *args], capture_output=True, text=True)
    if result.returncode != 0:
        raise PipelineError(f"`git {' '.join(args[:3])}` failed: {result.stderr.strip()}")
    return result.stdout


def experiment_commit(name: str) -> str:
    for line in _git("for-each-ref", "--format=%(objectname) %(refname)", "refs/exps").splitlines():
        commit, ref = line.split()
        if ref.rsplit("/", 1)[1] == name:
            return commit
    raise PipelineError(f"no experiment {name} here; `dvc exp pull` it from the git remote")


def adopt(row: str, experiment: str, continued: dict[str, str]) -> None:
    """Record ``row`` as ``experiment`` trained it: its stages' entries of seeds/dvc.lock, its git-tracked
    outputs from that commit, its models from the DVC remote (`dvc pull`); then `dvc status` must agree."""
    from dvc.utils.serialize import modify_yaml

    commit = experiment_commit(experiment)
    theirs = yaml.safe_load(_git("show", f"{commit}:{LOCK.as_posix()}"))["stages"]
    stages = stages_of(row, continued)
    if not LOCK.exists():
        LOCK.write_text(yaml.safe_dump({"schema": "2.0", "stages": {}}))
    with modify_yaml(LOCK) as lock:
        for stage in stages:
            lock["stages"][stage] = theirs[stage]
    for stage in stages:
        for out in theirs[stage].get("outs", []):
            if _git("ls-tree", "-r", "--name-only", commit, "--", out["path"]).strip():
                path = Path(out["path"])
                shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
                _git("checkout", commit, "--", out["path"])
    targets = [f"{PIPELINE}:{stage}" for stage in stages]
    pulled = subprocess.run(["dvc", "pull", *targets], capture_output=True, text=True)
    if pulled.returncode != 0:
        raise PipelineError(f"`dvc pull` of {row}'s models failed: {error_line(pulled.stderr)}")
    stale = status()
    for stage in stages:
        if changed(stale.get(stage, [])):
            raise PipelineError(f"{stage} from {experiment} is not up to date here ({stale[stage]}); retrain it "
                                f"with `dvc repro {targets[-1]}`")
