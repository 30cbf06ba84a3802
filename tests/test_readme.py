"""README.md's two set-up commands stay true: CI runs the test command, verbatim."""

import re

import yaml

from src.training.recipe import Train
from tests.conftest import REPO


def readme_commands() -> list[str]:
    text = (REPO / "README.md").read_text()
    setup = text.split("## Set up", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.+?)\n```", setup, flags=re.S)


def test_readme_has_exactly_two_setup_commands():
    commands = readme_commands()
    assert len(commands) == 2 and all("\n" not in c for c in commands)
    assert commands[0].endswith("dvc repro") and "pip install -r requirements.txt" in commands[0]
    assert commands[1].endswith("python -m pytest") and "pip install -r requirements.txt" in commands[1]


def test_ci_runs_the_readme_test_command():
    ci_lines = (REPO / ".ci" / "run").read_text().splitlines()
    assert ci_lines[-1] == readme_commands()[1]


DOCS = ["README.md", "BENCHMARKS.md", *(p.relative_to(REPO).as_posix() for p in sorted((REPO / "docs").glob("*.md")))]
# Files a doc or comment names in backticks; outputs that only a run writes (data/, models/, mlruns/) and
# names with a placeholder (NAME, N) are not checked.
NAMED_FILE = re.compile(r"`((?:src|tests|benchmarks|scripts|docs|seeds|reports|\.ci|\.github)/[\w./-]+)`")
# In YAML comments, without backticks: "(src/core/params.py)", "see docs/seeds.md".
COMMENT_FILE = re.compile(r"(?<![\w/.])((?:src|tests|benchmarks|scripts|docs)/[\w/.-]+\.(?:py|md))")


def slug(heading: str) -> str:
    """GitHub's anchor for a Markdown heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower().replace("`", ""))
    return text.replace(" ", "-")


def anchors(path) -> set[str]:
    return {slug(line.lstrip("#")) for line in path.read_text().splitlines() if line.startswith("#")}


def test_every_file_and_section_a_doc_links_to_exists():
    broken = []
    for doc in DOCS:
        for target in re.findall(r"\]\(([^)\s]+)\)", (REPO / doc).read_text()):
            if target.startswith(("http://", "https://", "mailto:")):
                continue
            file, _, anchor = target.partition("#")
            path = (REPO / doc).parent / file if file else REPO / doc
            if not path.exists():
                broken.append(f"{doc}: {target} (no such file)")
            elif anchor and path.suffix == ".md" and anchor not in anchors(path):
                broken.append(f"{doc}: {target} (no such section)")
    assert not broken, broken


def test_every_file_a_doc_or_a_params_comment_names_exists():
    missing = []
    for doc in [*DOCS, "params.yaml", "dvc.yaml", "seeds/dvc.yaml"]:
        text = (REPO / doc).read_text()
        comments = "\n".join(line.split("#", 1)[1] for line in text.splitlines() if "#" in line)
        for name in NAMED_FILE.findall(text) + (COMMENT_FILE.findall(comments) if doc.endswith(".yaml") else []):
            name = name.split("::")[0].rstrip(".")
            if re.search(r"[A-Z]{2,}|\$|\*|\{", name.split("/", 1)[1]):  # a placeholder, not a file
                continue
            if not (REPO / name).exists() and not (REPO / name.rstrip("/")).exists():
                missing.append(f"{doc}: {name}")
    assert not missing, missing


def test_readme_results_are_the_committed_metrics():
    """README's results table and headline say what reports/train and reports/eval hold, ranked as the
    report ranks: by validation accuracy."""
    import json

    text = (REPO / "README.md").read_text()
    section = text.split("## Results on CIFAR-10", 1)[1].split("\n## ", 1)[0]
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in section.splitlines()
            if line.startswith("| `")]
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    assert sorted(row[0].strip("`") for row in rows) == sorted(params["architectures"])

    def pct(value: float) -> str:
        return f"{value * 100:.2f}"

    expected = []
    for name in params["architectures"]:
        train = json.loads((REPO / f"reports/train/{name}.json").read_text())
        test = json.loads((REPO / f"reports/eval/{name}.json").read_text())
        expected.append((train["val_accuracy"], [
            f"`{name}`", Train.model_validate(params["train"][name]).precision,
            f"{train['epochs_run']} ", f"{train['seconds_per_epoch']:.1f}", f"{train['train_seconds'] / 60:.1f} min",
            f"{pct(train['val_accuracy'])} / {pct(test['val_accuracy_tta'])} %",
            f"**{pct(test['test_accuracy_tta'])} %**",
            f"{pct(test['test_accuracy_single_view'])} %", f"{pct(test['train_accuracy_single_view'])} %"]))
    ranked = [cells for _, cells in sorted(expected, key=lambda pair: -pair[0])]
    for row, cells in zip(rows, ranked, strict=True):
        assert row[0] == cells[0] and row[1] == cells[1] and row[2].startswith(cells[2]), (row, cells)
        assert row[3:] == cells[3:], (row, cells)
    best = ranked[0]
    headline = f"reaches **{best[6].strip('*')} test accuracy after {best[4].removesuffix(' min')} minutes"
    assert headline in " ".join(section.split()), headline
