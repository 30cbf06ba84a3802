"""Run a sweep, or the seed table's rows, on a Ray cluster: each trial a Ray task on whichever node has room.

    python -m src.sweep --address HEAD:6379 -S 'train.elu3.learning_rate=0.0005,0.001,0.002' [-S …]
                        [--target evaluate@elu3] [--cpus 2]
    python -m src.sweep --address HEAD:6379 --seed-table [ROW …] [--cpus 2]

A sweep is the grid of the -S lists, as `dvc exp run -S` takes them. Each trial makes a clean clone of
this commit (from the git remote --git-remote names) on its node, runs `dvc exp run --pull -n NAME -S …`
there (its data from the DVC remote), logs to the team's MLflow server as a child of one parent run for
the sweep (tags sweep_id, sweep_trial, ray_node, host), and `dvc exp push`es the experiment. Then this
command `dvc exp pull`s them and ranks the trials by validation accuracy (never test).

With --seed-table, each row of seeds/dvc.yaml is a trial (the ROWs named, else every row whose training
`dvc repro seeds/dvc.yaml` would run), reproducing its evaluation; a continuation waits for the row it
continues and starts from its experiment. Then this command records each row here as its experiment
left it (seeds/dvc.lock, its reports, its models pulled) and, once no row is left to train, pulls what
the table is made from and runs `dvc repro seeds/dvc.yaml`: the table is written, and nothing trains here.

Run it on a node of the cluster (the head, or a machine that joined with `ray start --address HEAD:6379
--num-cpus 0`), from a clean checkout whose commit is pushed, with MLFLOW_TRACKING_URI (and your login)
set to the team's server and the DVC remote's key configured (docs/team.md). The cluster must use
token authentication: RAY_AUTH_TOKEN (or RAY_AUTH_TOKEN_PATH, or ~/.ray/auth_token) holds its token.
Your MLflow login and S3 key reach the trials through Ray's runtime environment. Running the same sweep
again skips the trials already pushed; Ray retries a trial whose node dies on another node, and the retry
marks the dead attempt's MLflow run KILLED. Exit code 1 when a trial failed (each failure printed with
its `error:` line), 2 for a problem found before any trial started.
"""

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from src.cluster import grid, seed_table
from src.cluster import trial as trial_module
from src.cluster.trial import Outcome, Sweep, Trial, TrialFailed
from src.core.cli import DefaultsHelpFormatter
from src.core.errors import PipelineError, run_stage
from src.core.params import load_params

TOKEN_FIX = ("set RAY_AUTH_TOKEN to the cluster's token (or RAY_AUTH_TOKEN_PATH to a file holding it; "
             "whoever started the head has it in ~/.ray/auth_token), docs/team.md")
LOGIN_VARIABLES = ("MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")
MAX_RETRIES = 2  # a trial whose node dies runs again elsewhere, up to twice


def arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m src.sweep", description=__doc__,
                                     formatter_class=DefaultsHelpFormatter)
    parser.add_argument("--address", required=True, metavar="HOST:PORT",
                        help="the Ray head's address (its `ray start --head --port`)")
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("-S", "--set-param", dest="settings", action="append", metavar="KEY=V1,V2",
                      help="a param and its values, as `dvc exp run -S` takes them; the grid of all -S (this or "
                           "--seed-table is required)")
    what.add_argument("--seed-table", nargs="*", metavar="ROW",
                      help="train the seed table's rows instead: the ROWs named, else every row not recorded "
                           "for this commit (seeds/dvc.yaml); this or -S is required")
    parser.add_argument("--target", action="append", default=[], metavar="STAGE",
                        help="what each trial of -S reproduces (default: train@NET of each net the -S keys name)")
    parser.add_argument("--cpus", type=int, default=2, help="CPUs each trial declares, and TensorFlow's threads")
    parser.add_argument("--git-remote", default="origin", help="the git remote the nodes clone from and push to")
    args = parser.parse_args(argv)
    if args.cpus < 1:
        parser.error("--cpus must be at least 1")
    if args.seed_table is not None and args.target:
        parser.error("--target goes with -S: a seed table's trial reproduces its row's evaluation")
    return args


def head_address(address: str) -> tuple[str, int]:
    """HOST:PORT, reachable: else one line naming it, instead of Ray's minute of retries."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise PipelineError(f"--address {address!r} is not HOST:PORT; give the Ray head's address, e.g. "
                            "--address 10.0.0.5:6379")
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as error:
        raise PipelineError(f"no Ray cluster answers at --address {address} ({error.strerror or error}); "
                            "start its head there (`ray start --head --port PORT`, docs/team.md) or fix "
                            "--address") from None
    return host, int(port)


def require_token() -> None:
    """Token authentication on: this client presents a token, and refuses to talk to a cluster without one."""
    os.environ["RAY_AUTH_MODE"] = "token"
    path = os.environ.get("RAY_AUTH_TOKEN_PATH")
    if os.environ.get("RAY_AUTH_TOKEN") or Path(path or Path.home() / ".ray" / "auth_token").is_file():
        return
    raise PipelineError(f"no Ray token: {TOKEN_FIX}")


def git(*args: str) -> str:
    result = subprocess.run(["git", *args], capture_output=True, text=True)
    if result.returncode != 0:
        raise PipelineError(f"`git {' '.join(args)}` failed: {result.stderr.strip()}")
    return result.stdout.strip()


def pushed_commit(remote: str) -> tuple[str, str]:
    """(HEAD's commit, the remote's URL): the nodes clone that commit from there, so it must be pushed."""
    commit = git("rev-parse", "HEAD")
    changed = git("status", "--porcelain", "--untracked-files=no")
    if changed:
        raise PipelineError(f"the working tree has uncommitted changes ({changed.splitlines()[0].strip()} …); "
                            "a sweep runs a commit: commit them and push")
    url = git("remote", "get-url", remote)
    git("fetch", "-q", remote)
    if not git("for-each-ref", "--contains", commit, f"refs/remotes/{remote}"):
        raise PipelineError(f"commit {commit[:12]} is not on the git remote {remote!r} ({url}); push it "
                            f"(`git push {remote} HEAD`): the nodes clone it from there")
    return commit, url


def credentials() -> dict[str, str]:
    """What a trial needs to log and push as you: your MLflow login and the DVC remote's S3 key."""
    from dvc.config import Config

    env = {name: os.environ[name] for name in LOGIN_VARIABLES if os.environ.get(name)}
    config = Config(dvc_dir=str(Path.cwd() / ".dvc"))
    remote = config["core"].get("remote")
    if not remote:
        raise PipelineError("this repository has no default DVC remote; the nodes pull data from it and push "
                            "models to it: `dvc remote add -d NAME URL` (docs/team.md)")
    settings = config["remote"][remote]
    for variable, key in (("AWS_ACCESS_KEY_ID", "access_key_id"), ("AWS_SECRET_ACCESS_KEY", "secret_access_key")):
        value = settings.get(key) or os.environ.get(variable)
        if value:
            env[variable] = value
    return env


def parent_run(experiment: str, sweep_id: str, commit: str, description: str) -> str:
    """The sweep's MLflow run, every trial's run its child: found again when the same sweep runs again."""
    import mlflow

    client = mlflow.MlflowClient()
    found = client.search_runs([experiment], f"tags.sweep_id = '{sweep_id}' and tags.sweep_role = 'parent'")
    if found:
        client.update_run(found[0].info.run_id, status="RUNNING")
        return found[0].info.run_id
    run = client.create_run(experiment, run_name=sweep_id, tags={
        "sweep_id": sweep_id, "sweep_role": "parent", "git_commit": commit, "mlflow.source.git.commit": commit,
        "mlflow.note.content": description, "host": socket.gethostname()})
    return run.info.run_id


def pushed_experiments(remote: str) -> set[str]:
    listed = subprocess.run(["dvc", "exp", "list", "--name-only", remote], capture_output=True, text=True)
    if listed.returncode != 0:
        raise PipelineError(f"`dvc exp list {remote}` failed: {trial_module.error_line(listed.stderr)}")
    return set(listed.stdout.split())


def ranked(names: list[str], nets: list[str], table_metrics: str) -> list[tuple[str, float | None]]:
    """The trials' validation accuracy, from `dvc exp show` (their reports/train/NET.json), best first."""
    shown = json.loads(subprocess.run(["dvc", "exp", "show", "--json"], capture_output=True, text=True,
                                      check=True).stdout)
    scores: dict[str, float | None] = {}
    for baseline in shown:
        for experiment in baseline.get("experiments") or []:
            for revision in experiment.get("revs", []):
                metrics = (revision.get("data") or {}).get("metrics") or {}
                values = [metrics.get(f"{table_metrics}/{net}.json", {}).get("data", {}).get("val_accuracy")
                          for net in nets]
                values = [v for v in values if v is not None]
                if revision.get("name") in names:
                    scores[revision["name"]] = max(values) if values else None
    return sorted(((name, scores.get(name)) for name in names), key=lambda item: -(item[1] or -1))


def connect(address: str, env: dict) -> None:
    """Join the cluster as a driver whose tasks get ``env``; a refusal is one line."""
    import ray
    from ray import cloudpickle

    cloudpickle.register_pickle_by_value(trial_module)
    # Ray's C++ client writes each refused attempt to connect to stderr: kept, and read, instead.
    with tempfile.TemporaryFile(mode="w+") as log:
        saved = os.dup(2)
        os.dup2(log.fileno(), 2)
        try:
            ray.init(address=address, runtime_env={"env_vars": env}, log_to_driver=False, logging_level="ERROR")
        except ConnectionError:
            os.dup2(saved, 2)
            log.seek(0)
            if "InvalidAuthToken" in log.read():
                raise PipelineError(f"the Ray cluster at --address {address} refuses this client's token; "
                                    f"{TOKEN_FIX}") from None
            raise PipelineError(f"cannot join the Ray cluster at --address {address} from here: run this on the "
                                "head, or on a machine that joined it (`ray start --address ADDRESS "
                                "--num-cpus 0`)") from None
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def run_trials(sweep: Sweep, trials: list[Trial]) -> tuple[list[Outcome], list[str]]:
    """Every trial as a Ray task, one that starts from another's experiment after it; each outcome or
    failure printed as it comes."""
    import ray

    task = ray.remote(num_cpus=sweep.cpus, max_retries=MAX_RETRIES, retry_exceptions=False)(trial_module.run_trial)
    submitted = {}
    for trial in trials:  # a parent row before its continuation
        first = [submitted[trial.starts_from]] if trial.starts_from in submitted else []
        submitted[trial.name] = task.remote(sweep, trial, *first)
    names = {ref: name for name, ref in submitted.items()}
    outcomes, failures, pending = [], [], list(submitted.values())
    while pending:
        done, pending = ray.wait(pending, num_returns=1)
        name = names[done[0]]
        try:
            outcome = ray.get(done[0])
        except TrialFailed as failed:
            failures.append(name)
            if failed.name != name:  # Ray never ran it: the trial it starts from failed
                print(f"{name} not run: {failed.name}, which it starts from, failed", flush=True)
            else:
                print(f"{name} failed on {failed.node}: {failed.message}", flush=True)
        except ray.exceptions.RayError as error:  # its node died more often than Ray retries
            failures.append(name)
            print(f"{name} failed: {' '.join(str(error).split())[:300]}", flush=True)
        else:
            outcomes.append(outcome)
            how = "already pushed" if outcome.skipped else f"finished in {outcome.seconds:.0f} s"
            print(f"{name} {how} on {outcome.node}", flush=True)
    ray.shutdown()
    return outcomes, failures


def seed_rows(named: list[str], seeds) -> list[str]:
    """The rows to train, in the table's order (a row before its continuation)."""
    known = [*seeds.rows, *seeds.continued]
    unknown = [row for row in named if row not in known]
    if unknown:
        raise PipelineError(f"--seed-table names {unknown[0]!r}, not a row of the seed table; its rows are "
                            f"{', '.join(known)} (params.yaml `seeds`)")
    chosen = named or seed_table.untrained(seeds.rows, seeds.continued)
    return [row for row in known if row in chosen]


def rank_sweep(trials: list[Trial], finished: list[str], nets: list[str]) -> None:
    by_name = {t.name: t for t in trials}
    print("rank  trial  val_accuracy  params")
    for rank, (name, score) in enumerate(ranked(finished, nets, "reports/train"), start=1):
        shown = "n/a" if score is None else f"{score:.4f}"
        print(f"{rank:>4}  {name}  {shown}  {' '.join(by_name[name].params)}")


def record_seed_table(sweep_id: str, finished: list[str], seeds) -> None:
    """Each finished row recorded here as its experiment left it; with no row left to train, the table."""
    print("row  trial  val_accuracy")
    for name in finished:
        row = name.removeprefix(f"{sweep_id}-")
        seed_table.adopt(row, name, seeds.continued)
        score = json.loads(Path(f"seeds/reports/train/{row}.json").read_text()).get("val_accuracy")
        print(f"{row}  {name}  {score:.4f}")
    left = seed_table.untrained(seeds.rows, seeds.continued)
    if left:
        print(f"reports/seeds.md not written: {', '.join(left)} still to train (`--seed-table` without names "
              "trains them)")
        return
    # Every row's files and their data first: then `dvc repro` finds every row up to date, and trains none.
    pipeline = seed_table.PIPELINE
    for command in (["dvc", "pull", "--with-deps", f"{pipeline}:table"], ["dvc", "repro", pipeline]):
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            raise PipelineError(f"`{' '.join(command)}` failed: {trial_module.error_line(done.stderr + done.stdout)}")
    ran = [line.split("'")[1] for line in done.stdout.splitlines() if line.startswith("Running stage")]
    print(f"dvc repro seeds/dvc.yaml ran: {', '.join(ran) or 'nothing'}")
    print("the table is reports/seeds.md: commit it with seeds/dvc.lock and seeds/reports (the models are on "
          "the DVC remote)")


def main(argv: list[str]) -> None:
    args = arguments(argv)
    head_address(args.address)
    require_token()
    if not os.environ.get("MLFLOW_TRACKING_URI", "").startswith(("http://", "https://")):
        raise PipelineError("MLFLOW_TRACKING_URI is not a tracking server's URL: the trials run on other "
                            "machines and log there; set it (and your login) as docs/team.md says")
    from src.core import tracking  # imports TensorFlow: after the checks that need none

    tracking.configure_store()  # the server answers and takes the login, the DVC remote takes the key
    commit, url = pushed_commit(args.git_remote)
    env = credentials()
    params = load_params()
    if args.seed_table is None:
        settings = grid.parse_settings(args.settings)
        nets = grid.nets_swept(settings) or [target.rpartition("@")[2] for target in args.target]
        targets = args.target or [f"train@{net}" for net in nets]
        if not targets:
            raise PipelineError("the -S keys name no `train.NET` section; say what to reproduce with --target")
        sweep_id = grid.sweep_id(commit, targets, settings)
        trials = grid.trials(sweep_id, targets, settings)
        what = f"{len(trials)} trials of {' '.join(args.settings)}"
    else:
        rows = seed_rows(args.seed_table, params.seeds)
        if not rows:
            print("every row of the seed table is recorded for this commit: nothing to train "
                  "(`dvc pull seeds/dvc.yaml` brings the rows' files)")
            return
        sweep_id = grid.sweep_id(commit, [seed_table.PIPELINE], [("rows", rows)], prefix="seeds")
        trials = seed_table.trials(sweep_id, rows, params.seeds.continued)
        what = f"{len(trials)} rows of the seed table ({' '.join(rows)})"
    connect(args.address, env)
    experiment = tracking.experiment_id(params.data.dataset)
    parent = parent_run(experiment, sweep_id, commit, f"`python -m src.sweep`: {what} at {commit[:12]}")
    sweep = Sweep(sweep_id, commit, url, args.git_remote, experiment, parent, args.cpus)
    done_before = pushed_experiments(args.git_remote)
    todo = [t for t in trials if t.name not in done_before]
    print(f"{sweep_id}: {what}; {len(trials) - len(todo)} already pushed, {len(todo)} to run on {args.address}",
          flush=True)
    started = time.perf_counter()
    outcomes, failures = run_trials(sweep, todo) if todo else ([], [])
    print(f"{sweep_id}: {len(outcomes)} finished, {len(failures)} failed in {time.perf_counter() - started:.0f} s",
          flush=True)
    import mlflow

    mlflow.MlflowClient().set_terminated(parent, status="FAILED" if failures else "FINISHED")
    finished = [t.name for t in trials if t.name not in failures]
    if finished:
        subprocess.run(["dvc", "exp", "pull", "--no-cache", args.git_remote, *finished], check=True,
                       capture_output=True)
        if args.seed_table is None:
            rank_sweep(trials, finished, nets)
        else:
            record_seed_table(sweep_id, finished, params.seeds)
    if failures:
        sys.exit(1)


if __name__ == "__main__":
    run_stage(main)
