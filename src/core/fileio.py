"""Atomic writes: an output either appears complete or not at all, even if the process is killed.

Every output is written to a temporary sibling named ``.NAME.XXXXXXXX.partial`` (tempfile's eight
random characters) and renamed over ``NAME`` only on success. A SIGKILL can leave such a sibling
behind; the next write of the same output deletes it first, so every stage cleans its own output
folders without having to list them. Two processes never write the same output at once (DVC
locks the repository for `dvc repro`; queued experiments run in their own copies).
"""

import contextlib
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from src.core.errors import PipelineError

# `.NAME.` + tempfile's 8 random characters + `.partial` (+ a suffix, or `-old` for a replaced folder)
TEMPORARY_NAME = re.compile(r"^\.(?P<target>.+)\.[a-z0-9_]{8}\.partial")


def _umask_mode(mode: int) -> int:
    """``mode`` as the umask allows it: tempfile creates private (0600/0700) files and folders."""
    umask = os.umask(0)
    os.umask(umask)
    return mode & ~umask


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def remove_stale_partials(target: Path | str) -> None:
    """Delete the temporary siblings of ``target`` that an interrupted earlier write left behind
    (never another output's: ``.a.b.XXXXXXXX.partial`` belongs to ``a.b``, not to ``a``)."""
    target = Path(target)
    if target.parent.is_dir():
        for leftover in target.parent.iterdir():
            match = TEMPORARY_NAME.match(leftover.name)
            if match and match["target"] == target.name:
                _remove(leftover)


def published_path(path: Path | str) -> Path:
    """``path`` with each temporary folder or file name replaced by the output it becomes:
    data/.split.k2x9a0q1.partial/val_images.npy -> data/split/val_images.npy."""
    return Path(*(match["target"] if (match := TEMPORARY_NAME.match(part)) else part for part in Path(path).parts))


def tag_write_error(error: OSError, target: Path) -> None:
    """Tag ``error`` for src.core.errors' one-line message: ``output``, the output being written (a full
    disk fails ``file.write`` with no file name), and ``published_filename``, the path the system
    named under its published name (data/.split.k2x9a0q1.partial/x.npy -> data/split/x.npy)."""
    error.output = target
    if error.filename:
        error.published_filename = published_path(error.filename)


@contextlib.contextmanager
def _writing(target: Path) -> Iterator[None]:
    """Tag an OSError raised while ``target`` is written (``tag_write_error``). The outermost writer
    tags last: the message names the folder being written, not a file inside its temporary copy."""
    try:
        yield
    except OSError as error:
        tag_write_error(error, target)
        raise


@contextlib.contextmanager
def atomic_path(target: Path | str, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``target``; rename it over ``target`` only on success."""
    target = Path(target)
    with _writing(target):
        target.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_partials(target)
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
    """Yield a temporary folder beside ``target``; it replaces ``target`` only on success.

    The old ``target`` is renamed aside (``…partial-old``) before the new one is renamed in, then
    deleted: a failure at any point leaves either the old folder or the new one, never a half-deleted one.
    """
    target = Path(target)
    with _writing(target):
        target.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_partials(target)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent))
        old = tmp.with_name(f"{tmp.name}-old")
        try:
            tmp.chmod(_umask_mode(0o777))
            yield tmp
            if target.exists() or target.is_symlink():
                os.replace(target, old)
                try:
                    os.replace(tmp, target)
                except BaseException:
                    os.replace(old, target)
                    raise
            else:
                os.replace(tmp, target)
        finally:
            _remove(tmp)
            _remove(old)


def remove_partials(folder: Path | str) -> None:
    """Delete every leftover of interrupted writes in ``folder`` (they never replaced a real output)."""
    folder = Path(folder)
    if folder.is_dir():
        for leftover in folder.glob(".*.partial*"):
            _remove(leftover)


def write_json(path: Path | str, payload: object) -> None:
    """Write sorted, indented JSON atomically so reruns are byte-identical."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")


def read_json(path: Path | str, what: str, fix: str) -> dict:
    """Read a JSON file another stage wrote; a missing or corrupt file is a PipelineError."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise PipelineError(f"{what} is missing: {path} does not exist; {fix}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise PipelineError(f"{what} is corrupt: {path} is not valid JSON ({error}); {fix}") from None


def read_model(path: Path | str, what: str, fix: str):
    """Load a Keras model another stage saved; a missing or unreadable file is a PipelineError."""
    import keras

    try:
        return keras.models.load_model(path)
    except FileNotFoundError:
        raise PipelineError(f"{what} is missing: {path} does not exist; {fix}") from None
    except (OSError, ValueError) as error:
        raise PipelineError(f"{what} cannot be loaded from {path} ({error}); {fix}") from None


def files_md5(paths: list[Path]) -> str:
    """One md5 over the given files, in order (for one file, the hash DVC records for it)."""
    digest = hashlib.md5()
    for path in paths:
        with path.open("rb") as stream:
            for chunk in iter(lambda: stream.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()
