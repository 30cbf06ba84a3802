"""One error type for every problem a user can fix, and the wrapper that prints it as one line.

A leaf: it imports nothing from src, so every module can import it (src.core.fileio tags the OSErrors
its writers raise with the output and its published name; this module only reads those tags).
"""

import errno
import sys
from collections.abc import Callable
from pathlib import Path


class PipelineError(Exception):
    """A problem with inputs or params: the message names what is wrong and how to fix it."""


_READ_ONLY_FIX = "make the folder {folder} writable (`chmod u+w {folder}`, as its owner) and rerun"
WRITE_FIXES = {
    errno.ENOSPC: "free disk space on the file system that holds {folder} (`df -h {folder}`) and rerun",
    errno.EDQUOT: "free disk space or raise your disk quota on the file system that holds {folder} and rerun",
    errno.EROFS: "make the folder {folder} writable ({folder} is on a read-only file system: remount it "
                 "read-write or run from a writable copy of the repository) and rerun",
    errno.EACCES: _READ_ONLY_FIX,
    errno.EPERM: "make the folder {folder} writable (`chmod u+w {folder}` as its owner; `lsattr -d {folder}` shows "
                 "an immutable flag, which `chattr -i {folder}` removes) and rerun",
}


def describe_write_error(error: OSError) -> str | None:
    """One line naming the output that could not be written and the fix, for a full disk or a
    read-only folder; None for any other OSError (a bug, shown with its traceback)."""
    if error.errno not in WRITE_FIXES:
        return None
    output = getattr(error, "output", None)  # set by src.core.fileio's atomic writers
    # The path the system named, under its published name (not the temporary one it is written as),
    # which src.core.fileio's writers add; outside them, the name as the system gave it.
    named = getattr(error, "published_filename", None) or error.filename
    failed = Path(named) if named else None
    if output is not None and (failed is None or failed == output or Path(output) in failed.parents):
        shown, folder = Path(output), Path(output).parent
    elif failed is not None and output is None and error.errno in (errno.EACCES, errno.EPERM):
        # Not raised by a writer: maybe a read (an input the stage may not open).
        return (f"cannot access {failed} ({error.strerror}); make it readable and the folder "
                f"{failed.parent.as_posix()} writable for the user running the stage, and rerun")
    elif failed is not None:
        shown, folder = failed, failed.parent
    else:
        return f"cannot write the stage's outputs ({error.strerror}); " + WRITE_FIXES[error.errno].format(folder=".")
    detail = f"{error.strerror}: {failed}" if failed is not None and failed != shown else error.strerror
    return f"cannot write {shown} ({detail}); " + WRITE_FIXES[error.errno].format(folder=folder.as_posix())


def run_stage(main: Callable[[list[str]], None]) -> None:
    """Run a stage's main; a PipelineError, or an output that cannot be written (disk full,
    read-only folder), becomes one ``error:`` line on stderr and exit code 2."""
    try:
        main(sys.argv[1:])
    except PipelineError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    except OSError as error:
        message = describe_write_error(error)
        if message is None:
            raise
        print(f"error: {message}", file=sys.stderr)
        sys.exit(2)
