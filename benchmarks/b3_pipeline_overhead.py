"""B3: the cost of `dvc repro` when everything is up to date, and what one params edit reruns.

Run from a repository where `dvc repro` has completed. The edit (one architecture's epochs + 1)
is made to params.yaml, `dvc repro --dry` lists the stages that would run, and params.yaml is
restored byte for byte, whatever happens.

Usage: python benchmarks/b3_pipeline_overhead.py [--repeats 3] [--architecture NAME]
"""

import argparse
import re
import subprocess
import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import REPO, append_result, median, timed
from src.core.cli import DefaultsHelpFormatter


def downstream_of(repo: Path, names: list[str]) -> set[str]:
    """Stages that depend, directly or not, on the outputs of ``names`` (DVC's own stage graph)."""
    import networkx as nx
    from dvc.repo import Repo

    def in_dvc_yaml(stage) -> bool:  # not seeds/dvc.yaml's, whose stages have the same names
        return Path(stage.dvcfile.path).resolve() == (repo / "dvc.yaml").resolve()

    with Repo(str(repo)) as dvc:
        graph = dvc.index.graph  # an edge runs from a stage to the stage whose outputs it reads
        stages = {stage.name: stage for stage in graph if in_dvc_yaml(stage)}  # `addressing` is relative to the cwd
        return {s.name for name in names for s in nx.ancestors(graph, stages[name]) if in_dvc_yaml(s)}


def stages_to_rerun(repo: Path, architecture: str) -> list[str]:
    """What `dvc repro` reruns after the edit: the stages whose own inputs changed (as
    `dvc repro --dry` lists them) and everything downstream, whose inputs change when they rerun."""
    params_file = repo / "params.yaml"
    original = params_file.read_bytes()
    params = yaml.safe_load(original)
    params["train"][architecture]["epochs"] += 1
    try:
        params_file.write_text(yaml.safe_dump(params, sort_keys=False))
        dry = subprocess.run(["dvc", "repro", "--dry"], cwd=repo, capture_output=True, text=True, check=True)
    finally:
        params_file.write_bytes(original)
    changed = re.findall(r"Running stage '([^']+)'", dry.stdout)
    return sorted(set(changed) | downstream_of(repo, changed))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=DefaultsHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs")
    parser.add_argument("--architecture", default="elu3", help="the net whose training is timed")
    parser.add_argument("--repo", type=Path, default=REPO, help="a repository whose pipeline has run")
    args = parser.parse_args()
    # dvc.yaml alone: the seed table (seeds/dvc.yaml) is another pipeline, not rerun by `dvc repro`.
    status = subprocess.run(["dvc", "status", "--json", "dvc.yaml"], cwd=args.repo, capture_output=True, text=True,
                            check=True)
    if status.stdout.strip() not in ("{}", ""):
        sys.exit("B3 needs an up-to-date pipeline: run `dvc repro` first")
    walls = [timed(["dvc", "repro"], args.repo)[0] for _ in range(args.repeats)]
    rerun = stages_to_rerun(args.repo, args.architecture)
    append_result("B3 pipeline overhead", f"python benchmarks/b3_pipeline_overhead.py --repeats {args.repeats} "
                  f"--architecture {args.architecture}"
                  + ("" if args.repo == REPO else f" --repo {args.repo}"), [
        f"- `dvc repro` with everything up to date: **{median(walls):.1f} s** (median of {args.repeats}; "
        "goal under 5 s)",
        f"- stages that rerun after editing `train.{args.architecture}.epochs`: "
        + ", ".join(f"`{stage}`" for stage in rerun),
    ])


if __name__ == "__main__":
    main()
