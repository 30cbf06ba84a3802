"""Reading the data stages' arrays and class list, with one `error:` line naming the stage to rerun."""

from pathlib import Path

import numpy as np

from src.core.errors import PipelineError
from src.core.fileio import read_json


def load_array(folder: Path | str, name: str, fix: str = "run `dvc repro` to rebuild it") -> np.ndarray:
    path = Path(folder) / f"{name}.npy"
    try:
        return np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise PipelineError(f"{path} is missing; {fix}") from None
    except ValueError as error:
        raise PipelineError(f"{path} is corrupt ({error}); {fix}") from None


def load_classes(processed: Path | str) -> dict:
    return read_json(Path(processed) / "classes.json", "class list", "run `dvc repro preprocess`")
