"""`python -m src.pr_report --base main [--output pr-comment.md]`: what a pull request changes, as one comment.

Compares the workspace with a base revision, both read with DVC's Python API: params
(`dvc.api.params_show`), test and validation accuracy per architecture (the metrics files, through
`dvc.api.DVCFileSystem`), new and removed architectures, and the figures under reports/figures/ whose
content differs (git). Figures are embedded as `![](path)` relative to the comment's folder, the form
`cml comment create` uploads.
"""

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import dvc.api
import pandas as pd
import yaml
from dvc.exceptions import DvcException

from src.core.config import EVAL_DIR, FIGURES_DIR, PARAMS_FILE, TRAIN_METRICS_DIR
from src.core.errors import PipelineError, run_stage
from src.core.fileio import atomic_path
from src.reporting.report import percent

METRICS = {"test": (EVAL_DIR, "test_accuracy_tta"), "val": (TRAIN_METRICS_DIR, "val_accuracy")}
ABSENT = "–"
OPEN_ROWS, OPEN_FIGURES = 20, 4  # longer lists fold into a <details> block


def run(root: Path, *command: str) -> str:
    """stdout of ``command`` run at ``root``; a failure becomes one PipelineError naming it."""
    try:
        result = subprocess.run(command, cwd=root, capture_output=True, text=True)
    except FileNotFoundError:
        raise PipelineError(f"`{command[0]}` is not installed or not on PATH") from None
    if result.returncode != 0:
        reason = (result.stderr.strip() or result.stdout.strip() or "no output").splitlines()[-1]
        raise PipelineError(f"`{' '.join(command)}` failed: {reason}")
    return result.stdout


def repository_root() -> Path:
    try:
        return Path(run(Path.cwd(), "git", "rev-parse", "--show-toplevel").strip())
    except PipelineError:
        raise PipelineError(f"{Path.cwd()} is not inside a git repository; run this from a clone of the "
                            "project") from None


def check_base(root: Path, base: str) -> str:
    """The commit ``base`` names (short hash), or an error saying how to get it."""
    try:
        return run(root, "git", "rev-parse", "--verify", "--quiet", "--short", f"{base}^{{commit}}").strip()
    except PipelineError:
        raise PipelineError(f"base revision '{base}' is unknown here; fetch it (`git fetch origin main`, or "
                            "actions/checkout with fetch-depth: 0) or name an existing branch, tag or commit") from None


def params_at(root: Path, rev: str | None) -> dict:
    """Every param DVC tracks at ``rev`` (None: the workspace) under its dotted key, as `dvc params diff`
    names them (`train.elu3.epochs`; a key that two params files share is prefixed `FILE:`)."""
    try:
        params = dvc.api.params_show(repo=str(root), rev=rev)
    except DvcException as error:
        # params_show reads the workspace too, even for another rev: the message names the file
        raise PipelineError(f"DVC cannot read the params to compare: {error}") from None
    return pd.json_normalize(params, sep=".").to_dict("records")[0] if params else {}


def cell(value) -> str:
    """A param value in a table cell: code-formatted, `|` escaped; absent (None) as a dash."""
    return ABSENT if value is None else "`" + str(value).replace("|", "\\|") + "`"


def param_changes(root: Path, base: str) -> pd.DataFrame:
    """One row per changed param (dotted key): base and new value."""
    old, new = params_at(root, base), params_at(root, None)
    rows = {f"`{key}`": {"base": cell(old.get(key)), "new": cell(new.get(key))}
            for key in old.keys() | new.keys() if old.get(key) != new.get(key)}
    return pd.DataFrame.from_dict(rows, orient="index", columns=["base", "new"]).sort_index().rename_axis("param")


def accuracies_at(root: Path, rev: str | None) -> dict[tuple[str, str], float]:
    """{(architecture, "test"|"val"): accuracy} from the metrics files at ``rev`` (None: the workspace).

    Read file by file: `dvc.api.metrics_show` merges every file's keys into one dict and names a key's
    file only where two files share it, so with one architecture `test_accuracy_tta` would not say whose."""
    try:
        fs = dvc.api.DVCFileSystem(str(root), rev=rev)
        found = {}
        for kind, (folder, key) in METRICS.items():
            for path in fs.glob(f"{folder.as_posix()}/*.json"):
                metrics = json.loads(fs.read_text(path))
                if key in metrics:
                    found[Path(path).stem, kind] = metrics[key]
        return found
    except (DvcException, json.JSONDecodeError) as error:
        raise PipelineError(f"DVC cannot read the metrics at {rev or 'the workspace'}: {error}") from None


def accuracies(root: Path, base: str) -> dict[str, dict[str, tuple]]:
    """{architecture: {"test"|"val": (base value, new value)}} (None = absent on that side)."""
    old, new = accuracies_at(root, base), accuracies_at(root, None)
    found: dict[str, dict[str, tuple]] = {}
    for name, kind in sorted(old.keys() | new.keys()):
        found.setdefault(name, {})[kind] = (old.get((name, kind)), new.get((name, kind)))
    return found


def architectures_at(root: Path, base: str | None) -> list[str]:
    """The `architectures` param at ``base`` (None: the workspace); [] where params.yaml or the key is absent."""
    try:
        text = (run(root, "git", "show", f"{base}:{PARAMS_FILE}") if base else (root / PARAMS_FILE).read_text())
        return list((yaml.safe_load(text) or {}).get("architectures") or [])
    except (PipelineError, OSError, yaml.YAMLError, AttributeError):
        return []


def new_and_removed(found: dict, old_list: list[str], new_list: list[str]) -> tuple[list[str], list[str]]:
    """Architectures only in the new / only in the base side: by metrics files or by the `architectures` param."""
    def only(side: int) -> set[str]:
        return {name for name, kinds in found.items()
                if all(pair[side] is not None and pair[1 - side] is None for pair in kinds.values())}
    new = only(1) | (set(new_list) - set(old_list))
    removed = only(0) | (set(old_list) - set(new_list))
    return sorted(new - removed), sorted(removed - new)


def markdown_table(frame: pd.DataFrame, align: str = "left") -> str:
    """``frame`` as a GitHub Markdown table, its index the first column; cells are written as they are."""
    return frame.to_markdown(disable_numparse=True, colalign=("left", *[align] * len(frame.columns)))


def delta(pair: tuple) -> str:
    old, new = pair
    return ABSENT if old is None or new is None else f"{100 * (new - old):+.2f} pp"


def metrics_table(found: dict, new: list[str], removed: list[str]) -> pd.DataFrame:
    rows = {}
    for name in sorted(found):
        label = f"{name} (new)" if name in new else f"{name} (removed)" if name in removed else name
        row = {}
        for kind, title in (("test", "test accuracy"), ("val", "val accuracy")):
            old, value = found[name].get(kind, (None, None))
            row |= {f"{title} (base)": percent(old), f"{title} (new)": percent(value), f"Δ {kind}": delta((old, value))}
        rows[label] = row
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("architecture")


def changed_figures(root: Path, base: str) -> tuple[list[str], list[str]]:
    """Figures (repository-relative) whose content differs from ``base``: (present now, deleted)."""
    tracked = run(root, "git", "diff", "-z", "--name-only", base, "--", str(FIGURES_DIR))
    untracked = run(root, "git", "ls-files", "-z", "--others", "--exclude-standard", "--", str(FIGURES_DIR))
    paths = sorted(set(filter(None, (tracked + untracked).split("\0"))))
    return [p for p in paths if (root / p).is_file()], [p for p in paths if not (root / p).is_file()]


def names(items: list[str]) -> str:
    return ", ".join(f"`{n}`" for n in items) or "none"


def folded(summary: str, body: list[str], fold: bool) -> list[str]:
    """``body`` as is, or inside a <details> block; blank lines keep its Markdown (and CML's image upload) working."""
    return ["<details>", f"<summary>{summary}</summary>", "", *body, "</details>", ""] if fold else body


def render(base: str, commit: str, params: pd.DataFrame, found: dict, new: list[str], removed: list[str],
           figures: list[str], deleted: list[str], link: Callable[[str], str]) -> str:
    """The comment; ``link`` turns a repository-relative path into the one the comment embeds."""
    lines = [f"## Pipeline changes against `{base}` ({commit})", "",
             f"### Params ({len(params)} changed)", ""]
    lines += folded(f"{len(params)} params", [markdown_table(params), ""], len(params) > OPEN_ROWS) \
        if len(params) else ["No param changed.", ""]
    lines += ["### Accuracy per architecture", "",
              markdown_table(metrics_table(found, new, removed), align="right") if found
              else "No metrics on either side.", "",
              f"New architectures: {names(new)}. Removed architectures: {names(removed)}.", "",
              f"### Changed figures ({len(figures)})", ""]
    embeds = [line for p in figures for line in (f"![{Path(p).name}]({link(p)})", "")]
    lines += folded(f"{len(figures)} figures", embeds, len(figures) > OPEN_FIGURES) if figures \
        else ["No figure changed.", ""]
    if deleted:
        lines += [f"Deleted figures: {names(deleted)}.", ""]
    lines += ["*pp*: percentage points. Generated by `python -m src.pr_report`; params from "
              "`dvc.api.params_show`, accuracies from the metrics files of both revisions."]
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m src.pr_report", description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help="git revision to compare with (branch, tag or commit); required")
    parser.add_argument("--output", type=Path, help="write the comment here (default: stdout)")
    args = parser.parse_args(argv)
    root = repository_root()
    commit = check_base(root, args.base)
    params = param_changes(root, args.base)
    found = accuracies(root, args.base)
    new, removed = new_and_removed(found, architectures_at(root, args.base), architectures_at(root, None))
    figures, deleted = changed_figures(root, args.base)
    folder = args.output.resolve().parent if args.output else root  # CML resolves images against it

    def link(path: str) -> str:
        return Path(os.path.relpath(root / path, folder)).as_posix()

    text = render(args.base, commit, params, found, new, removed, figures, deleted, link)
    if args.output is None:
        sys.stdout.write(text)
        return
    with atomic_path(args.output) as tmp:
        tmp.write_text(text)
    print(f"pr_report: {len(params)} params, {len(found)} architectures ({len(new)} new, {len(removed)} removed), "
          f"{len(figures)} figures changed -> {args.output}")


if __name__ == "__main__":
    run_stage(main)
