"""One trial, as a Ray task runs it on a node: a clean clone of the sweep's commit (with the files of
the experiment it starts from), `dvc exp run`, the MLflow run a child of the sweep's parent run, then `dvc exp push`.

Shipped to the nodes by value (ray.cloudpickle.register_pickle_by_value): a node needs the project's
requirements, not a checkout of it. So this module imports nothing from the project.
"""

import dataclasses
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

# The folder under which a node makes each trial's clone (deleted when the trial ends).
WORK_ROOT_VARIABLE = "CIFAR_SWEEP_WORK_DIR"


@dataclasses.dataclass(frozen=True)
class Trial:
    name: str                  # the DVC experiment's name
    params: tuple[str, ...]    # `-S key=value` of `dvc exp run`
    targets: tuple[str, ...]   # what `dvc exp run` reproduces
    starts_from: str | None = None  # an experiment whose files it starts from (a continuation's parent row's)


@dataclasses.dataclass(frozen=True)
class Sweep:
    sweep_id: str
    commit: str
    git_remote: str            # where the nodes clone from and push experiments to (a URL or path)
    git_remote_name: str       # its name in the driver's clone, e.g. origin
    experiment_id: str         # the MLflow experiment of the parent run and its children
    parent_run_id: str
    cpus: int


@dataclasses.dataclass(frozen=True)
class Outcome:
    name: str
    node: str
    seconds: float
    skipped: bool = False      # already pushed by an earlier attempt or an earlier run of the sweep


class TrialFailed(Exception):
    """The trial's own command failed (a bad param, say): its `error:` line, not retried."""

    def __init__(self, name: str, node: str, message: str):
        super().__init__(f"{name} on {node}: {message}")
        self.name, self.node, self.message = name, node, message

    def __reduce__(self):
        return TrialFailed, (self.name, self.node, self.message)


def error_line(output: str) -> str:
    """The stage's `error:` line, else DVC's `ERROR:` line, else the output's last line (a crash's exception)."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    ours = [line for line in lines if line.startswith("error:")]
    dvcs = [line for line in lines if line.startswith("ERROR:")]
    return (ours or dvcs or lines or ["(no output)"])[-1]


def _run(cwd: Path, *command: str, env: dict, trial: Trial, node: str) -> str:
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise TrialFailed(trial.name, node, f"`{' '.join(command[:3])} …` exited {result.returncode}: "
                                            f"{error_line(result.stderr + result.stdout)}")
    return result.stdout


def close_earlier_attempts(sweep: Sweep, trial: Trial) -> None:
    """An attempt whose node died left its MLflow run RUNNING; Ray retries a task only once that attempt
    is gone, so the retry marks it KILLED."""
    import mlflow

    client = mlflow.MlflowClient()
    runs = client.search_runs([sweep.experiment_id], f"tags.sweep_id = '{sweep.sweep_id}' and "
                                                     f"tags.sweep_trial = '{trial.name}' and "
                                                     "attributes.status = 'RUNNING'")
    for run in runs:
        client.set_terminated(run.info.run_id, status="KILLED")


def trial_env(sweep: Sweep, trial: Trial, node: str) -> dict:
    """The stages' environment: TensorFlow on the CPUs the task declared, and every MLflow run the
    stage starts a child of the sweep's run (MLflow adds MLFLOW_RUN_CONTEXT's tags to each new run)."""
    tags = {"mlflow.parentRunId": sweep.parent_run_id, "sweep_id": sweep.sweep_id, "sweep_trial": trial.name,
            "ray_node": node}
    threads = str(sweep.cpus)
    return {**os.environ, "MLFLOW_RUN_CONTEXT": json.dumps(tags), "TF_NUM_INTRAOP_THREADS": threads,
            "OMP_NUM_THREADS": threads, "PYTHONHASHSEED": "0"}


def pushed_experiments(clone: Path, sweep: Sweep, env: dict, trial: Trial, node: str) -> set[str]:
    shown = _run(clone, "dvc", "exp", "list", "--name-only", sweep.git_remote_name, env=env, trial=trial, node=node)
    return set(shown.split())


def start_from(clone: Path, sweep: Sweep, trial: Trial, env: dict, node: str) -> None:
    """The workspace as the experiment ``trial.starts_from`` left it: its lock and git-tracked files (its
    models `dvc exp run --pull` pulls, as an unchanged stage's missing outputs). Not `dvc exp apply`: its
    checkout fails on the outputs of stages the experiment never ran."""
    _run(clone, "dvc", "exp", "pull", "--no-cache", sweep.git_remote_name, trial.starts_from, env=env, trial=trial,
         node=node)
    refs = _run(clone, "git", "for-each-ref", "--format=%(objectname) %(refname)", "refs/exps", env=env, trial=trial,
                node=node)
    commit = next(line.split()[0] for line in refs.splitlines() if line.rsplit("/", 1)[1] == trial.starts_from)
    _run(clone, "git", "checkout", commit, "--", ".", env=env, trial=trial, node=node)


def run_trial(sweep: Sweep, trial: Trial, *waited_for: Outcome) -> Outcome:
    """Run ``trial`` here, unless an earlier attempt or an earlier run of the sweep pushed it already.
    ``waited_for``: the outcomes of the trials Ray ran first (its parent row's)."""
    started = time.perf_counter()
    node = socket.gethostname()
    root = Path(os.environ.get(WORK_ROOT_VARIABLE) or tempfile.gettempdir()) / "cifar-sweep" / sweep.sweep_id
    root.mkdir(parents=True, exist_ok=True)
    clone = Path(tempfile.mkdtemp(prefix=f"{trial.name}-", dir=root))
    env = trial_env(sweep, trial, node)
    try:
        _run(root, "git", "clone", "-q", "--no-checkout", "--origin", sweep.git_remote_name, sweep.git_remote,
             str(clone), env=env, trial=trial, node=node)
        _run(clone, "git", "checkout", "-q", "--detach", sweep.commit, env=env, trial=trial, node=node)
        close_earlier_attempts(sweep, trial)
        if trial.name in pushed_experiments(clone, sweep, env, trial, node):
            return Outcome(trial.name, node, time.perf_counter() - started, skipped=True)
        if trial.starts_from:
            start_from(clone, sweep, trial, env, node)
        settings = [arg for value in trial.params for arg in ("-S", value)]
        _run(clone, "dvc", "exp", "run", "--pull", "-n", trial.name, *settings, *trial.targets,
             env=env, trial=trial, node=node)
        _run(clone, "dvc", "exp", "push", sweep.git_remote_name, trial.name, env=env, trial=trial, node=node)
        return Outcome(trial.name, node, time.perf_counter() - started)
    finally:
        shutil.rmtree(clone, ignore_errors=True)
