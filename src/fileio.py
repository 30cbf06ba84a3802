"""Atomic writes: an output either appears complete or not at all, even if the process is killed."""

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path


def _umask_mode(mode: int) -> int:
    """``mode`` as the umask allows it: tempfile creates private (0600/0700) files and folders."""
    umask = os.umask(0)
    os.umask(umask)
    return mode & ~umask


@contextlib.contextmanager
def atomic_path(target: Path | str, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``target``; rename it over ``target`` only on success."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=f".partial{suffix}", dir=target.parent)
    os.fchmod(fd, _umask_mode(0o666))
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_dir(target: Path | str) -> Iterator[Path]:
    """Yield a temporary folder beside ``target``; it replaces ``target`` only on success."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent))
    tmp.chmod(_umask_mode(0o777))
    try:
        yield tmp
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def remove_partials(folder: Path | str) -> None:
    """Delete leftovers of writes that a SIGKILL interrupted (they never replaced a real output)."""
    folder = Path(folder)
    if folder.is_dir():
        for leftover in folder.glob(".*.partial*"):
            if leftover.is_dir():
                shutil.rmtree(leftover, ignore_errors=True)
            else:
                leftover.unlink(missing_ok=True)


def write_json(path: Path | str, payload: object) -> None:
    """Write sorted, indented JSON atomically so reruns are byte-identical."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")


def read_json(path: Path | str, what: str, fix: str) -> dict:
    """Read a JSON file another stage wrote; a missing or corrupt file is a PipelineError."""
    from src.errors import PipelineError

    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise PipelineError(f"{what} is missing: {path} does not exist; {fix}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise PipelineError(f"{what} is corrupt: {path} is not valid JSON ({error}); {fix}") from None
