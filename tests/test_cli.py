"""Every command-line entry point answers `--help` by argparse: its usage and a line of help for every option,
with the default of every option that takes a value, and without doing anything else."""

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


@pytest.mark.parametrize("module", ENTRY_POINTS)
def test_help_describes_every_option_and_does_nothing_else(module, tmp_path):
    result = subprocess.run([sys.executable, "-m", module, "--help"], cwd=tmp_path, capture_output=True, text=True,
                            env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}, timeout=120)
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
