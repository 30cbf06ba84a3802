"""The arguments every per-net stage takes."""

from src.core.errors import PipelineError


def stage_arguments(argv: list[str], usage: str) -> tuple[str, str]:
    """(name, table) from ``NAME`` or ``NAME --table seeds``."""
    if len(argv) == 1:
        return argv[0], "default"
    if len(argv) == 3 and argv[1] == "--table" and argv[2] in ("default", "seeds"):
        return argv[0], argv[2]
    raise PipelineError(usage)
