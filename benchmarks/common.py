"""What every benchmark shares: timing a command under /usr/bin/time, scratch projects, the results log."""

import datetime
import os
import re
import statistics
import subprocess
import sys
from pathlib import Path

import yaml

from src.training import cpu

REPO = Path(__file__).resolve().parents[1]
# The team's copy of the real CIFAR-10 archive, beside the repository; tests use these too.
REAL_ARCHIVE = REPO.parent / "shared" / "datasets" / "cifar-10-python.tar.gz"
REAL_MD5 = "d86034037ef419435e8027e306021067"
# The dated log of every run (BENCHMARKS.md keeps each benchmark's current figure on top of it).
# Tests point this elsewhere so a smoke run never edits the repository's results.
BENCHMARKS_MD = Path(os.environ.get("BENCHMARKS_MD", REPO / "benchmarks" / "results.md"))


def timed(command: list[str], cwd: Path, env: dict | None = None) -> tuple[float, float, str]:
    """Run ``command``; return its wall seconds, peak RSS in MB (``/usr/bin/time -v``) and stdout."""
    report = cwd / ".time.txt"
    result = subprocess.run(["/usr/bin/time", "-v", "-o", str(report), *command], cwd=cwd, capture_output=True,
                            text=True, env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})})
    if result.returncode != 0:
        sys.exit(f"benchmark command failed: {' '.join(command)}\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
    text = report.read_text()
    clock = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)", text).group(1)
    seconds = sum(float(part) * 60**i for i, part in enumerate(reversed(clock.split(":"))))
    peak_mb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", text).group(1)) / 1024
    report.unlink()
    return seconds, peak_mb, result.stdout


def set_param(params: dict, dotted: str, value) -> None:
    """``set_param(params, "train.elu3.epochs", 2)``: the dotted keys of `dvc exp run -S`."""
    *path, last = dotted.split(".")
    section = params
    for key in path:
        section = section.setdefault(key, {})
    section[last] = value


def scratch_project(root: Path, archive: Path, md5: str, **dotted_params) -> Path:
    """A folder laid out like the repository root, with params.yaml pointed at ``archive``."""
    root.mkdir(parents=True, exist_ok=True)
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    for dotted, value in {"data.source": str(archive), "data.md5": md5, **dotted_params}.items():
        set_param(params, dotted, value)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return root


def run_stage(root: Path, stage: str, *args: str) -> tuple[float, float, str]:
    return timed([sys.executable, "-m", f"src.stages.{stage}", *args], root,
                 env={"MLFLOW_TRACKING_URI": "sqlite:///mlflow.db"})


def median(values) -> float:
    return statistics.median(values)


def append_result(benchmark: str, command: str, lines: list[str]) -> None:
    """Print the figures and append them, dated, to benchmarks/results.md (``BENCHMARKS_MD``)."""
    stamp = datetime.date.today().isoformat()
    info = cpu.describe()  # timings, and even trained weights, differ between CPUs
    machine = (f"CPU: {info['cpu_model']} (family/model {info['cpu_family_model']}), {info['cpu_count']} cores, "
               f"flags {info['cpu_flags']}.")
    block = "\n".join([f"### {benchmark}: {stamp}", "", f"Command: `{command}`", "", machine, "", *lines, ""])
    print(block)
    with BENCHMARKS_MD.open("a") as out:
        out.write("\n" + block)


def clean_clone(source: Path, dest: Path) -> str:
    """``git clone`` the committed HEAD of ``source`` into ``dest`` (which must not exist); its commit."""
    if dest.exists():
        sys.exit(f"{dest} already exists; remove it or pass another --dest")
    subprocess.run(["git", "clone", "-q", str(source), str(dest)], check=True)
    return git_head(dest)


def git_head(repo: Path) -> str:
    return subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True,
                          check=True).stdout.strip()


def dvc_repro(clone: Path, *targets: str) -> tuple[float, float]:
    """`dvc repro` in ``clone`` with its own code and MLflow store; wall seconds and peak RSS in MB."""
    wall, peak, _ = timed(["dvc", "repro", *targets], clone,
                          env={"PYTHONPATH": str(clone), "MLFLOW_TRACKING_URI": "sqlite:///mlflow.db"})
    return wall, peak
