"""B11: a sweep on a Ray cluster of three hosts against the same trials one after another on one host.

On this machine (as root: the hosts are network namespaces): the team's servers (scripts/team_stack.py),
three hosts and a Ray cluster on them as tests/test_team.py makes them (a head with no CPUs, two workers
with one CPU each, token authentication), and a repository of the pipeline on --archive training `elu3`
for --epochs, its data pushed to the team's remote. Times `python -m src.sweep` of the --values grid of
`train.elu3.learning_rate` from a clone on the head, then the same trials with `dvc exp run`, one after
another, in one clone with the data already pulled, on one host (TensorFlow on all the machine's cores).
Both share this machine's cores: the ratio shows what Ray and a clean clone per trial cost, not a speedup.

Usage: python benchmarks/b11_ray_sweep.py [--archive PATH --md5 MD5] [--values 0.0005,0.001,0.002,0.004]
       [--epochs 2]
"""

import argparse
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import REAL_ARCHIVE, REAL_MD5, REPO, append_result
from scripts import team_stack
from src.core.cli import DefaultsHelpFormatter
from tests.test_dvc_pipeline import dvc_repo, scratch_params
from tests.test_team import RAY_HEAD, RAY_WORKERS, Lan, RayCluster, configure_remote, env_for, git, run

MEMBER = "alice"
SEQUENTIAL_HOST = RAY_WORKERS[0]


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=DefaultsHelpFormatter)
    parser.add_argument("--archive", type=Path, default=REAL_ARCHIVE, help="the CIFAR-10 archive")
    parser.add_argument("--md5", default=REAL_MD5, help="its md5")
    parser.add_argument("--values", default="0.0005,0.001,0.002,0.004", help="the learning rates: one trial each")
    parser.add_argument("--epochs", type=int, default=2, help="`train.elu3.epochs` of every trial")
    return parser.parse_args()


def repository(base: Path, archive: Path, md5: str, epochs: int, stack) -> Path:
    """The pipeline training `elu3` only, its data stages run and pushed, committed."""
    params = scratch_params(base, archive)
    params["architectures"] = ["elu3"]
    params["data"].update(source=str(archive), md5=md5)
    if archive == REAL_ARCHIVE:  # the repository's split (scratch params hold out 20 % of a generated archive)
        params["split"] = yaml.safe_load((REPO / "params.yaml").read_text())["split"]
    params["train"]["elu3"]["epochs"] = epochs
    root = dvc_repo(base / "source", params)
    configure_remote(root, stack, MEMBER)
    env = env_for(stack, MEMBER)
    run(root, "dvc", "repro", "split", env=env)
    run(root, "dvc", "push", env=env)
    git(root, "add", "-A")
    git(root, "commit", "-qm", "data pushed")
    return root


def main() -> None:
    args = arguments()
    values = args.values.split(",")
    base = Path(tempfile.mkdtemp(prefix="b11-", dir="/tmp"))  # short: Ray's socket paths
    base.chmod(0o711)  # PostgreSQL runs as `postgres`
    lan = stack = cluster = None
    try:
        lan = Lan()
        stack = team_stack.start(base / "stack", bind=lan.server)
        team_stack.add_member(stack, MEMBER)
        os.environ.update(MLFLOW_TRACKING_USERNAME=team_stack.ADMIN, MLFLOW_TRACKING_PASSWORD=stack.admin_password)
        source = repository(base, args.archive, args.md5, args.epochs, stack)
        origin, driver, alone = base / "origin.git", base / "driver", base / "alone"
        git(base, "clone", "-q", "--bare", str(source), str(origin))
        for clone, host in ((driver, RAY_HEAD), (alone, SEQUENTIAL_HOST)):
            git(base, "clone", "-q", str(origin), str(clone))
            configure_remote(clone, stack, MEMBER, shared=False, host=host, lan=lan)
        cluster = RayCluster(lan, base / "ray")
        env = env_for(stack, MEMBER, RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=cluster.token)

        started = time.perf_counter()
        swept = run(driver, "python", "-m", "src.sweep", "--address", cluster.address, "--cpus", "1",
                    "-S", f"train.elu3.learning_rate={args.values}", env=env, host=RAY_HEAD, lan=lan)
        on_ray = time.perf_counter() - started
        trial_seconds = [float(s) for s in re.findall(r" finished in (\d+) s on ", swept.stdout)]

        run(alone, "dvc", "pull", "split", env=env, host=SEQUENTIAL_HOST, lan=lan)
        started = time.perf_counter()
        for number, value in enumerate(values, start=1):
            run(alone, "dvc", "exp", "run", "-n", f"alone-{number}", "-S", f"train.elu3.learning_rate={value}",
                env=env, host=SEQUENTIAL_HOST, lan=lan)
        one_host = time.perf_counter() - started
    finally:
        if cluster is not None:
            cluster.close()
        if stack is not None:
            team_stack.stop(base / "stack", stack, grace=2)
        if lan is not None:
            lan.close()
        shutil.rmtree(base, ignore_errors=True)

    append_result(
        "B11 a sweep on a Ray cluster of three hosts vs one host", " ".join(["python benchmarks/b11_ray_sweep.py",
                                                                              *sys.argv[1:]]),
        [f"{len(values)} trials of `elu3` ({args.epochs} epochs, learning rates {args.values}) on {args.archive.name}.",
         "Head and two 1-CPU workers as network namespaces of this one machine, sharing its cores.", "",
         "| run | wall | per trial |", "|---|---:|---:|",
         f"| `python -m src.sweep` on the cluster (each trial: a clean clone, `dvc exp run --pull`, `dvc exp push`) "
         f"| {on_ray:.0f} s | {', '.join(f'{s:.0f}' for s in trial_seconds)} s |",
         f"| `dvc exp run`, one after another in one clone on one host | {one_host:.0f} s | "
         f"{one_host / len(values):.0f} s on average |", "",
         f"Ratio cluster / one host: **{on_ray / one_host:.2f}**."])


if __name__ == "__main__":
    main()
