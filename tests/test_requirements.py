"""The requirements files give every supported machine exactly one TensorFlow, of the right kind.

Offline: the files are parsed with `packaging` (what pip itself uses) and their environment markers
evaluated for each supported (OS, machine, Python) of docs/platforms.md, not for the machine running
the test. Whether the pins resolve on each platform is pip's resolver's question: docs/platforms.md
lists those commands and what they gave.
"""

import importlib.metadata
import re
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.conftest import REPO

PYTHONS = ["3.11", "3.12", "3.13"]

# The marker variables each platform's CPython reports (`python -c "import platform; print(platform.machine())"`).
PLATFORMS = {
    "Linux x86_64": {"os_name": "posix", "sys_platform": "linux", "platform_system": "Linux",
                     "platform_machine": "x86_64"},
    "Linux aarch64": {"os_name": "posix", "sys_platform": "linux", "platform_system": "Linux",
                      "platform_machine": "aarch64"},
    "macOS arm64": {"os_name": "posix", "sys_platform": "darwin", "platform_system": "Darwin",
                    "platform_machine": "arm64"},
    "Windows AMD64": {"os_name": "nt", "sys_platform": "win32", "platform_system": "Windows",
                      "platform_machine": "AMD64"},
}
# Unsupported: none has a wheel for its TensorFlow line, so pip fails at install. What must not happen
# is a marker that selects no TensorFlow at all: the install would pass and `dvc repro` fail later.
UNSUPPORTED = {
    "macOS x86_64 (Intel)": {"os_name": "posix", "sys_platform": "darwin", "platform_system": "Darwin",
                             "platform_machine": "x86_64"},
    "Windows ARM64": {"os_name": "nt", "sys_platform": "win32", "platform_system": "Windows",
                      "platform_machine": "ARM64"},
    "Linux ppc64le": {"os_name": "posix", "sys_platform": "linux", "platform_system": "Linux",
                      "platform_machine": "ppc64le"},
}

# Distributions that install the `tensorflow` package itself (plugins such as tensorflow-metal do not).
TENSORFLOWS = {"tensorflow", "tensorflow-cpu", "tensorflow-gpu", "tensorflow-intel", "tensorflow-macos",
               "tensorflow-aarch64", "tensorflow-cpu-aws", "tf-nightly", "tf-nightly-cpu"}

# Each install a README or docs/platforms.md command makes: (files, platforms, expected TensorFlow, its extras).
CPU = {"Linux x86_64": "tensorflow-cpu", "Windows AMD64": "tensorflow-cpu",
       "Linux aarch64": "tensorflow", "macOS arm64": "tensorflow"}
INSTALLS = [
    (("requirements.txt",), CPU, set()),
    (("requirements.txt", "requirements-dev.txt"), CPU, set()),
    (("requirements.txt", "requirements-ray.txt"), CPU, set()),
    (("requirements-gpu.txt",), {"Linux x86_64": "tensorflow"}, {"and-cuda"}),
    (("requirements-gpu.txt", "requirements-dev.txt"), {"Linux x86_64": "tensorflow"}, {"and-cuda"}),
]


def marker_environment(platform: dict, python: str) -> dict:
    return {"implementation_name": "cpython", "platform_python_implementation": "CPython",
            "python_version": python, "python_full_version": f"{python}.0", "implementation_version": f"{python}.0",
            "platform_release": "", "platform_version": "", **platform}


def read_requirements(path: Path) -> list[Requirement]:
    """Every requirement of a pip requirements file, following `-r` includes as pip does (relative to
    the including file); any other option fails, so that a new kind of line gets looked at here."""
    text = re.sub(r"\\\n", "", path.read_text())
    requirements = []
    for raw in text.splitlines():
        line = re.sub(r"(^|\s)#.*", "", raw).strip()
        if not line:
            continue
        include = re.fullmatch(r"(?:-r|--requirement)(?:\s+|=)(\S+)", line)
        if include:
            requirements += read_requirements(path.parent / include.group(1))
        elif line.startswith("-"):
            raise AssertionError(f"{path.name}: option this test does not know: {line!r}")
        else:
            requirements.append(Requirement(line))
    return requirements


def selected(files: tuple[str, ...], environment: dict) -> list[Requirement]:
    requirements = [r for name in files for r in read_requirements(REPO / name)]
    return [r for r in requirements if r.marker is None or r.marker.evaluate(environment)]


def tensorflows(requirements: list[Requirement]) -> list[Requirement]:
    return [r for r in requirements if canonicalize_name(r.name) in TENSORFLOWS]


def requirement_files() -> list[str]:
    return sorted(p.name for p in REPO.glob("requirements*.txt"))


def test_every_requirements_file_is_checked_here():
    assert requirement_files() == sorted({name for files, _, _ in INSTALLS for name in files})


CASES = [pytest.param(files, platform, python, kind, extras, id=f"{'+'.join(files)}-{platform}-{python}")
         for files, kinds, extras in INSTALLS for platform, kind in sorted(kinds.items()) for python in PYTHONS]


@pytest.mark.parametrize("files, platform, python, kind, extras", CASES)
def test_exactly_one_tensorflow_of_the_right_kind(files, platform, python, kind, extras):
    found = tensorflows(selected(files, marker_environment(PLATFORMS[platform], python)))
    assert [(canonicalize_name(r.name), r.extras, str(r.specifier)) for r in found] == \
        [(kind, extras, "==2.21.0")], f"{' + '.join(files)} on {platform}, Python {python}: {found}"


@pytest.mark.parametrize("platform", sorted(UNSUPPORTED))
def test_an_unsupported_machine_still_selects_one_tensorflow(platform):
    found = tensorflows(selected(("requirements.txt",), marker_environment(UNSUPPORTED[platform], "3.11")))
    assert len(found) == 1, f"{platform}: {found}"


def test_the_test_tools_bring_no_tensorflow():
    assert not tensorflows(read_requirements(REPO / "requirements-dev.txt"))


def test_every_requirement_is_pinned_once():
    for name in requirement_files():
        for platform in PLATFORMS.values():
            for python in PYTHONS:
                requirements = selected((name,), marker_environment(platform, python))
                loose = [str(r) for r in requirements
                         if [s.operator for s in r.specifier] != ["=="] or "*" in str(r.specifier)]
                assert not loose, f"{name}: not pinned to one version: {loose}"
                names = [canonicalize_name(r.name) for r in requirements]
                assert len(names) == len(set(names)), f"{name}: a distribution listed twice: {names}"


def test_the_gpu_file_pins_what_requirements_txt_pins():
    """Besides TensorFlow and its CUDA wheels, requirements-gpu.txt installs what requirements.txt does."""
    environment = marker_environment(PLATFORMS["Linux x86_64"], "3.11")

    def rest(name: str) -> dict:
        return {canonicalize_name(r.name): str(r.specifier) for r in selected((name,), environment)
                if canonicalize_name(r.name) not in TENSORFLOWS and not r.name.startswith("nvidia-")}

    assert rest("requirements-gpu.txt") == rest("requirements.txt")


def test_the_gpu_file_pins_the_cuda_wheels_tensorflow_was_built_against():
    """Each and-cuda requirement of the installed TensorFlow 2.21.0 (tensorflow-cpu's metadata lists the
    same extra) pinned at its lower bound: the CUDA, cuDNN and NCCL versions the wheel was built with."""
    installed = [d for d in ("tensorflow", "tensorflow-cpu") if _version(d) == "2.21.0"]
    if not installed:
        pytest.skip("TensorFlow 2.21.0 is not installed here")
    and_cuda = [Requirement(r) for r in importlib.metadata.requires(installed[0]) or []]
    and_cuda = [r for r in and_cuda if r.marker and r.marker.evaluate({"extra": "and-cuda"})
                and not r.marker.evaluate({"extra": ""})]
    lower_bounds = {canonicalize_name(r.name): next(s.version for s in r.specifier if s.operator == ">=")
                    for r in and_cuda}
    pins = {canonicalize_name(r.name): str(r.specifier).removeprefix("==")
            for r in read_requirements(REPO / "requirements-gpu.txt") if r.name.startswith("nvidia-")}
    assert lower_bounds and pins == lower_bounds


def _version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def test_includes_are_followed_and_comments_dropped(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "base.txt").write_text("numpy==2.4.6  # a comment\n\n")
    (tmp_path / "top.txt").write_text("# header\n-r sub/base.txt\nkeras==3.15.1; \\\n  python_version >= '3.11'\n")
    assert [str(r) for r in read_requirements(tmp_path / "top.txt")] == \
        ["numpy==2.4.6", 'keras==3.15.1; python_version >= "3.11"']
