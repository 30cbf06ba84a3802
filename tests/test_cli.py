"""Every command-line entry point answers `--help` by argparse: its usage and a line of help for every option,
with the default of every option that takes a value, and without doing anything else."""

import functools
import re
import subprocess
import sys

import pytest

from tests.conftest import REPO

ENTRY_POINTS = sorted(
    path.relative_to(REPO).with_suffix("").as_posix().replace("/", ".")
    for folder in ("src", "scripts", "benchmarks") for path in (REPO / folder).rglob("*.py")
    if 'if __name__ == "__main__":' in path.read_text())


VALUE = r"(?: [A-Z_\[\].,{} -]+)?"
OPTION_LINE = re.compile(rf"^  (-{{1,2}}[\w-]+{VALUE}(?:, --?[\w-]+{VALUE})?)(?:  +(.*))?$")


def options(help_text: str) -> dict[str, str]:
    """Each option of an argparse help text (``-x, --long VALUE``) and the help written for it."""
    found, current = {}, None
    for line in help_text.splitlines():
        match = OPTION_LINE.match(line)
        if match:
            current = match.group(1).strip()
            found[current] = match.group(2) or ""
        elif current and line.startswith(" " * 10):
            found[current] += " " + line.strip()
        else:
            current = None
    return found


def test_every_entry_point_is_found():
    assert {"src.stages.train", "src.promote", "src.prove_unchanged", "scripts.team_stack",
            "benchmarks.b10_determinism_cost"} <= set(ENTRY_POINTS)


def run_help(module: str, folder) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, "--help"], cwd=folder, capture_output=True, text=True,
                          env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}, timeout=120)


@functools.cache
def help_of(module: str) -> str:
    return run_help(module, REPO).stdout


@pytest.mark.parametrize("module", ENTRY_POINTS)
def test_help_describes_every_option_and_does_nothing_else(module, tmp_path):
    result = run_help(module, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: "), result.stdout
    assert list(tmp_path.iterdir()) == []  # nothing written where it ran
    described = options(result.stdout)
    assert "-h, --help" in described
    undescribed = [option for option, text in described.items() if not text.strip()]
    assert not undescribed, f"{module}: options without help: {undescribed}"
    takes_a_value = [option for option in described if re.search(r" [A-Z_\[{]", option)]
    without_default = [option for option in takes_a_value
                       if "default" not in described[option] and "required" not in described[option]]
    assert not without_default, f"{module}: options that take a value but name no default: {without_default}"


DOCS = [REPO / "README.md", REPO / "BENCHMARKS.md", *sorted((REPO / "docs").glob("*.md"))]
# `python -m src.promote ...`, `python benchmarks/b2_data_stages.py ...`: as a doc shows it, in a code span or
# on a line of a code block, up to the end of the span or line (a comment after # left out).
DOC_COMMAND = re.compile(r"python3? (?:-m ((?:src|scripts|benchmarks)(?:\.\w+)+)|((?:scripts|benchmarks)/\w+)\.py)"
                         r"([^`#\n]*)")


def doc_commands() -> list[tuple[str, str, str]]:
    return sorted({(doc.name, match.group(1) or match.group(2).replace("/", "."), match.group(3))
                   for doc in DOCS for match in DOC_COMMAND.finditer(doc.read_text())})


def test_docs_show_commands():
    assert len(doc_commands()) > 20


# Entry points that hand the rest of their command line to another program, which checks those options.
PASSES_OPTIONS_ON = {"benchmarks.pip_for"}  # to pip


@pytest.mark.parametrize(("doc", "module", "arguments"), doc_commands())
def test_every_command_a_doc_shows_runs_an_entry_point_with_flags_it_has(doc, module, arguments):
    assert module in ENTRY_POINTS, f"{doc}: `{module}` is no entry point"
    if module in PASSES_OPTIONS_ON:
        return
    flags = re.findall(r"(?<![\w-])(--[a-z][\w-]*)", arguments)
    unknown = [flag for flag in flags if not re.search(rf"(?<![\w-]){flag}(?![\w-])", help_of(module))]
    assert not unknown, f"{doc}: `{module}` has no {unknown} (its --help)"


# `dvc exp show --only-changed ...`: DVC's own commands as the docs show them.
DVC_COMMAND = re.compile(r"(?:^|`|&& )dvc ((?:[a-z]+ ?){1,2})((?:[^`#&\n]|&(?!&))*)", re.MULTILINE)


@functools.cache
def dvc_help(command: str) -> str:
    """`dvc COMMAND --help` of the longest prefix of ``command`` that is a dvc command."""
    words = command.split()
    for end in range(len(words), 0, -1):
        result = subprocess.run([sys.executable, "-m", "dvc", *words[:end], "--help"], cwd=REPO,
                                capture_output=True, text=True, timeout=120)
        if result.returncode == 0:
            return result.stdout
    raise AssertionError(f"`dvc {command}` is no dvc command")


def doc_dvc_commands() -> list[tuple[str, str, str]]:
    return sorted({(doc.name, match.group(1).strip(), match.group(2))
                   for doc in DOCS for match in DVC_COMMAND.finditer(doc.read_text())})


def test_docs_show_dvc_commands():
    assert ("README.md", "metrics show", "reports/train reports/eval") in doc_dvc_commands()


@pytest.mark.parametrize(("doc", "command", "arguments"), doc_dvc_commands())
def test_every_dvc_command_a_doc_shows_has_the_flags_it_uses(doc, command, arguments):
    flags = re.findall(r"(?<![\w-])(--[a-z][\w-]*|-[a-zA-Z])(?![\w-])", arguments)
    unknown = [flag for flag in flags if not re.search(rf"(?<![\w-]){flag}(?![\w-])", dvc_help(command))]
    assert not unknown, f"{doc}: `dvc {command}` has no {unknown} (its --help)"
