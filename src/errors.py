"""One error type for every problem a user can fix, and the wrapper that prints it as one line."""

import sys
from collections.abc import Callable


class PipelineError(Exception):
    """A problem with inputs or params: the message names what is wrong and how to fix it."""


def run_stage(main: Callable[[list[str]], None]) -> None:
    """Run a stage's main; a PipelineError becomes one ``error:`` line on stderr and exit code 2."""
    try:
        main(sys.argv[1:])
    except PipelineError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
