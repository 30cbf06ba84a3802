"""params.yaml: load it, fill documented defaults, and validate every section at once.

Every stage calls :func:`load_params` first, so a bad value anywhere in the file stops the
pipeline before any stage does work, with one line listing every problem found.
"""

from pathlib import Path
from typing import Any

import yaml

from src.errors import PipelineError

PARAMS_FILE = Path("params.yaml")

DATASETS = {
    "cifar10": {
        "url": "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
        "md5": "c58f30108f718f92721af3b95e74349a",
        "archive": "cifar-10-python.tar.gz",
    },
    "cifar100": {
        "url": "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
        "md5": "eb9058c3a382ffc7106e4002c42a8d85",
        "archive": "cifar-100-python.tar.gz",
    },
}
LABEL_MODES = ("fine", "coarse")
NORMALIZATIONS = ("scale", "standardize", "per_channel")
OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop")
SCHEDULES = ("constant", "inverse_time", "cosine", "onecycle")
MONITORS = ("val_loss", "val_accuracy")
TRAIN_KEYS = {"optimizer", "learning_rate", "momentum", "nesterov", "schedule", "decay", "weight_decay",
              "label_smoothing", "batch_size", "epochs", "augmentation", "early_stopping", "weights", "seed",
              "jit_compile", "seed_epochs", "seed_accuracy", "seed_dataset"}
NAME_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789_")


class _Problems:
    """Collects every problem so the user fixes the file in one pass, not one error per run."""

    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, message: str) -> None:
        self.items.append(message)

    def section(self, params: dict, key: str) -> dict:
        value = params.get(key)
        if not isinstance(value, dict):
            self.add(f"`{key}` section is missing or not a mapping")
            return {}
        return value

    def choice(self, section: dict, path: str, key: str, choices: tuple) -> None:
        value = section.get(key)
        if value not in choices:
            self.add(f"`{path}.{key}` is {value!r}; expected one of {', '.join(choices)}")

    def number(self, section: dict, path: str, key: str, *, kind=(int, float), low=None, high=None,
               low_open=False, high_open=False, optional=False) -> None:
        if key not in section:
            if not optional:
                self.add(f"`{path}.{key}` is missing")
            return
        value = section[key]
        if isinstance(value, bool) or not isinstance(value, kind):
            expected = "an integer" if kind is int else "a number"
            self.add(f"`{path}.{key}` is {value!r}; expected {expected}")
            return
        too_low = low is not None and (value <= low if low_open else value < low)
        too_high = high is not None and (value >= high if high_open else value > high)
        if too_low or too_high:
            left = "(" if low_open else "["
            right = ")" if high_open else "]"
            bounds = f"{left}{'' if low is None else low}, {'' if high is None else high}{right}"
            self.add(f"`{path}.{key}` is {value!r}; expected a value in {bounds}")


def _check_data(params: dict, problems: _Problems) -> None:
    data = problems.section(params, "data")
    problems.choice(data, "data", "dataset", tuple(DATASETS))
    source = data.get("source")
    if source is not None and (not isinstance(source, str) or not source):
        problems.add(f"`data.source` is {source!r}; expected an http(s) URL, a local path, or null")
    md5 = data.get("md5")
    if md5 is not None and not (isinstance(md5, str) and len(md5) == 32 and set(md5) <= set("0123456789abcdef")):
        problems.add(f"`data.md5` is {md5!r}; expected 32 lowercase hex digits, or null")
    problems.choice(data, "data", "label_mode", LABEL_MODES)
    problems.choice(problems.section(params, "preprocess"), "preprocess", "normalization", NORMALIZATIONS)
    split = problems.section(params, "split")
    problems.number(split, "split", "val_fraction", low=0, high=1, low_open=True, high_open=True)
    problems.number(split, "split", "seed", kind=int, low=0)


def _check_training(name: str, section: Any, problems: _Problems) -> None:
    path = f"train.{name}"
    if not isinstance(section, dict):
        problems.add(f"`{path}` section is missing; every name in `architectures` needs one")
        return
    unknown = sorted(set(section) - TRAIN_KEYS)
    if unknown:
        problems.add(f"`{path}` has unknown keys {unknown}; allowed: {', '.join(sorted(TRAIN_KEYS))}")
    problems.choice(section, path, "optimizer", OPTIMIZERS)
    problems.number(section, path, "learning_rate", low=0, low_open=True)
    problems.number(section, path, "batch_size", kind=int, low=1)
    problems.number(section, path, "epochs", kind=int, low=1)
    problems.number(section, path, "seed", kind=int, low=0)
    problems.number(section, path, "momentum", low=0, high=1, high_open=True, optional=True)
    problems.number(section, path, "weight_decay", low=0, optional=True)
    problems.number(section, path, "label_smoothing", low=0, high=1, high_open=True, optional=True)
    for flag in ("nesterov", "jit_compile"):
        if flag in section and not isinstance(section[flag], bool):
            problems.add(f"`{path}.{flag}` is {section[flag]!r}; expected true or false")
    schedule = section.get("schedule", "constant")
    if schedule not in SCHEDULES:
        problems.add(f"`{path}.schedule` is {schedule!r}; expected one of {', '.join(SCHEDULES)}")
    if schedule == "inverse_time":
        problems.number(section, path, "decay", low=0)
    augmentation = section.get("augmentation") or {}
    if not isinstance(augmentation, dict):
        problems.add(f"`{path}.augmentation` is {augmentation!r}; expected a mapping or null")
    else:
        unknown = set(augmentation) - {"horizontal_flip", "shift", "crop_padding"}
        if unknown:
            problems.add(f"`{path}.augmentation` has unknown keys {sorted(unknown)}; "
                         "use horizontal_flip, shift, crop_padding")
        problems.number(augmentation, f"{path}.augmentation", "shift", low=0, high=0.5, optional=True)
        problems.number(augmentation, f"{path}.augmentation", "crop_padding", kind=int, low=0, high=16,
                        optional=True)
    stopping = section.get("early_stopping")
    if stopping is not None:
        if not isinstance(stopping, dict):
            problems.add(f"`{path}.early_stopping` is {stopping!r}; expected a mapping or null")
        else:
            problems.choice(stopping, f"{path}.early_stopping", "monitor", MONITORS)
            problems.number(stopping, f"{path}.early_stopping", "patience", kind=int, low=1)
    if "weights" in section and section["weights"] not in ("imagenet", None):
        problems.add(f"`{path}.weights` is {section['weights']!r}; expected imagenet or null")


def validate(params: Any) -> dict:
    """Return ``params`` if valid; otherwise raise one PipelineError listing every problem."""
    if not isinstance(params, dict):
        raise PipelineError(f"{PARAMS_FILE} is not a mapping of sections; restore it from git")
    problems = _Problems()
    _check_data(params, problems)
    architectures = params.get("architectures")
    if not isinstance(architectures, list) or not architectures:
        problems.add("`architectures` is missing or empty; list the architectures to train")
        architectures = []
    train = problems.section(params, "train")
    for name in architectures:
        if not isinstance(name, str) or not set(name) <= NAME_CHARS:
            problems.add(f"`architectures` entry {name!r} is not a lowercase name")
            continue
        _check_training(name, train.get(name), problems)
    evaluate = problems.section(params, "evaluate")
    problems.number(evaluate, "evaluate", "batch_size", kind=int, low=1)
    if problems.items:
        count = len(problems.items)
        raise PipelineError(f"{PARAMS_FILE} has {count} problem{'s' if count > 1 else ''}: "
                            + "; ".join(problems.items))
    return params


def load_params(path: Path | str = PARAMS_FILE) -> dict:
    """Read and validate params.yaml (the whole file, whichever stage asks)."""
    path = Path(path)
    try:
        params = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise PipelineError(f"{path} is missing; run from the repository root") from None
    except yaml.YAMLError as error:
        raise PipelineError(f"{path} is not valid YAML: {' '.join(str(error).split())}") from None
    return validate(params)


def dataset_source(data: dict) -> tuple[str, str]:
    """The source and md5 to download: ``null`` in params means the official ones."""
    official = DATASETS[data["dataset"]]
    return data.get("source") or official["url"], data.get("md5") or official["md5"]
