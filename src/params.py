"""params.yaml: one declarative schema (pydantic), checked as a whole before any stage works.

Every stage calls :func:`load_params` first, so a bad value anywhere in the file stops the
pipeline before any stage does work, with one line listing every problem found. Every section
refuses unknown keys and suggests the closest valid one.
"""

import ast
import difflib
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, ValidationError, model_validator

from src.config import PARAMS_FILE
from src.errors import PipelineError

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
MODELS_SOURCE = Path(__file__).with_name("models.py")

Dataset = Literal["cifar10", "cifar100"]
Fraction = Annotated[float, Field(ge=0, lt=1)]


class Section(BaseModel):
    # strict: `true` is not the number 1, "0.5" is not 0.5, and `1e-3` (a string in YAML 1.1) is refused.
    model_config = ConfigDict(extra="forbid", strict=True)


class Data(Section):
    dataset: Dataset
    source: Annotated[str, StringConstraints(min_length=1)] | None = None  # null: the official URL
    md5: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{32}$")] | None = None  # null: the official md5
    label_mode: Literal["fine", "coarse"] = "fine"  # CIFAR-100's 100 classes or 20 superclasses


class Preprocess(Section):
    normalization: Literal["scale", "standardize", "per_channel"]


class Split(Section):
    val_fraction: float = Field(gt=0, lt=1)
    seed: int = Field(ge=0)


class Augmentation(Section):
    horizontal_flip: bool = False
    shift: float = Field(0.0, ge=0, le=0.5)
    crop_padding: int = Field(0, ge=0, le=16)


class EarlyStopping(Section):
    monitor: Literal["val_loss", "val_accuracy"]
    patience: int = Field(ge=1)
    restore_best_weights: bool = False


class Train(Section):
    optimizer: Literal["adam", "adamw", "sgd", "rmsprop"]
    learning_rate: float = Field(gt=0)
    momentum: Fraction | None = None  # sgd only
    nesterov: bool | None = None  # sgd only
    schedule: Literal["constant", "inverse_time", "cosine", "onecycle"] = "constant"
    decay: float | None = Field(None, ge=0)  # inverse_time only: Keras 2's `decay`
    weight_decay: float | None = Field(None, ge=0)  # null: the optimizer's default (AdamW 0.004, else none)
    label_smoothing: Fraction = 0.0
    batch_size: int = Field(ge=1)
    # Leave out each epoch's last, partial batch (tf.data's drop_remainder, PyTorch's drop_last).
    drop_remainder: bool = False
    epochs: int = Field(ge=1)
    # Airbench's Lookahead: training ends on an average of its last steps' weights (src/training.py).
    lookahead: bool = False
    augmentation: Augmentation | None = None
    early_stopping: EarlyStopping | None = None
    weights: Literal["imagenet"] | None = None  # vgg16_* only; null trains from scratch
    seed: int = Field(ge=0)
    jit_compile: bool = False
    # bfloat16: Keras' mixed_bfloat16 policy, float32 where the CPU lacks bfloat16 instructions.
    precision: Literal["float32", "bfloat16"] = "float32"

    @model_validator(mode="after")
    def keys_that_apply(self) -> "Train":
        problems = []
        if self.optimizer != "sgd":
            problems += [f"`{key}` applies to sgd only, not {self.optimizer}; remove it"
                         for key in ("momentum", "nesterov") if getattr(self, key) is not None]
        if self.schedule == "inverse_time" and self.decay is None:
            problems.append("`schedule: inverse_time` needs `decay`")
        if self.schedule != "inverse_time" and self.decay is not None:
            problems.append(f"`decay` applies to `schedule: inverse_time` only, not {self.schedule}; remove it")
        if problems:
            raise ValueError("; ".join(problems))
        return self


class Reference(Section):
    """The seed notebook's own figures for an architecture: read by the report only, never by training."""

    epochs: int | None = Field(None, ge=1)
    accuracy: float | None = Field(None, ge=0, le=1)
    dataset: Dataset = "cifar10"
    label_mode: Literal["fine", "coarse"] = "fine"


class Evaluate(Section):
    batch_size: int = Field(ge=1)
    # Test-time augmentation of every test metric, of the model promote registers and of predict
    # (src/models.py `with_tta`); none: one prediction per image.
    tta: Literal["none", "flip", "flip_shift"] = "none"


def _registered(names: list[str]) -> list[str]:
    known, problems = architecture_names(), []
    for name in dict.fromkeys(names):
        if names.count(name) > 1:
            problems.append(f"lists {name!r} twice")
        if name not in known:
            close = difflib.get_close_matches(name, known, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            problems.append(f"unknown architecture {name!r}; {hint}choose from {', '.join(known)}")
    if problems:
        raise ValueError("; ".join(problems))
    return names


class Params(Section):
    data: Data
    preprocess: Preprocess
    split: Split
    architectures: Annotated[list[str], Field(min_length=1), AfterValidator(_registered)]
    train: dict[str, Train]
    reference: dict[str, Reference] = {}
    evaluate: Evaluate

    @model_validator(mode="after")
    def sections_exist(self) -> "Params":
        problems = [f"`train.{name}` section is missing; every name in `architectures` needs one"
                    for name in dict.fromkeys(self.architectures) if name not in self.train]
        problems += [f"`train.{name}.weights` applies to vgg16_* only; remove it"
                     for name, config in self.train.items() if config.weights and not name.startswith("vgg16")]
        if problems:
            raise ValueError("; ".join(problems))
        return self


def architecture_names() -> list[str]:
    """The names `@register`ed in src/models.py, read without importing Keras (seconds) into every stage."""
    tree = ast.parse(MODELS_SOURCE.read_text())
    return sorted(node.name for node in tree.body if isinstance(node, ast.FunctionDef)
                  and any(isinstance(d, ast.Name) and d.id == "register" for d in node.decorator_list))


def _allowed_keys(location: tuple) -> list[str]:
    """The keys the schema accepts at the mapping that holds ``location``'s last key."""
    model: Any = Params
    for key in location[:-1]:
        field = model.model_fields.get(key) if isinstance(key, str) and hasattr(model, "model_fields") else None
        if field is None:  # a key of a dict[str, Model]: same model for every name
            continue
        annotation = field.annotation
        for candidate in (*getattr(annotation, "__args__", ()), annotation):
            if isinstance(candidate, type) and issubclass(candidate, BaseModel):
                model = candidate
                break
    return list(model.model_fields) if hasattr(model, "model_fields") else []


def _describe(error: dict) -> str:
    location = tuple(error["loc"])
    # pydantic names the union member or the validator it tried ("function-after[...]"): not the user's key.
    path = ".".join(str(key) for key in location if not str(key).startswith(("function-", "constrained-")))
    kind = error["type"]
    if kind == "missing":
        return f"`{path}` is missing"
    if kind == "extra_forbidden":
        allowed = _allowed_keys(location)
        close = difflib.get_close_matches(str(location[-1]), allowed, n=1)
        hint = f"did you mean `{close[0]}`? " if close else ""
        return f"`{path}` is not a known key; {hint}allowed: {', '.join(allowed)}"
    message = error["msg"].removeprefix("Value error, ")
    if kind == "value_error":
        return f"`{path}`: {message}" if path else message
    return f"`{path}` is {error['input']!r}: {message}"


def validate(params: Any) -> dict:
    """The params as plain dicts (nulls dropped), or one PipelineError listing every problem."""
    if not isinstance(params, dict):
        raise PipelineError(f"{PARAMS_FILE} is not a mapping of sections; restore it from git")
    try:
        checked = Params.model_validate(params)
    except ValidationError as error:
        problems = [_describe(e) for e in error.errors(include_url=False)]
        count = len(problems)
        raise PipelineError(f"{PARAMS_FILE} has {count} problem{'s' if count > 1 else ''}: "
                            + "; ".join(problems)) from None
    return checked.model_dump(exclude_none=True)


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
